/**
 * kill -9 of the real server mid-export, then a restart on the same data folder: the export
 * resumes after its last published part and its parts equal, byte for byte, those of the same
 * export run without interruption. Also: cancel mid-run stops the work and deletes the parts.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { after, test } from "node:test";
import {
  client,
  createKey,
  errorCode,
  removeDir,
  type ServerProcess,
  startServer,
} from "../helpers/server-process.js";
import { pastMidnight, waitFor } from "../helpers/service.js";

const servers: ServerProcess[] = [];
after(async () => {
  for (const s of servers) await s.stop();
  for (const s of servers) removeDir(s.dataDir);
});

const to = pastMidnight();
const thirtyDays = {
  dataset: "events",
  from: new Date(to - 30 * 86_400_000).toISOString(),
  to: new Date(to).toISOString(),
  part_max_rows: 200_000,
};

function filesUnder(dir: string): string[] {
  if (!fs.existsSync(dir)) return [];
  return fs
    .readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((d) => d.isFile())
    .map((d) => d.name);
}

test("kill -9 mid-export, restart: the export completes with the right rows, equal to an uninterrupted run", async () => {
  const env = { EXPORTD_WORKER_CONCURRENCY: "1" };
  const first = await startServer({ env });
  servers.push(first);
  const key = createKey(first.dataDir, "acme");
  let api = client(first.url, key);
  const created = await api.create(thirtyDays);
  assert.equal(created.status, 202);
  const id = created.body.id as string;
  const midway = await waitFor(
    () => api.get(id),
    (e) => e.status === "running" && e.progress.parts >= 1,
    60_000,
  );
  assert.ok(midway.progress.parts < 7, "killed before the end");
  await first.kill9();

  const second = await startServer({ dataDir: first.dataDir, env });
  servers.push(second);
  api = client(second.url, key);
  const resumed = await waitFor(
    () => api.get(id),
    (e) => e.status !== "queued" && e.status !== "running",
    90_000,
  );
  assert.equal(resumed.status, "succeeded");
  assert.ok(resumed.attempts >= 2, "a second attempt finished it");
  const parts = resumed.parts;
  assert.deepEqual(
    parts.map((p) => p.index),
    parts.map((_, i) => i),
  );
  const rows = parts.reduce((sum, p) => sum + p.rows, 0);
  assert.equal(rows, 30 * 43_200, "every row of 30 days, none twice");
  assert.equal(resumed.progress.rows, rows);

  // The same export, uninterrupted, on the restarted server.
  const again = await api.create(thirtyDays);
  const clean = await waitFor(
    () => api.get(again.body.id),
    (e) => e.status === "succeeded",
    90_000,
  );
  assert.deepEqual(
    parts.map((p) => [p.rows, p.sha256]),
    clean.parts.map((p) => [p.rows, p.sha256]),
    "resumed parts equal uninterrupted parts byte for byte",
  );
  for (const p of parts) {
    const bytes = Buffer.from(await (await fetch(p.url)).arrayBuffer());
    assert.equal(createHash("sha256").update(bytes).digest("hex"), p.sha256);
  }
  const exportDir = path.join(first.dataDir, "objects", "exports");
  const files = filesUnder(exportDir);
  assert.equal(files.filter((f) => f.includes(".upload-")).length, 0, "no upload left behind");
  assert.equal(files.length, parts.length * 2, "exactly the published parts of both exports");
});

test("cancel mid-run: canceled within two seconds, its parts deleted, then 409s", async () => {
  const server = await startServer();
  servers.push(server);
  const api = client(server.url, createKey(server.dataDir, "acme"));
  const created = await api.create({ ...thirtyDays, part_max_rows: 100_000 });
  const id = created.body.id as string;
  const running = await waitFor(
    () => api.get(id),
    (e) => e.status === "running" && e.progress.parts >= 1,
    60_000,
  );
  assert.ok(running.cancellable);
  const canceled = await api.post(`/v1/exports/${id}/cancel`);
  assert.equal(canceled.status, 200);
  assert.equal(canceled.body.status, "canceled");
  const dir = path.join(server.dataDir, "objects", "exports");
  const t0 = Date.now();
  await waitFor(
    async () => filesUnder(dir).length,
    (n) => n === 0,
    2000,
  );
  assert.ok(Date.now() - t0 <= 2000);
  const view = await api.get(id);
  assert.equal(view.status, "canceled");
  assert.deepEqual(view.parts, []);
  assert.equal(view.cancellable, false);
  const twice = await api.post(`/v1/exports/${id}/cancel`);
  assert.equal(twice.status, 409);
  assert.equal(twice.body.error.code, "not_cancellable");
  const download = await api.raw(`/v1/exports/${id}/download`, { redirect: "manual" });
  assert.equal(download.status, 409);
  assert.equal(await errorCode(download), "export_not_ready");
  // Canceled means stopped: the parts count stays where it was.
  await new Promise((r) => setTimeout(r, 1500));
  assert.equal(filesUnder(dir).length, 0);
});
