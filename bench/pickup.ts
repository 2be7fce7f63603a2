/**
 * Pickup latency: how long a new export waits before a worker starts it (created_at → started_at),
 * on SQLite (worker in the API process, woken in process) and on PostgreSQL (API and worker as
 * separate services, woken by NOTIFY; the worker polls only once a minute, so polling cannot help).
 * Run: npm run bench:pickup
 */
import { pino } from "pino";
import { issueApiKey } from "../src/admin.js";
import { loadConfig } from "../src/config/index.js";
import { createService, type Service } from "../src/service.js";
import { createTestDatabase } from "../test/helpers/postgres.js";
import { pastMidnight, tempDir, waitFor } from "../test/helpers/service.js";

const RUNS = Number(process.env.RUNS ?? 100);

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] as number;
}

async function measure(label: string, api: Service, workerStore: Service["store"]): Promise<void> {
  const { key } = await issueApiKey(
    workerStore,
    `bench-${Date.now()}`,
    ["exports:read", "exports:write"],
    Date.now(),
  );
  await workerStore.updateTenant((await workerStore.listTenants()).at(-1)!.name, {
    overrides: { requestsPerMinute: 1_000_000, maxQueued: 1_000_000 },
  });
  const headers = { authorization: `Bearer ${key}` };
  const to = pastMidnight();
  const waits: number[] = [];
  const t0 = Date.now();
  for (let i = 0; i < RUNS; i++) {
    const created = await api.app!.inject({
      method: "POST",
      url: "/v1/exports",
      headers,
      payload: {
        dataset: "events",
        from: new Date(to - 60_000).toISOString(),
        to: new Date(to).toISOString(),
      },
    });
    const id = created.json().id as string;
    const done = await waitFor(
      async () => (await api.app!.inject({ method: "GET", url: `/v1/exports/${id}`, headers })).json(),
      (e) => e.status === "succeeded",
      30_000,
    );
    waits.push(Date.parse(done.started_at) - Date.parse(done.created_at));
  }
  const seconds = (Date.now() - t0) / 1000;
  waits.sort((a, b) => a - b);
  process.stdout.write(
    `${label.padEnd(34)} p50 ${percentile(waits, 50)} ms  p99 ${percentile(waits, 99)} ms  max ${waits.at(-1)} ms  ` +
      `(${RUNS} exports, ${(RUNS / seconds).toFixed(1)} create→done per second, one at a time)\n`,
  );
}

const silent = pino({ level: "silent" });

{
  const svc = await createService(
    loadConfig({ EXPORTD_DATA_DIR: tempDir(), EXPORTD_LOG_LEVEL: "silent" }),
    silent,
  );
  await measure("SQLite, worker in process", svc, svc.store);
  await svc.close();
}
{
  const db = await createTestDatabase();
  const env = { EXPORTD_DATABASE_URL: db.url, EXPORTD_DATA_DIR: tempDir(), EXPORTD_WORKER_POLL_MS: "60000" };
  const api = await createService(loadConfig({ ...env, EXPORTD_ROLE: "api" }), silent);
  const worker = await createService(loadConfig({ ...env, EXPORTD_ROLE: "worker" }), silent);
  await new Promise((r) => setTimeout(r, 300));
  await measure("PostgreSQL, separate worker, NOTIFY", api, worker.store);
  await api.close();
  await worker.close();
  await db.dispose();
}
