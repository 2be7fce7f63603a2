/**
 * API throughput: GET /v1/exports/{id} with a key, at 50 connections (autocannon, in its own
 * process), against a bare Fastify route in the same run. exportd authenticates, reads SQLite,
 * signs the part links and serializes the full status; the anchor does none of it.
 * Run: npm run bench:api   (BENCH_ROUNDS=3, BENCH_SECONDS=10 by default; BENCH_NODE_ARGS adds flags to the server)
 */
import { spawn } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { freePort } from "../test/helpers/net.js";
import { cli, client, startServer } from "../test/helpers/server-process.js";
import { pastMidnight, tempDir, waitFor } from "../test/helpers/service.js";
import { type LoadResult, load, loadLine } from "./load.js";
import { int, ratioText, report, spread } from "./report.js";

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 10);
const dataDir = tempDir("exportd-bench-api-");
const server = await startServer({
  dataDir,
  env: { EXPORTD_LOG_LEVEL: "warn" },
  nodeArgs: (process.env.BENCH_NODE_ARGS ?? "").split(" ").filter(Boolean),
});
const key = cli(dataDir, ["keys", "create", "--tenant", "bench"]).trim().split("\n").at(-1) as string;
cli(dataDir, ["tenants", "set", "bench", "--requests-per-minute", "1000000"]);
const http = client(server.url, key);
const to = pastMidnight();
const created = await http.create({
  dataset: "events",
  from: new Date(to - 3_600_000).toISOString(),
  to: new Date(to).toISOString(),
});
await waitFor(
  () => http.get(created.body.id),
  (e) => e.status === "succeeded",
);

const bodyFile = path.join(dataDir, "status.json");
fs.writeFileSync(
  bodyFile,
  await (
    await fetch(`${server.url}/v1/exports/${created.body.id}`, {
      headers: { authorization: `Bearer ${key}` },
    })
  ).text(),
);
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

interface Round {
  anchor: LoadResult;
  ours: LoadResult;
}
const shape = { connections: 50, seconds: SECONDS };
const rounds: Round[] = [];
try {
  for (let round = 1; round <= ROUNDS; round++) {
    const anchor = load({ url: `http://127.0.0.1:${barePort}/v1/exports/${created.body.id}`, ...shape });
    const ours = load({
      url: `${server.url}/v1/exports/${created.body.id}`,
      headers: { authorization: `Bearer ${key}` },
      ...shape,
    });
    if (ours.non2xx > 0 || ours.errors > 0)
      throw new Error(`exportd answered errors: ${JSON.stringify(ours)}`);
    rounds.push({ anchor, ours });
    process.stdout.write(
      `round ${round}\n  ${loadLine("bare Fastify route", anchor)}\n  ${loadLine("exportd GET export", ours)}\n`,
    );
  }
} finally {
  bare.kill();
  await server.stop();
}
const ratios = rounds.map((r) => r.ours.requests.average / r.anchor.requests.average);
const row = (label: string, pick: (r: Round) => LoadResult): string[] => {
  const results = rounds.map(pick);
  const rate = spread(results.map((r) => r.requests.average));
  const p50 = spread(results.map((r) => r.latency.p50));
  const p99 = spread(results.map((r) => r.latency.p99));
  return [label, `${int(rate.min)}–${int(rate.max)}`, `${p50.min}–${p50.max}`, `${p99.min}–${p99.max}`];
};
report({
  id: "3-api",
  title: "3. API: GET /v1/exports/{id}",
  command: "npm run bench:api   (BENCH_ROUNDS=3 BENCH_SECONDS=10)",
  method:
    `autocannon in its own process, 50 connections, ${SECONDS} s per side per round, alternating. exportd: ` +
    "the built server on SQLite, a Bearer key, a succeeded one-part export (authentication, tenant " +
    "scope, rate limit, a signed link, the full status document). Anchor: a bare Fastify route in its " +
    "own process answering the same JSON document, so both write the same bytes.",
  table: {
    columns: ["side", "req/s (min–max)", "p50 ms", "p99 ms"],
    rows: [row("bare Fastify route", (r) => r.anchor), row("exportd GET export", (r) => r.ours)],
  },
  floors: [
    {
      name: "API req/s vs bare Fastify",
      floor: "≥ 0.5×",
      measured: ratioText(ratios),
      met: spread(ratios).median >= 0.5,
    },
  ],
});
