/**
 * API throughput: GET /v1/exports/{id} with a key, at 50 connections (autocannon, in its own
 * process), against a bare Fastify route in the same run. exportd authenticates, reads SQLite,
 * signs the part links and serializes the full status; the anchor does none of it.
 * Run: npm run bench:api   (ROUNDS=3, SECONDS=10 by default)
 */
import { execFileSync, spawn } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { freePort } from "../test/helpers/net.js";
import { cli, client, startServer } from "../test/helpers/server-process.js";
import { pastMidnight, tempDir, waitFor } from "../test/helpers/service.js";

const ROUNDS = Number(process.env.ROUNDS ?? 3);
const SECONDS = Number(process.env.SECONDS ?? 10);
const autocannon = fileURLToPath(new URL("../node_modules/autocannon/autocannon.js", import.meta.url));

interface Result {
  requests: { average: number };
  latency: { p50: number; p99: number };
  non2xx: number;
  errors: number;
}

function load(url: string, headers: string[]): Result {
  const args = [
    autocannon,
    "-c",
    "50",
    "-d",
    String(SECONDS),
    "-j",
    ...headers.flatMap((h) => ["-H", h]),
    url,
  ];
  return JSON.parse(execFileSync(process.execPath, args, { maxBuffer: 1 << 26 }).toString()) as Result;
}

const line = (label: string, r: Result) =>
  `${label.padEnd(24)} ${Math.round(r.requests.average).toLocaleString("en-US").padStart(8)} req/s  p50 ${r.latency.p50} ms  p99 ${r.latency.p99} ms  non-2xx ${r.non2xx}  errors ${r.errors}`;

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

const ratios: number[] = [];
try {
  for (let round = 1; round <= ROUNDS; round++) {
    const anchor = load(`http://127.0.0.1:${barePort}/v1/exports/${created.body.id}`, []);
    const ours = load(`${server.url}/v1/exports/${created.body.id}`, [`authorization=Bearer ${key}`]);
    if (ours.non2xx > 0 || ours.errors > 0)
      throw new Error(`exportd answered errors: ${JSON.stringify(ours)}`);
    ratios.push(ours.requests.average / anchor.requests.average);
    process.stdout.write(
      `round ${round}\n  ${line("bare Fastify route", anchor)}\n  ${line("exportd GET export", ours)}\n`,
    );
  }
} finally {
  bare.kill();
  await server.stop();
}
ratios.sort((a, b) => a - b);
process.stdout.write(
  `ratio exportd/bare over ${ROUNDS} rounds: ${ratios[0]?.toFixed(2)}–${ratios.at(-1)?.toFixed(2)}, median ${ratios[Math.floor(ratios.length / 2)]?.toFixed(2)} (floor 0.5)\n`,
);
