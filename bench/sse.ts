/**
 * Progress streams: 1,000 open `GET /v1/exports/{id}/events` streams on one API process, each on
 * an export of its own (queued on a server without a worker, so the hub reads all 1,000 in one
 * query per tick, EXPORTD_EVENT_POLL_MS 500), against the same process with no stream open, in
 * the same run: the process's resident memory per open stream, and the p99 of
 * `GET /v1/exports/{id}` (autocannon, 50 connections, its own process) with and without the streams.
 * Run: npm run bench:sse   (BENCH_STREAMS=1000, BENCH_ROUNDS=3, BENCH_SECONDS=10 by default)
 */
import fs from "node:fs";
import http from "node:http";
import { client } from "../test/helpers/server-process.js";
import { pastMidnight } from "../test/helpers/service.js";
import { startCluster } from "./cluster.js";
import { type LoadResult, load, loadLine } from "./load.js";
import { ratioText, report, spread } from "./report.js";

const STREAMS = Number(process.env.BENCH_STREAMS ?? 1000);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 10);

const rssMb = (pid: number) =>
  Number(/VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, "utf8"))?.[1]) / 1024;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const cluster = await startCluster({
  workers: 0,
  apiOnly: true,
  env: { EXPORTD_MAX_EVENT_STREAMS: String(STREAMS + 100) },
});
const pid = cluster.api.child.pid as number;
const api = client(cluster.url, cluster.key);
const to = pastMidnight();
const body = {
  dataset: "events",
  from: new Date(to - 3_600_000).toISOString(),
  to: new Date(to).toISOString(),
};
const ids: string[] = [];
for (let i = 0; i < STREAMS; i++) ids.push((await api.create(body)).body.id);
const target = `${cluster.url}/v1/exports/${ids[0]}`;
const auth = { authorization: `Bearer ${cluster.key}` };

/** Opens one stream per export and resolves once each has its first event. */
async function openStreams(): Promise<{ close(): void; events: () => number }> {
  const agent = new http.Agent({ keepAlive: false, maxSockets: Number.POSITIVE_INFINITY });
  const requests: http.ClientRequest[] = [];
  let events = 0;
  await Promise.all(
    ids.map(
      (id) =>
        new Promise<void>((resolve, reject) => {
          const req = http.get(`${cluster.url}/v1/exports/${id}/events`, { headers: auth, agent }, (res) => {
            if (res.statusCode !== 200) reject(new Error(`stream answered ${res.statusCode}`));
            let first = true;
            res.on("data", (chunk: Buffer) => {
              if (chunk.includes("event: ")) events++;
              if (first && chunk.includes("event: ")) {
                first = false;
                resolve();
              }
            });
          });
          req.on("error", reject);
          requests.push(req);
        }),
    ),
  );
  return {
    close: () => {
      for (const r of requests) r.destroy();
      agent.destroy();
    },
    events: () => events,
  };
}

interface Round {
  without: LoadResult;
  with: LoadResult;
  rssWithout: number;
  rssWith: number;
}
const rounds: Round[] = [];
const shape = { url: target, headers: auth, connections: 50, seconds: SECONDS };
try {
  // Warm up the status route and the process's heap before the first measurement.
  load({ ...shape, seconds: 2 });
  for (let round = 1; round <= ROUNDS; round++) {
    // Memory first, with no load in between: the resident set barely shrinks once grown, so what
    // opening the streams adds is theirs. Then the status read with them open, then without.
    await sleep(1_000);
    const rssWithout = rssMb(pid);
    const streams = await openStreams();
    await sleep(2_000);
    const rssWith = rssMb(pid);
    const withStreams = load(shape);
    streams.close();
    await sleep(1_000);
    const without = load(shape);
    if ([without, withStreams].some((r) => r.non2xx > 0 || r.errors > 0))
      throw new Error(`errors answered: ${JSON.stringify({ without, withStreams })}`);
    rounds.push({ without, with: withStreams, rssWithout, rssWith });
    process.stdout.write(
      `round ${round}\n  ${loadLine("no stream open", without)}\n  ${loadLine(`${STREAMS} streams open`, withStreams)}\n` +
        `  RSS ${rssWithout.toFixed(1)} MB → ${rssWith.toFixed(1)} MB with the streams (${streams.events()} events)\n`,
    );
  }
} finally {
  await cluster.stop();
}

const perStreamKb = rounds.map((r) => ((r.rssWith - r.rssWithout) * 1024) / STREAMS);
const p99Ratios = rounds.map((r) => r.with.latency.p99 / Math.max(1, r.without.latency.p99));
const range = (values: number[], digits = 0) => {
  const s = spread(values);
  return `${s.min.toFixed(digits)}–${s.max.toFixed(digits)}`;
};
report({
  id: "7-sse",
  title: `7. Progress streams: ${STREAMS} open on one API process`,
  command: "npm run bench:sse   (BENCH_STREAMS=1000 BENCH_ROUNDS=3 BENCH_SECONDS=10)",
  method:
    `One API-only process of the built server on SQLite with ${STREAMS} queued exports (no worker, so they ` +
    `stay queued). Each round: GET /v1/exports/{id} of one queued export under autocannon (50 connections, ` +
    `${SECONDS} s, its own process) with ${STREAMS} progress streams open (one per export, each past its ` +
    "first event; the hub reads all of them in one query every 500 ms and pings every 15 s), then again " +
    "with none. Memory: the process's resident set just before and 2 s after opening the streams, no load " +
    "in between (after a warm-up load, so the heap has grown already).",
  table: {
    columns: ["side", "req/s (min–max)", "p50 ms", "p99 ms", "RSS MB"],
    rows: [
      [
        "no stream open",
        range(rounds.map((r) => r.without.requests.average)),
        range(rounds.map((r) => r.without.latency.p50)),
        range(rounds.map((r) => r.without.latency.p99)),
        range(
          rounds.map((r) => r.rssWithout),
          1,
        ),
      ],
      [
        `${STREAMS} streams open`,
        range(rounds.map((r) => r.with.requests.average)),
        range(rounds.map((r) => r.with.latency.p50)),
        range(rounds.map((r) => r.with.latency.p99)),
        range(
          rounds.map((r) => r.rssWith),
          1,
        ),
      ],
    ],
  },
  floors: [
    {
      name: `p99 of GET /v1/exports/{id} with ${STREAMS} streams open vs none`,
      floor: "≤ 2.0×",
      measured: ratioText(p99Ratios),
      met: spread(p99Ratios).median <= 2,
    },
  ],
  notes: [`Memory per open stream: ${range(perStreamKb, 1)} KiB (resident set growth / ${STREAMS}).`],
});
