/**
 * The worker and the store's job rules on a real SQLite file: leases, take-over, retries with
 * back-off, user errors that never retry, and cancel. Datasets here are small test doubles of the
 * source (the one fault we cannot cause with the demo data is a source that breaks).
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { pino } from "pino";
import type { DatasetDescriptor } from "../../src/domain/dataset.js";
import { type ExportRecord, type ExportRequest, newExport } from "../../src/domain/export.js";
import { newId } from "../../src/domain/ids.js";
import { SqliteStore } from "../../src/metadata/open.js";
import { Metrics } from "../../src/metrics/metrics.js";
import { LocalObjectStore } from "../../src/object-store/local.js";
import { LinkSigner } from "../../src/object-store/signing.js";
import { DatasetRegistry } from "../../src/sources/registry.js";
import type { Cell, Dataset, ReadOptions, RowBatch } from "../../src/sources/types.js";
import { issueApiKey } from "../../src/usecases/api-keys.js";
import { ExportWorker } from "../../src/worker/worker.js";
import { tempDir, waitFor } from "../helpers/service.js";

const descriptor = (name: string, maxRows = 1_000_000): DatasetDescriptor => ({
  name,
  description: "test",
  columns: [
    { name: "n", type: "integer" },
    { name: "label", type: "string" },
  ],
  filters: [],
  formats: ["csv", "jsonl"],
  limits: { maxRangeDays: 365, maxRows, maxBytes: 1e12 },
  plans: null,
});

/** Counts 0..total-1 in batches; `failReads` first reads throw; `delayMs` slows each batch. */
class CountingDataset implements Dataset {
  reads = 0;
  constructor(
    readonly descriptor: DatasetDescriptor,
    private readonly total: number,
    private failReads = 0,
    private readonly delayMs = 0,
  ) {}
  async estimateRows() {
    return this.total;
  }
  async *read(o: ReadOptions): AsyncIterable<RowBatch> {
    this.reads++;
    if (this.failReads > 0) {
      this.failReads--;
      throw new Error("source connection reset");
    }
    let n = o.after === null ? 0 : Number(o.after) + 1;
    while (n < this.total) {
      o.signal.throwIfAborted();
      if (this.delayMs) await new Promise((r) => setTimeout(r, this.delayMs));
      const rows: Cell[][] = [];
      const start = n;
      for (; n < Math.min(this.total, start + 100); n++) rows.push([n, `row ${n}`]);
      yield {
        kind: "cells",
        rows,
        cursor: String(n - 1),
        rowCursor: (i) => String(start + i),
        position: n / this.total,
      };
    }
  }
}

/** Fast leases and polls so the tests run in moments. */
const WORKER = {
  concurrency: 1,
  leaseMs: 1000,
  heartbeatMs: 100,
  pollMs: 20,
  maxAttempts: 3,
  maxTakeovers: 5,
  retryBaseMs: 50,
  storageRetryMs: 1000,
  sourceStallMs: 300_000,
  shutdownGraceMs: 0,
};

const request = (dataset: string, partMaxRows = 1000): ExportRequest => ({
  dataset,
  from: 0,
  to: 1,
  filters: {},
  columns: ["n", "label"],
  format: "csv",
  compression: "none",
  csv: { delimiter: ",", header: true, bom: false },
  timezone: "UTC",
  partMaxRows,
});

describe("worker", () => {
  let dir: string;
  let store: SqliteStore;
  let storage: LocalObjectStore;
  let tenantId: string;
  const logger = pino({ level: "silent" });

  before(async () => {
    dir = tempDir();
    store = new SqliteStore(path.join(dir, "meta.sqlite"));
    store.migrate();
    storage = new LocalObjectStore(
      path.join(dir, "objects"),
      new LinkSigner("x".repeat(32)),
      "http://localhost",
    );
    tenantId = (await issueApiKey(store, "acme", ["exports:read"], Date.now())).tenant.id;
  });
  after(async () => {
    await store.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  async function queue(req: ExportRequest): Promise<string> {
    const id = newId();
    const now = Date.now();
    const record: ExportRecord = newExport({ id, tenantId, request: req, now, estimatedRows: null });
    await store.insertExport(record);
    return id;
  }

  function worker(datasets: Dataset[]) {
    return new ExportWorker({
      store,
      storage,
      metrics: new Metrics(() => store.countExportsByStatus()),
      datasets: new DatasetRegistry(datasets),
      config: {
        gzipLevel: 1,
        retentionDays: 7,
        worker: { ...WORKER, concurrency: 2 },
      },
      logger,
    });
  }

  const settled = (id: string) =>
    waitFor(
      () => store.getExport(tenantId, id),
      (e) => e !== null && !["queued", "running"].includes(e.status),
    ) as Promise<ExportRecord>;

  test("a failing source is retried with back-off and then succeeds", async () => {
    const ds = new CountingDataset(descriptor("flaky"), 2500, 2);
    const w = worker([ds]);
    const id = await queue(request("flaky"));
    w.start();
    const done = await settled(id);
    await w.stop();
    assert.equal(done.status, "succeeded");
    assert.equal(done.attempts, 3);
    assert.equal(ds.reads, 3);
    assert.deepEqual(
      done.parts.map((p) => p.rows),
      [1000, 1000, 500],
    );
    assert.equal(done.error, null, "a success clears the last attempt's error");
  });

  test("retries used up → failed, retryable, files deleted", async () => {
    const ds = new CountingDataset(descriptor("broken"), 100, 99);
    const w = worker([ds]);
    const id = await queue(request("broken"));
    w.start();
    const done = await settled(id);
    await w.stop();
    assert.equal(done.status, "failed");
    assert.deepEqual(
      { code: done.error?.code, retryable: done.error?.retryable },
      { code: "internal_error", retryable: true },
    );
    assert.equal(done.attempts, 3);
    assert.ok(!(done.error?.message ?? "").includes("connection reset"), "internals stay in the log");
  });

  test("too many rows → failed at once with too_many_rows, not retried, no truncated result", async () => {
    const ds = new CountingDataset(descriptor("capped", 1500), 5000);
    const w = worker([ds]);
    const id = await queue(request("capped"));
    w.start();
    const done = await settled(id);
    await w.stop();
    assert.equal(done.status, "failed");
    assert.equal(done.error?.code, "too_many_rows");
    assert.equal(done.error?.retryable, false);
    assert.equal(done.attempts, 1);
    // stop() waits for the run to finish, its clean-up included.
    assert.deepEqual((await store.getExport(tenantId, id))?.parts, [], "parts of a failed export are gone");
    assert.deepEqual(await storage.list(`exports/${tenantId}/${id}/`), []);
  });

  test("cancel while running stops within two seconds and deletes the published parts", async () => {
    const ds = new CountingDataset(descriptor("slow"), 100_000, 0, 5);
    const w = worker([ds]);
    const id = await queue(request("slow", 500));
    w.start();
    await waitFor(
      () => store.getExport(tenantId, id),
      (e) => (e?.parts.length ?? 0) >= 2,
    );
    const canceledAt = Date.now();
    const result = await store.cancelExport(tenantId, id, canceledAt);
    assert.equal(result?.canceled, true);
    await waitFor(
      async () => (await storage.list(`exports/${tenantId}/${id}/`)).length,
      (n) => n === 0,
      2000,
    );
    await waitFor(
      async () => w.activeRuns,
      (n) => n === 0,
      2000,
    );
    assert.ok(Date.now() - canceledAt < 2000);
    await w.stop();
    const after = await store.getExport(tenantId, id);
    assert.equal(after?.status, "canceled");
    assert.deepEqual(after?.parts, []);
    assert.equal(fs.readdirSync(path.join(dir, "objects", "exports", tenantId)).includes(id), false);
  });

  test("a graceful shutdown finishes the part being written, then hands the export back", async () => {
    const ds = new CountingDataset(descriptor("graceful"), 100_000, 0, 5);
    const w = worker([ds]);
    const id = await queue(request("graceful", 1000));
    w.start();
    const before = await waitFor(
      () => store.getExport(tenantId, id),
      (e) => (e?.parts.length ?? 0) >= 1 && (e?.progress.rows ?? 0) > (e?.parts.length ?? 0) * 1000,
    );
    const t0 = Date.now();
    await w.stop(10_000);
    assert.ok(Date.now() - t0 < 5000, "done when the part is, not at the deadline");
    const after = await store.getExport(tenantId, id);
    assert.equal(after?.status, "queued");
    assert.equal(
      after?.parts.length,
      before!.parts.length + 1,
      "the part in progress was finished and published",
    );
    assert.equal(after?.attempts, 0);
    assert.deepEqual(
      (await storage.list(`exports/${tenantId}/${id}/`)).sort(),
      after!.parts.map((p) => p.objectKey).sort(),
      "no unpublished file left",
    );
  });

  test("a claim in flight when the shutdown begins: its run is handed back before stop() returns", async () => {
    // The worker's own store on the same file, its claims held at a gate: the stop begins while a
    // claim is on its way, as when an export is created just before a shutdown.
    let open: () => void = () => undefined;
    const gate = new Promise<void>((resolve) => {
      open = resolve;
    });
    let waiting: () => void = () => undefined;
    const claimWaiting = new Promise<void>((resolve) => {
      waiting = resolve;
    });
    class GatedStore extends SqliteStore {
      override async claimExport(lease: Parameters<SqliteStore["claimExport"]>[0]) {
        waiting();
        await gate;
        return super.claimExport(lease);
      }
    }
    const gated = new GatedStore(path.join(dir, "meta.sqlite"));
    const ds = new CountingDataset(descriptor("late"), 100_000, 0, 5);
    const w = new ExportWorker({
      store: gated,
      storage,
      metrics: new Metrics(() => gated.countExportsByStatus()),
      datasets: new DatasetRegistry([ds]),
      config: { gzipLevel: 1, retentionDays: 7, worker: WORKER },
      logger,
    });
    const id = await queue(request("late", 1000));
    w.start();
    await claimWaiting;
    const stopped = w.stop();
    open();
    await stopped;
    await gated.close();
    assert.equal(w.activeRuns, 0, "no run goes on after stop() returned");
    const after = await store.getExport(tenantId, id);
    assert.equal(after?.status, "queued", "handed back to the queue, not left running under a lease");
    assert.equal(after?.attempts, 0);
    assert.deepEqual(await storage.list(`exports/${tenantId}/${id}/`), [], "nothing written after the stop");
  });

  test("a shutdown hands the export back; another worker resumes after the last published part", async () => {
    const ds = new CountingDataset(descriptor("resumable"), 4321, 0, 2);
    const first = worker([ds]);
    const id = await queue(request("resumable", 1000));
    first.start();
    await waitFor(
      () => store.getExport(tenantId, id),
      (e) => (e?.parts.length ?? 0) >= 2,
    );
    await first.stop();
    const requeued = await store.getExport(tenantId, id);
    assert.equal(requeued?.status, "queued");
    assert.equal(requeued?.attempts, 0, "a shutdown does not count as a failed attempt");
    // Another worker claims and finishes from the checkpoint.
    const second = worker([ds]);
    second.start();
    const done = await settled(id);
    await second.stop();
    assert.equal(done.status, "succeeded");
    assert.deepEqual(
      done.parts.map((p) => [p.index, p.rows]),
      [
        [0, 1000],
        [1, 1000],
        [2, 1000],
        [3, 1000],
        [4, 321],
      ],
    );
    const body = done.parts
      .map((p) => fs.readFileSync(path.join(dir, "objects", p.objectKey), "utf8"))
      .join("");
    const numbers = body
      .split("\r\n")
      .filter((l) => l && l !== "n,label")
      .map((l) => Number(l.split(",")[0]));
    assert.deepEqual(
      numbers,
      Array.from({ length: 4321 }, (_, i) => i),
      "every row once, in order",
    );
  });
});

test("a lease left by a dead process on this host is taken over at once, not after it expires", async () => {
  const dir = tempDir();
  const store = new SqliteStore(path.join(dir, "meta.sqlite"));
  store.migrate();
  const storage = new LocalObjectStore(
    path.join(dir, "objects"),
    new LinkSigner("x".repeat(32)),
    "http://localhost",
  );
  try {
    const tenantId = (await store.ensureTenant("acme", 0)).id;
    const id = newId();
    const now = Date.now();
    await store.insertExport(
      newExport({ id, tenantId, request: request("quick"), now, estimatedRows: null }),
    );
    // A process that existed and is gone: its pid is free.
    const child = spawnSync(process.execPath, ["-e", "process.stdout.write(String(process.pid))"]);
    const deadPid = Number(child.stdout.toString());
    const hourLease = { owner: `${os.hostname()}:${deadPid}:deadbeef`, now, leaseMs: 3_600_000 };
    assert.equal((await store.claimExport(hourLease))?.id, id);
    const metrics = new Metrics(() => store.countExportsByStatus());
    const w = new ExportWorker({
      store,
      storage,
      datasets: new DatasetRegistry([new CountingDataset(descriptor("quick"), 10)]),
      config: {
        gzipLevel: 1,
        retentionDays: 7,
        worker: WORKER,
      },
      logger: pino({ level: "silent" }),
      metrics,
    });
    w.start();
    // The dead process's lease runs for an hour: finishing within waitFor's time is "at once",
    // with room for a loaded machine.
    const done = await waitFor(
      () => store.getExport(tenantId, id),
      (e) => e?.status === "succeeded",
    );
    await w.stop();
    assert.equal(done?.parts[0]?.rows, 10);
    assert.match(await metrics.registry.metrics(), /^exportd_lease_takeovers_total 1$/m);
  } finally {
    await store.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

describe("store leases", () => {
  let dir: string;
  let store: SqliteStore;
  let tenantId: string;

  before(async () => {
    dir = tempDir();
    store = new SqliteStore(path.join(dir, "meta.sqlite"));
    store.migrate();
    tenantId = (await store.ensureTenant("acme", 0)).id;
  });
  after(async () => {
    await store.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  test("an expired lease passes to another worker, and the old one can no longer write", async () => {
    const t = 1_000_000;
    const id = newId();
    await store.insertExport(
      newExport({ id, tenantId, request: request("events"), now: t, estimatedRows: null }),
    );
    const a = { owner: "a", now: t, leaseMs: 1000 };
    assert.equal((await store.claimExport(a))?.id, id);
    assert.equal(
      await store.claimExport({ owner: "b", now: t + 500, leaseMs: 1000 }),
      null,
      "lease still valid",
    );
    assert.equal(await store.heartbeat(id, { ...a, now: t + 900 }), "ok");
    assert.equal(
      await store.claimExport({ owner: "b", now: t + 1500, leaseMs: 1000 }),
      null,
      "renewed until t+1900",
    );
    const b = { owner: "b", now: t + 2000, leaseMs: 1000 };
    const taken = await store.claimExport(b);
    assert.equal(taken?.id, id);
    assert.equal(taken?.attempts, 1, "a takeover is no failed attempt");
    assert.equal(taken?.takeovers, 1);
    assert.equal(await store.heartbeat(id, { ...a, now: t + 2001 }), "lost");
    const part = { index: 0, objectKey: "k", rows: 1, bytes: 1, sha256: "x" };
    assert.equal(await store.recordPart(id, a, part, "0", { percent: 1, rows: 1, parts: 1 }), "lost");
    assert.equal(await store.completeExport(id, a, t + 10), "lost");
    assert.equal(await store.recordPart(id, b, part, "0", { percent: 50, rows: 1, parts: 1 }), "ok");
    // Progress only moves forward.
    assert.equal(await store.updateProgress(id, b, { percent: 10, rows: 0, parts: 0 }, null), "ok");
    const view = await store.getExport(tenantId, id);
    assert.deepEqual(view?.progress, { percent: 50, rows: 1, parts: 1 });
    assert.equal(await store.getExport("another-tenant", id), null, "scoped to the tenant");
  });
});
