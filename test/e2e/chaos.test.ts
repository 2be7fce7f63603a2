/**
 * Chaos on the scale-out layout: 1 API and 3 worker processes on PostgreSQL + S3, 50 exports of
 * mixed sizes; one worker is killed with SIGKILL mid-export and another stopped with SIGTERM.
 * Every export must succeed, every part must match its sha256 and row count, each part index must
 * be published once, and the bucket must hold exactly the published parts.
 */
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { createHash } from "node:crypto";
import fs from "node:fs";
import { after, before, test } from "node:test";
import { gunzipSync } from "node:zlib";
import { S3ObjectStore } from "../../src/object-store/s3.js";
import { createTestDatabase, type TestDatabase } from "../helpers/postgres.js";
import { startTestS3, type TestS3 } from "../helpers/s3.js";
import {
  CLI,
  cli,
  client,
  createKey,
  type ExportView,
  type ServerProcess,
  startServer,
} from "../helpers/server-process.js";
import { pastMidnight, tempDir, waitFor } from "../helpers/service.js";

let db: TestDatabase;
let s3: TestS3;
let api: ServerProcess;
const workers: ChildProcess[] = [];

function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once("exit", () => resolve()));
}

before(async () => {
  db = await createTestDatabase();
  s3 = await startTestS3("chaos");
});
after(async () => {
  for (const w of workers) {
    w.kill("SIGKILL");
    await exited(w);
  }
  await api?.stop();
  await s3.stop();
  await db.dispose();
});

const dataDir = tempDir("exportd-chaos-");
after(() => fs.rmSync(dataDir, { recursive: true, force: true }));

test("50 exports, 3 workers, one SIGKILL and one SIGTERM: all succeed, whole and once", async () => {
  const env = {
    ...s3.env,
    EXPORTD_DATABASE_URL: db.url,
    EXPORTD_LEASE_SECONDS: "3",
    EXPORTD_WORKER_CONCURRENCY: "2",
    EXPORTD_RETRY_BASE_MS: "200",
    EXPORTD_SHUTDOWN_GRACE_SECONDS: "5",
  };
  api = await startServer({ dataDir, env: { ...env, EXPORTD_ROLE: "api" } });
  for (let i = 0; i < 3; i++) {
    workers.push(
      spawn(process.execPath, [CLI, "serve", "--role", "worker"], {
        env: { ...process.env, ...env, EXPORTD_DATA_DIR: dataDir, EXPORTD_LOG_LEVEL: "warn" },
        stdio: "ignore",
      }),
    );
  }
  const key = createKey(dataDir, "acme", undefined, env);
  // Room for all 50 at once: this test is about crashes, not about queue caps.
  const limits = ["--max-running", "100", "--max-queued", "100", "--requests-per-minute", "100000"];
  cli(dataDir, ["tenants", "set", "acme", ...limits], env);
  const http = client(api.url, key);
  const to = pastMidnight();
  const ids: string[] = [];
  const rowsByExport = new Map<string, number>();
  for (let i = 0; i < 50; i++) {
    const hours = i % 5 === 0 ? 36 : 1 + (i % 6);
    const created = await http.create({
      dataset: "events",
      from: new Date(to - hours * 3_600_000).toISOString(),
      to: new Date(to).toISOString(),
      part_max_rows: 10_000,
    });
    assert.equal(created.status, 202, JSON.stringify(created.body));
    ids.push(created.body.id);
    rowsByExport.set(created.body.id, hours * 1800);
  }

  // Kill one worker while a large export has published parts and is still running.
  await waitFor(
    async () => Promise.all(ids.filter((_, i) => i % 5 === 0).map((id) => http.get(id))),
    (views) => views.some((v) => v.status === "running" && v.progress.parts >= 1),
    60_000,
  );
  workers[0]!.kill("SIGKILL");
  await exited(workers[0]!);
  workers[1]!.kill("SIGTERM");
  await exited(workers[1]!);
  assert.equal(workers[1]!.exitCode, 0, "a graceful stop exits cleanly");

  const views: ExportView[] = await waitFor(
    async () => Promise.all(ids.map((id) => http.get(id))),
    (all) => all.every((v) => v.status !== "queued" && v.status !== "running"),
    180_000,
  );
  for (const v of views) assert.equal(v.status, "succeeded", `${v.id}: ${JSON.stringify(v.error)}`);
  for (const v of views) assert.equal(v.attempts, 1, `${v.id}: a crash or a handover is no failed attempt`);

  const store = new S3ObjectStore(s3.settings);
  try {
    const objects = new Set(await store.list("exports/"));
    assert.ok(
      [...objects].some((k) => /\.r([2-9]|\d{2,})\./.test(k)),
      "some parts were written by a later run (a takeover or a handover)",
    );
    let published = 0;
    for (const v of views) {
      assert.deepEqual(
        v.parts.map((p) => p.index),
        v.parts.map((_, i) => i),
        "each part index once, none missing",
      );
      const expectedRows = Math.round(
        (Date.parse((v as unknown as { request: { to: string } }).request.to) -
          Date.parse((v as unknown as { request: { from: string } }).request.from)) /
          2000,
      );
      assert.equal(v.progress.rows, expectedRows, `${v.id} rows`);
      for (const part of v.parts) {
        const bytes = Buffer.from(await (await fetch(part.url)).arrayBuffer());
        assert.equal(createHash("sha256").update(bytes).digest("hex"), part.sha256);
        assert.equal(gunzipSync(bytes).toString().trimEnd().split("\r\n").length - 1, part.rows);
        published++;
      }
    }
    assert.equal(objects.size, published, "no orphan objects in the bucket");
  } finally {
    await store.close();
  }
});
