/**
 * A full disk under the SQLite metadata store: the data folder is a small tmpfs that this file
 * fills. /readyz goes 503 below EXPORTD_MIN_FREE_BYTES, a create answers 503 service_unavailable
 * (not 500), and once space returns everything works again with nothing corrupted or lost.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { after, before, test } from "node:test";
import Database from "better-sqlite3";
import {
  api,
  createKey,
  type ErrorBody,
  type ExportView,
  type ServerProcess,
  startServer,
  stopAll,
} from "../helpers/server-process.js";
import { pastMidnight, tempDir, waitFor } from "../helpers/service.js";

// Not a tempDataDir: stopAll() would try to delete it while it is still mounted.
const mountPoint = tempDir("exportd-sqlite-full-");
let mounted = false;
let server: ServerProcess;

before(() => {
  execFileSync("mount", ["-t", "tmpfs", "-o", "size=8m", "tmpfs", mountPoint]);
  mounted = true;
});
after(async () => {
  await stopAll();
  if (mounted) execFileSync("umount", ["-l", mountPoint]);
  fs.rmSync(mountPoint, { recursive: true, force: true });
});

/** Writes zeros until the disk refuses; returns the filler's path. */
function fillDisk(dir: string): string {
  const file = path.join(dir, "filler");
  const fd = fs.openSync(file, "w");
  const chunk = Buffer.alloc(64 * 1024);
  try {
    for (;;) fs.writeSync(fd, chunk);
  } catch (err) {
    assert.equal((err as NodeJS.ErrnoException).code, "ENOSPC");
  } finally {
    fs.closeSync(fd);
  }
  return file;
}

test("SQLite on a full disk: /readyz 503, create 503 service_unavailable, nothing corrupted after space returns", async () => {
  const dataDir = path.join(mountPoint, "data");
  const key = createKey(dataDir, "acme");
  server = await startServer({ dataDir, env: { EXPORTD_MIN_FREE_BYTES: String(1024 * 1024) } });
  const http = api(server.url, key);
  const to = pastMidnight();
  const body = {
    dataset: "events",
    from: new Date(to - 3_600_000).toISOString(),
    to: new Date(to).toISOString(),
  };
  const first = await http.post("/v1/exports", body);
  assert.equal(first.status, 202);
  const done = await waitFor(
    () => http.get(`/v1/exports/${first.json.id}`),
    (r) => r.json.status === "succeeded",
    20_000,
  );
  assert.equal((await fetch(`${server.url}/readyz`)).status, 200);

  // An empty WAL: the next write must take new blocks from the disk, as any write does once the
  // WAL has been used up.
  const db = new Database(path.join(dataDir, "exportd.sqlite"));
  db.pragma("wal_checkpoint(TRUNCATE)");
  db.close();
  const filler = fillDisk(mountPoint);

  const ready = await fetch(`${server.url}/readyz`);
  const readyBody = (await ready.json()) as ErrorBody;
  assert.equal(ready.status, 503);
  assert.equal(readyBody.error.code, "service_unavailable");
  assert.ok(
    readyBody.error.details.some((d) => d.field === "disk" && /EXPORTD_MIN_FREE_BYTES/.test(d.message)),
    JSON.stringify(readyBody),
  );
  const refused = await http.post<ErrorBody>("/v1/exports", body);
  assert.equal(refused.status, 503, JSON.stringify(refused.json));
  assert.equal(refused.json.error.code, "service_unavailable");
  assert.ok(refused.headers.get("retry-after"), "Retry-After is set");
  // Reads keep working on a full disk.
  assert.equal((await http.get(`/v1/exports/${first.json.id}`)).status, 200);
  assert.equal(server.child.exitCode, null, "still running");

  fs.rmSync(filler);
  assert.equal((await fetch(`${server.url}/readyz`)).status, 200);
  const second = await http.post("/v1/exports", body);
  assert.equal(second.status, 202, JSON.stringify(second.json));
  const views: ExportView[] = [];
  for (const id of [first.json.id, second.json.id]) {
    const r = await waitFor(
      () => http.get(`/v1/exports/${id}`),
      (x) => x.json.status === "succeeded",
      20_000,
    );
    views.push(r.json);
  }
  const stored = (v: ExportView) =>
    v.parts.map(({ index, rows, bytes, sha256 }) => ({ index, rows, bytes, sha256 }));
  assert.deepEqual(stored(views[0] as ExportView), stored(done.json), "the first export is unchanged");
  for (const v of views) {
    for (const part of v.parts) {
      const bytes = Buffer.from(await (await fetch(part.url)).arrayBuffer());
      assert.equal(createHash("sha256").update(bytes).digest("hex"), part.sha256);
    }
    assert.equal(v.progress.rows, 1800);
  }
  const list = await http.get<{ data: ExportView[] }>("/v1/exports");
  assert.equal(list.json.data.length, 2, "the refused create left nothing behind");
  const check = new Database(path.join(dataDir, "exportd.sqlite"), { readonly: true });
  try {
    assert.equal(check.pragma("integrity_check", { simple: true }), "ok");
  } finally {
    check.close();
  }
});

test("SQLite locked by another writer past busy_timeout: create answers 503, then works once the lock is gone", async () => {
  const http = api(server.url, createKey(server.dataDir, "beta"));
  const to = pastMidnight();
  const body = {
    dataset: "events",
    from: new Date(to - 3_600_000).toISOString(),
    to: new Date(to).toISOString(),
  };
  const holder = new Database(path.join(server.dataDir, "exportd.sqlite"));
  try {
    holder.exec("BEGIN IMMEDIATE"); // the write lock, held past exportd's 5 s busy_timeout
    const locked = await http.post<ErrorBody>("/v1/exports", body);
    assert.equal(locked.status, 503, JSON.stringify(locked.json));
    assert.equal(locked.json.error.code, "service_unavailable");
    holder.exec("ROLLBACK");
  } finally {
    holder.close();
  }
  const created = await http.post("/v1/exports", body);
  assert.equal(created.status, 202, JSON.stringify(created.json));
  assert.equal(server.child.exitCode, null, "still running");
});
