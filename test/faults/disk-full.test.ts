/**
 * The local objects folder on a small tmpfs (a real full disk, ENOSPC; a real read-only mount,
 * EROFS). A full disk is retried within EXPORTD_STORAGE_RETRY_SECONDS: freed in time, the export
 * succeeds on its first attempt; not freed, it fails with storage_error (not internal_error) and
 * leaves no file behind, and the same export succeeds once space is freed. A read-only folder
 * cannot heal by waiting: storage_error without retries; a purge it refuses is retried by the
 * sweeper until the files are gone.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { after, before, test } from "node:test";
import { gunzipSync } from "node:zlib";
import { StorageError } from "../../src/object-store/errors.js";
import { LocalObjectStore } from "../../src/object-store/local.js";
import { LinkSigner } from "../../src/object-store/signing.js";
import { COMPRESSORS } from "../../src/pipeline/compressors.js";
import { PartSink } from "../../src/pipeline/part-sink.js";
import { filesUnder } from "../helpers/server-process.js";
import { pastMidnight, startTestService, type TestService, tempDir, waitFor } from "../helpers/service.js";

interface View {
  id: string;
  status: string;
  attempts: number;
  error: { code: string; retryable: boolean } | null;
  parts: { index: number; rows: number; sha256: string; bytes: number; url: string }[];
}

const dataDir = tempDir("exportd-disk-");
const objects = path.join(dataDir, "objects");
const ballast = path.join(objects, "ballast");
let mounted = false;
let svc: TestService;
let headers: Record<string, string>;

before(async () => {
  fs.mkdirSync(objects);
  execFileSync("mount", ["-t", "tmpfs", "-o", "size=4m", "tmpfs", objects]);
  mounted = true;
  svc = await startTestService({
    EXPORTD_DATA_DIR: dataDir,
    EXPORTD_MAX_ATTEMPTS: "1",
    EXPORTD_STORAGE_RETRY_SECONDS: "4",
    EXPORTD_SWEEP_INTERVAL_SECONDS: "0.2",
  });
  headers = { authorization: `Bearer ${await svc.key("acme")}` };
});
after(async () => {
  await svc?.dispose();
  if (mounted) execFileSync("umount", [objects]);
  fs.rmSync(dataDir, { recursive: true, force: true });
});

/** Fills the tmpfs up to `leaveBytes` of free space. */
function fillDisk(leaveBytes = 16 * 1024): void {
  const { bavail, bsize } = fs.statfsSync(objects);
  fs.writeFileSync(ballast, Buffer.alloc(Math.max(0, bavail * bsize - leaveBytes)));
}

const to = pastMidnight();
const request = {
  dataset: "events",
  from: new Date(to - 6 * 3_600_000).toISOString(),
  to: new Date(to).toISOString(),
  compression: "gzip",
  part_max_rows: 4000,
};

async function create(payload: Record<string, unknown> = request): Promise<string> {
  const res = await svc.app!.inject({ method: "POST", url: "/v1/exports", headers, payload });
  assert.equal(res.statusCode, 202, res.body);
  return res.json().id as string;
}

const get = async (id: string) =>
  (await svc.app!.inject({ url: `/v1/exports/${id}`, headers })).json() as View;
const settled = (id: string) =>
  waitFor(
    () => get(id),
    (v) => v.status !== "queued" && v.status !== "running",
    30_000,
  );
const storageRetries = async () =>
  Number(
    /^exportd_storage_retries_total (\d+)/m.exec((await svc.app!.inject({ url: "/metrics" })).body)?.[1],
  );

/** Every file in the objects folder except the ballast. */
const exportFiles = () => filesUnder(objects).filter((f) => f !== "ballast");

/** Downloads every part through its signed link and checks bytes, sha256 and row count. */
async function assertWhole(view: View): Promise<void> {
  assert.equal(view.parts.length, 3);
  for (const p of view.parts) {
    const url = new URL(p.url);
    const res = await svc.app!.inject({ url: `${url.pathname}${url.search}` });
    assert.equal(res.statusCode, 200);
    assert.equal(createHash("sha256").update(res.rawPayload).digest("hex"), p.sha256);
    assert.equal(gunzipSync(res.rawPayload).toString().trimEnd().split("\r\n").length, p.rows + 1);
  }
  assert.equal(
    view.parts.reduce((sum, p) => sum + p.rows, 0),
    (6 * 3_600_000) / 2000,
  );
}

test("a disk that stays full: storage_error, nothing left behind; the same export works once space is freed", async (t) => {
  fillDisk();
  const id = await create();
  const failed = await settled(id);
  t.diagnostic(`full disk: ${JSON.stringify(failed.error)} after ${await storageRetries()} retries`);
  assert.equal(failed.status, "failed");
  assert.deepEqual(
    { code: failed.error?.code, retryable: failed.error?.retryable },
    { code: "storage_error", retryable: true },
  );
  await waitFor(exportFiles, (files) => files.length === 0, 5000);
  assert.deepEqual(exportFiles(), [], "no half-written or orphaned file");

  fs.rmSync(ballast);
  const again = await settled(await create());
  assert.equal(again.status, "succeeded", JSON.stringify(again.error));
  await assertWhole(again);
});

test("a disk freed while the export waits: it succeeds on its first attempt", async () => {
  fillDisk();
  const before = await storageRetries();
  const id = await create();
  await waitFor(storageRetries, (n) => n > before, 10_000);
  fs.rmSync(ballast);
  const done = await settled(id);
  assert.equal(done.status, "succeeded", JSON.stringify(done.error));
  assert.equal(done.attempts, 1);
  await assertWhole(done);
  assert.equal(
    exportFiles().filter((f) => f.includes(id)).length,
    3,
    "exactly the published parts, no temporary upload",
  );
});

test("a read-only objects folder: storage_error at once, no retries", async () => {
  execFileSync("mount", ["-o", "remount,ro", objects]);
  try {
    const before = await storageRetries();
    const failed = await settled(await create());
    assert.equal(failed.status, "failed");
    assert.equal(failed.error?.code, "storage_error");
    assert.equal(await storageRetries(), before, "EROFS is not waited on");
  } finally {
    execFileSync("mount", ["-o", "remount,rw", objects]);
  }
});

test("the disk fills while a write waits for the stream to drain: a StorageError, not a raw ENOSPC", async () => {
  fillDisk(64 * 1024);
  try {
    const storage = new LocalObjectStore(objects, new LinkSigner("x".repeat(32)), "http://localhost");
    const sink = await PartSink.open(
      storage,
      "exports/t/e/part-000.r1.csv",
      COMPRESSORS.none({ gzipLevel: 1 }),
    );
    // Each write is larger than every buffer on the way, so each one waits for "drain".
    const chunk = Buffer.alloc(1024 * 1024, "x");
    const written = (async () => {
      for (let i = 0; i < 8; i++) await sink.write(chunk);
      return sink.finish();
    })();
    await assert.rejects(written, (err: unknown) => {
      assert.ok(err instanceof StorageError, `labelled: ${String(err)}`);
      assert.equal((err.cause as NodeJS.ErrnoException).code, "ENOSPC");
      return true;
    });
    await sink.abort();
    assert.deepEqual(
      exportFiles().filter((f) => f.startsWith("exports/t/")),
      [],
      "the half-written upload is gone",
    );
  } finally {
    fs.rmSync(ballast, { force: true });
  }
});

test("a purge refused by a read-only folder is retried by the sweeper until the files are gone", async () => {
  const plain = { ...request, compression: "none" };
  const sized = await settled(await create(plain));
  assert.equal(sized.status, "succeeded");
  // Room for the first part and a half: the second one hits a full disk.
  fillDisk(Math.round((sized.parts[0] as View["parts"][0]).bytes * 1.5));
  const before = await storageRetries();
  const id = await create(plain);
  await waitFor(storageRetries, (n) => n > before, 10_000);
  const waiting = await get(id);
  assert.equal(waiting.status, "running");
  assert.equal(waiting.parts.length, 1, "one part published before the disk filled");
  // Read-only now: the next try fails for good, and so does the purge of the failed export.
  execFileSync("mount", ["-o", "remount,ro", objects]);
  let readOnly = true;
  try {
    assert.equal((await settled(id)).error?.code, "storage_error");
    await new Promise((r) => setTimeout(r, 1000)); // several sweeps
    const ownFiles = () => exportFiles().filter((f) => f.includes(id));
    assert.equal(ownFiles().length, 1, "the published part is still there: not marked purged");
    execFileSync("mount", ["-o", "remount,rw", objects]);
    readOnly = false;
    assert.deepEqual(
      await waitFor(ownFiles, (files) => files.length === 0, 5000),
      [],
      "deleted once writable",
    );
  } finally {
    if (readOnly) execFileSync("mount", ["-o", "remount,rw", objects]);
    fs.rmSync(ballast, { force: true });
  }
});
