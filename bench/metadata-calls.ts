/**
 * The metadata store's hot calls, one at a time, on both engines: the API's status read of a queued
 * export (first and unchanged since the last read) and of a running export, the worker's heartbeat
 * and claim, and a create under the queue cap.
 * Microseconds per call (mean of BENCH_CALLS, after a warm-up); SQLite on a temp file, PostgreSQL on
 * a fresh database of EXPORTD_TEST_DATABASE_URL (or a throwaway server). A comparison between
 * query layers (or before/after a change) runs it on both, in the same session.
 * Run: node --import tsx bench/metadata-calls.ts
 */
import path from "node:path";
import { newExport } from "../src/domain/export.js";
import { newId } from "../src/domain/ids.js";
import { PostgresStore, SqliteStore } from "../src/metadata/open.js";
import type { MetadataStore } from "../src/metadata/types.js";
import { SAMPLE_REQUEST as request } from "../test/helpers/export-request.js";
import { createTestDatabase } from "../test/helpers/postgres.js";
import { tempDir } from "../test/helpers/service.js";

const CALLS = Number(process.env.BENCH_CALLS ?? 5000);

async function time(label: string, engine: string, calls: number, call: (i: number) => Promise<unknown>) {
  for (let i = 0; i < Math.min(1000, calls); i++) await call(i);
  const start = process.hrtime.bigint();
  for (let i = 0; i < calls; i++) await call(i);
  const us = Number(process.hrtime.bigint() - start) / 1000 / calls;
  process.stdout.write(`${engine.padEnd(9)} ${label.padEnd(34)} ${us.toFixed(1).padStart(7)} µs/call\n`);
}

async function measure(engine: string, store: MetadataStore, calls: number): Promise<void> {
  try {
    const tenant = await store.ensureTenant("bench", 1);
    // A queue of 50 exports of this tenant: the status read's position counts the ones before.
    for (let i = 0; i < 50; i++)
      await store.insertExport(
        newExport({ id: newId(), tenantId: tenant.id, request, now: 10 + i, estimatedRows: 10 }),
      );
    const last = newExport({ id: newId(), tenantId: tenant.id, request, now: 100, estimatedRows: 10 });
    await store.insertExport(last);
    await time("status read, queued export", engine, calls, () => store.readExport(tenant.id, last.id));
    // The API's read of an export it read before: a new turn of the event loop per call, as
    // requests come (SQLite asks for others' commits once per turn), against an empty turn.
    const nextTurn = () => new Promise((resolve) => setImmediate(resolve));
    await time("(a turn of the event loop alone)", engine, calls, nextTurn);
    const seen = await store.readExport(tenant.id, last.id);
    await time("status read, queued, unchanged", engine, calls, async () => {
      await nextTurn();
      if ((await store.readExport(tenant.id, last.id, seen?.version)) !== "unchanged")
        throw new Error("changed");
    });
    const lease = { owner: "bench", now: 1000, leaseMs: 60_000 };
    const claimed = await store.claimExport(lease);
    if (!claimed) throw new Error("nothing to claim");
    await time("status read, running export", engine, calls, () => store.readExport(tenant.id, claimed.id));
    await time("heartbeat", engine, calls, () => store.heartbeat(claimed.id, lease));
    // The tenant's max_running (2 by the default plan) is reached after one more: claims find none.
    await store.claimExport(lease);
    await time("claim, none runnable", engine, calls, () => store.claimExport(lease));
    await time("create under the queue cap", engine, calls, async (i) => {
      const record = newExport({
        id: newId(),
        tenantId: tenant.id,
        request,
        now: 2000 + i,
        estimatedRows: 1,
      });
      await store.createExport(record, { maxQueued: 1_000_000, idempotency: null });
    });
  } finally {
    await store.close();
  }
}

const sqlite = new SqliteStore(path.join(tempDir("exportd-bench-meta-"), "meta.sqlite"));
await sqlite.migrate();
await measure("sqlite", sqlite, CALLS);
const db = await createTestDatabase();
try {
  const postgres = new PostgresStore(db.url);
  await postgres.migrate();
  await measure("postgres", postgres, Math.ceil(CALLS / 10));
} finally {
  await db.dispose();
}
