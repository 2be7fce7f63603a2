/**
 * API throughput: GET /v1/exports/{id} with a key, at 50 connections (autocannon, in its own
 * process), against a bare Fastify route in the same run answering the same JSON document.
 * Three cases: a succeeded export (authentication, rate limit, the finished export and its
 * serialized document from the per-second cache), a queued export on an API-only server and a
 * running one with parts whose worker was killed (both checked against SQLite on every request,
 * rebuilt only when they changed). Beside req/s, the CPU time each server spent per request.
 * Run: npm run bench:api   (BENCH_ROUNDS=3, BENCH_SECONDS=10 by default; BENCH_NODE_ARGS adds flags to the servers)
 */
import { spawn } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { freePort } from "../test/helpers/net.js";
import { client } from "../test/helpers/server-process.js";
import { pastMidnight, tempDir, waitFor } from "../test/helpers/service.js";
import { type Cluster, startCluster } from "./cluster.js";
import { type LoadResult, load, loadLine } from "./load.js";
import { cpuMs, int, ratioText, report, spread } from "./report.js";

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 10);

interface Case {
  label: string;
  cluster: Cluster;
  id: string;
  body: string;
}

/**
 * A server of its own with one export, waited on until `status`. "running": an API-only server and
 * one worker process on a month of events in parts of 10,000 rows; once two parts are recorded the
 * worker is killed (SIGKILL), so the export stays running, with its parts and progress, under a
 * lease nobody renews — and with no worker left, nobody takes it over.
 */
async function prepare(label: string, apiOnly: boolean, status: string): Promise<Case> {
  const cluster = await startCluster({ workers: 0, apiOnly });
  const http = client(cluster.url, cluster.key);
  const to = pastMidnight();
  const running = status === "running";
  if (running) cluster.addWorkers(1);
  const created = await http.create({
    dataset: "events",
    from: new Date(to - (running ? 30 * 86_400_000 : 3_600_000)).toISOString(),
    to: new Date(to).toISOString(),
    ...(running ? { part_max_rows: 10_000 } : {}),
  });
  await waitFor(
    () => http.get(created.body.id),
    (e) => e.status === status && (!running || e.progress.parts >= 2),
  );
  if (running) await cluster.killWorkers();
  const res = await http.raw(`/v1/exports/${created.body.id}`);
  const body = await res.text();
  if ((JSON.parse(body) as { status: string }).status !== status) throw new Error(`not ${status}: ${body}`);
  return { label, cluster, id: created.body.id, body };
}

const cases = [
  await prepare("succeeded export (cached 1 s)", false, "succeeded"),
  // No worker in this process: the export stays queued.
  await prepare("queued export (read every time)", true, "queued"),
  // Its worker killed: the export stays running, with parts.
  await prepare("running export (read every time)", true, "running"),
];

// The anchor answers each export id with exportd's own document for it.
const bodyFile = path.join(tempDir("exportd-bench-api-bare-"), "documents.json");
fs.writeFileSync(bodyFile, JSON.stringify(Object.fromEntries(cases.map((c) => [c.id, JSON.parse(c.body)]))));
const barePort = await freePort();
const bare = spawn(
  process.execPath,
  ["--import", "tsx", fileURLToPath(new URL("./bare-fastify.ts", import.meta.url))],
  {
    env: { ...process.env, PORT: String(barePort), BODY_FILE: bodyFile },
    stdio: ["ignore", "pipe", "inherit"],
  },
);
await new Promise((resolve) => bare.stdout?.once("data", resolve));

/** A load's result and the CPU time (ms) its server spent per 1,000 requests meanwhile. */
type Measured = LoadResult & { cpuPerThousand: number };
interface Round {
  anchor: Measured;
  ours: Measured;
}

/** Runs `run` and measures the CPU time process `pid` used meanwhile, per 1,000 requests. */
function measured(pid: number, run: () => LoadResult): Measured {
  const before = cpuMs(pid);
  const result = run();
  return { ...result, cpuPerThousand: ((cpuMs(pid) - before) * 1000) / result.requests.total };
}
const shape = { connections: 50, seconds: SECONDS };
const rounds = new Map<Case, Round[]>(cases.map((c) => [c, []]));
try {
  for (let round = 1; round <= ROUNDS; round++) {
    for (const c of cases) {
      const anchor = measured(bare.pid as number, () =>
        load({ url: `http://127.0.0.1:${barePort}/v1/exports/${c.id}`, ...shape }),
      );
      const ours = measured(c.cluster.api.child.pid as number, () =>
        load({
          url: `${c.cluster.url}/v1/exports/${c.id}`,
          headers: { authorization: `Bearer ${c.cluster.key}` },
          ...shape,
        }),
      );
      if (ours.non2xx > 0 || ours.errors > 0 || anchor.non2xx > 0)
        throw new Error(`errors answered: ${JSON.stringify({ ours, anchor })}`);
      rounds.get(c)?.push({ anchor, ours });
      process.stdout.write(
        `round ${round}, ${c.label}\n  ${loadLine("bare Fastify route", anchor)}  CPU ${anchor.cpuPerThousand.toFixed(0)} ms/1000\n` +
          `  ${loadLine("exportd", ours)}  CPU ${ours.cpuPerThousand.toFixed(0)} ms/1000\n`,
      );
    }
  }
} finally {
  bare.kill();
  await Promise.all(cases.map((c) => c.cluster.stop()));
}

const rates = (results: Measured[]) => {
  const rate = spread(results.map((r) => r.requests.average));
  const p50 = spread(results.map((r) => r.latency.p50));
  const p99 = spread(results.map((r) => r.latency.p99));
  const cpu = spread(results.map((r) => r.cpuPerThousand));
  return [
    `${int(rate.min)}–${int(rate.max)}`,
    `${p50.min}–${p50.max}`,
    `${p99.min}–${p99.max}`,
    `${int(cpu.min)}–${int(cpu.max)}`,
  ];
};
const ratiosOf = (c: Case) =>
  (rounds.get(c) ?? []).map((r) => r.ours.requests.average / r.anchor.requests.average);
/** The anchor's CPU per request over exportd's: what req/s would be on a machine to themselves. */
const cpuRatiosOf = (c: Case) =>
  (rounds.get(c) ?? []).map((r) => r.anchor.cpuPerThousand / r.ours.cpuPerThousand);
report({
  id: "3-api",
  title: "3. API: GET /v1/exports/{id}",
  command: "npm run bench:api   (BENCH_ROUNDS=3 BENCH_SECONDS=10)",
  method:
    `autocannon in its own process, 50 connections, ${SECONDS} s per side per round, alternating. exportd: ` +
    "the built server on SQLite with a Bearer key (authentication, tenant scope, rate limit, the full " +
    "status document with a signed link per part). A succeeded export is served from the per-second " +
    "cache of finished exports. A queued export (on a server without a worker) and a running one with " +
    "parts (its worker killed after two) are checked on every request: SQLite's change mark (PRAGMA " +
    "data_version, once per turn of the event loop), else the row read and compared whole; their " +
    "serialized document is rebuilt only when the export changed, so no answer is staler than the " +
    "database. Anchor: a bare Fastify route in its own process answering the same JSON document, so " +
    "both sides write the same bytes.",
  table: {
    columns: ["case", "side", "req/s (min–max)", "p50 ms", "p99 ms", "CPU ms/1000 req", "ratio", "CPU ratio"],
    rows: cases.flatMap((c) => {
      const rs = rounds.get(c) ?? [];
      return [
        [c.label, "bare Fastify route", ...rates(rs.map((r) => r.anchor)), "", ""],
        [
          c.label,
          "exportd",
          ...rates(rs.map((r) => r.ours)),
          ratioText(ratiosOf(c)),
          ratioText(cpuRatiosOf(c)),
        ],
      ];
    }),
  },
  notes: [
    "ratio: exportd's req/s over the anchor's in the same round (the floor). CPU ratio: the anchor's " +
      "CPU time per request over exportd's (user + system time of each server process while it was " +
      "loaded), which a busy neighbour on a shared machine moves far less than req/s.",
  ],
  floors: cases.map((c) => ({
    name: `API req/s vs bare Fastify, ${c.label}`,
    floor: "≥ 0.5×",
    measured: ratioText(ratiosOf(c)),
    met: spread(ratiosOf(c)).median >= 0.5,
  })),
});
