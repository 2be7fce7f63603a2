/**
 * Many small exports with one and with two worker processes: BENCH_EXPORTS (200) one-hour demo
 * exports (1,800 rows each) are queued through the API, then worker processes start and drain the
 * queue; timed from the first started_at to the last finished_at as the store records them. PostgreSQL metadata, local object
 * store, an API process plus 1 or 2 worker processes (EXPORTD_WORKER_CONCURRENCY each, default 2).
 * Rounds alternate 1 and 2 workers (BENCH_ROUNDS = 3 each).
 * Run: npm run bench:workers
 */
import pg from "pg";
import { createTestDatabase } from "../test/helpers/postgres.js";
import { client } from "../test/helpers/server-process.js";
import { pastMidnight, waitFor } from "../test/helpers/service.js";
import { startCluster } from "./cluster.js";
import { int, ratioText, report, spread } from "./report.js";

const EXPORTS = Number(process.env.BENCH_EXPORTS ?? 200);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);

/** Exports per second for one run with `workers` worker processes, on a fresh database. */
async function run(workers: number): Promise<number> {
  const db = await createTestDatabase();
  // The queue fills before any worker starts, so the run measures workers, not the client.
  const cluster = await startCluster({ workers: 0, apiOnly: true, databaseUrl: db.url });
  const sql = new pg.Client({ connectionString: db.url });
  await sql.connect();
  try {
    const http = client(cluster.url, cluster.key);
    const to = pastMidnight();
    for (let i = 0; i < EXPORTS; i++) {
      // Different hours, so no two exports are the same work.
      const end = to - (i % 48) * 3_600_000;
      const created = await http.create({
        dataset: "events",
        from: new Date(end - 3_600_000).toISOString(),
        to: new Date(end).toISOString(),
      });
      if (created.status !== 202) throw new Error(`create answered ${created.status}`);
    }
    cluster.addWorkers(workers);
    const counts = async () =>
      (
        await sql.query<{ done: number; failed: number }>(
          `SELECT count(*) FILTER (WHERE status = 'succeeded')::int AS done,
                  count(*) FILTER (WHERE status IN ('failed', 'canceled'))::int AS failed FROM exports`,
        )
      ).rows[0] as { done: number; failed: number };
    const final = await waitFor(counts, (c) => c.done + c.failed === EXPORTS, 600_000);
    if (final.failed > 0) throw new Error(`${final.failed} exports failed`);
    const span = (
      await sql.query<{ ms: number }>(
        "SELECT (max(finished_at) - min(started_at))::float8 AS ms FROM exports",
      )
    ).rows[0]?.ms as number;
    const perSecond = EXPORTS / (span / 1000);
    process.stdout.write(
      `${workers} worker process(es): ${EXPORTS} exports in ${(span / 1000).toFixed(2)} s, ${perSecond.toFixed(1)}/s\n`,
    );
    return perSecond;
  } finally {
    await sql.end();
    await cluster.stop();
    await db.dispose();
  }
}

const one: number[] = [];
const two: number[] = [];
for (let round = 0; round < ROUNDS; round++) {
  one.push(await run(1));
  two.push(await run(2));
}
const ratios = two.map((t, i) => t / (one[i] as number));
const concurrency = process.env.EXPORTD_WORKER_CONCURRENCY ?? "2";
report({
  id: "6-workers",
  title: "6. Many small exports: 1 and 2 worker processes",
  command: "npm run bench:workers   (BENCH_EXPORTS=200 BENCH_ROUNDS=3)",
  method:
    `${EXPORTS} one-hour demo exports (1,800 rows each, csv.gz) queued through the API, then drained by 1 or ` +
    `2 worker processes (${concurrency} exports at once each) on PostgreSQL and the local object store; ` +
    "first started_at to last finished_at. Rounds alternate, each on a fresh database. The machine has " +
    "2 cores, shared with PostgreSQL and the API process.",
  table: {
    columns: ["worker processes", "exports/s (min–max)", "median"],
    rows: [
      ["1", `${spread(one).min.toFixed(1)}–${spread(one).max.toFixed(1)}`, spread(one).median.toFixed(1)],
      ["2", `${spread(two).min.toFixed(1)}–${spread(two).max.toFixed(1)}`, spread(two).median.toFixed(1)],
    ],
  },
  floors: [],
  notes: [
    `2 workers / 1 worker: ${ratioText(ratios)}; rows per second at the median with 2 workers: ${int(spread(two).median * 1800)}.`,
  ],
});
