/**
 * Pickup latency and creates per second, on SQLite (one process: API and worker, woken in process)
 * and on PostgreSQL (an API process and a worker process, woken by NOTIFY; the worker polls only
 * once a minute, so polling cannot help it).
 *   pickup: exports created one at a time over HTTP; created_at → started_at as the server
 *           records them, percentiles over BENCH_PICKUPS (100).
 *   creates/s: POST /v1/exports from autocannon (16 connections, BENCH_SECONDS = 5 s per round,
 *           BENCH_ROUNDS = 3) while the worker runs what arrives.
 * Run: npm run bench:pickup
 */

import { createTestDatabase } from "../test/helpers/postgres.js";
import { client } from "../test/helpers/server-process.js";
import { pastMidnight, waitFor } from "../test/helpers/service.js";
import { startCluster } from "./cluster.js";
import { load, loadLine } from "./load.js";
import { type BenchSection, int, percentile, report, spread } from "./report.js";

const PICKUPS = Number(process.env.BENCH_PICKUPS ?? 100);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);

interface StoreResult {
  label: string;
  waits: number[];
  createsPerSecond: number[];
}

async function measure(label: string, databaseUrl: string | undefined): Promise<StoreResult> {
  const cluster = await startCluster({
    workers: databaseUrl ? 1 : 0,
    ...(databaseUrl ? { databaseUrl } : {}),
    env: { EXPORTD_WORKER_POLL_MS: "60000" },
  });
  try {
    const http = client(cluster.url, cluster.key);
    const to = pastMidnight();
    // One minute of demo events: the export itself takes a few milliseconds.
    const body = {
      dataset: "events",
      from: new Date(to - 60_000).toISOString(),
      to: new Date(to).toISOString(),
    };
    const waits: number[] = [];
    for (let i = 0; i < PICKUPS; i++) {
      const created = await http.create(body);
      if (created.status !== 202) throw new Error(`create answered ${created.status}`);
      const done = (await waitFor(
        () => http.get(created.body.id),
        (e) => e.status === "succeeded",
        30_000,
      )) as unknown as { created_at: string; started_at: string };
      waits.push(Date.parse(done.started_at) - Date.parse(done.created_at));
    }
    waits.sort((a, b) => a - b);
    const createsPerSecond: number[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      const result = load({
        url: `${cluster.url}/v1/exports`,
        method: "POST",
        connections: 16,
        seconds: SECONDS,
        headers: { authorization: `Bearer ${cluster.key}`, "content-type": "application/json" },
        body: JSON.stringify(body),
      });
      if (result.non2xx > 0 || result.errors > 0)
        throw new Error(`creates failed: ${JSON.stringify(result)}`);
      process.stdout.write(`${loadLine(`${label}: POST /v1/exports`, result)}\n`);
      createsPerSecond.push(result.requests.average);
    }
    process.stdout.write(
      `${label}: pickup p50 ${percentile(waits, 50)} ms, p99 ${percentile(waits, 99)} ms, max ${waits.at(-1)} ms\n`,
    );
    return { label, waits, createsPerSecond };
  } finally {
    await cluster.stop();
  }
}

const results: StoreResult[] = [await measure("SQLite, one process", undefined)];
const db = await createTestDatabase();
try {
  results.push(await measure("PostgreSQL, API + worker process", db.url));
} finally {
  await db.dispose();
}

const section: BenchSection = {
  id: "5-pickup",
  title: "5. Pickup latency and creates per second",
  command: "npm run bench:pickup   (BENCH_PICKUPS=100 BENCH_ROUNDS=3 BENCH_SECONDS=5)",
  method:
    `Pickup: ${PICKUPS} one-minute demo exports created one at a time over HTTP; the wait is created_at → ` +
    "started_at as the server records them. SQLite: one process, the worker woken in process. PostgreSQL: " +
    "an API process and a worker process, woken by NOTIFY (the worker polls once a minute, so polling " +
    `cannot help). Creates/s: autocannon POSTs at 16 connections for ${SECONDS} s per round while the ` +
    "worker runs what arrives (no anchor: the figure is what one API process takes in).",
  table: {
    columns: ["store", "pickup p50", "pickup p99", "pickup max", "creates/s (min–max)"],
    rows: results.map((r) => {
      const creates = spread(r.createsPerSecond);
      return [
        r.label,
        `${percentile(r.waits, 50)} ms`,
        `${percentile(r.waits, 99)} ms`,
        `${r.waits.at(-1)} ms`,
        `${int(creates.min)}–${int(creates.max)}`,
      ];
    }),
  },
  floors: results.map((r) => ({
    name: `pickup p50, ${r.label}`,
    floor: "< 100 ms",
    measured: `${percentile(r.waits, 50)} ms (p99 ${percentile(r.waits, 99)} ms)`,
    met: percentile(r.waits, 50) < 100,
  })),
};
report(section);
