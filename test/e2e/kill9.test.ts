/**
 * kill -9 of the real server mid-export, then a new process on the same data folder: the export
 * resumes after its last published part (those files stay, from run 1) and ends with parts
 * equal, byte for byte, to those of the same export run without interruption. No temporary upload
 * is left behind and the export's folder holds exactly its published parts.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { after, test } from "node:test";
import {
  api,
  createKey,
  type ExportView,
  filesUnder,
  startServer,
  stopAll,
} from "../helpers/server-process.js";
import { pastMidnight, waitFor } from "../helpers/service.js";

after(() => stopAll());

const DAY = 86_400_000;
const to = pastMidnight();
const thirtyDays = {
  dataset: "events",
  from: new Date(to - 30 * DAY).toISOString(),
  to: new Date(to).toISOString(),
  format: "csv",
  compression: "gzip",
  part_max_rows: 200_000,
};
const expectedRows = (30 * DAY) / 2000; // one demo event per 2-second slot
const expectedParts = Math.ceil(expectedRows / thirtyDays.part_max_rows);

const sha256 = (bytes: Buffer) => createHash("sha256").update(bytes).digest("hex");
const isFinal = (e: ExportView) => e.status !== "queued" && e.status !== "running";

/** The one folder holding an export's files: objects/exports/<tenant id>/<export id>. */
function exportDir(dataDir: string, id: string): string {
  const root = path.join(dataDir, "objects", "exports");
  const tenants = fs.readdirSync(root).filter((t) => fs.existsSync(path.join(root, t, id)));
  assert.equal(tenants.length, 1, `one tenant folder holds export ${id}`);
  return path.join(root, tenants[0]!, id);
}

/** Checks the folder holds exactly the published parts, matching size and sha256; returns runs by index. */
function assertFolderHoldsExactlyParts(dir: string, parts: ExportView["parts"]): number[] {
  const names = fs.readdirSync(dir).sort();
  assert.equal(names.length, parts.length, `files in ${dir}: ${names.join(", ")}`);
  const runs: number[] = [];
  for (const name of names) {
    const m = /^part-(\d{3})\.r(\d+)\.csv\.gz$/.exec(name);
    assert.ok(m, `unexpected file ${name}`);
    const index = Number(m[1]);
    assert.equal(runs[index], undefined, `part ${index} stored twice`);
    runs[index] = Number(m[2]);
    const part = parts[index];
    assert.ok(part, `file ${name} is no published part`);
    const bytes = fs.readFileSync(path.join(dir, name));
    assert.equal(bytes.length, part.bytes, name);
    assert.equal(sha256(bytes), part.sha256, name);
  }
  return runs;
}

test("kill -9 mid-export, restart on the same data folder: resumed parts equal an uninterrupted run", async (t) => {
  const env = { EXPORTD_LEASE_SECONDS: "2", EXPORTD_WORKER_CONCURRENCY: "1" };
  const first = await startServer({ env });
  const key = createKey(first.dataDir, "acme");
  let http = api(first.url, key);

  const created = await http.post("/v1/exports", thirtyDays);
  assert.equal(created.status, 202, JSON.stringify(created.json));
  const id = created.json.id;

  const midway = await waitFor(
    async () => (await http.get(`/v1/exports/${id}`)).json,
    (e) => isFinal(e) || (e.status === "running" && e.progress.parts >= 1),
    90_000,
  );
  assert.equal(midway.status, "running", "still running when killed");
  assert.ok(midway.progress.parts < expectedParts, "killed before the last part");
  await first.kill9();
  assert.equal(first.child.signalCode, "SIGKILL");

  const dir = exportDir(first.dataDir, id);
  const leftover = fs.readdirSync(dir);
  t.diagnostic(`after kill -9 (${midway.progress.parts} parts published): ${leftover.join(", ")}`);
  assert.ok(
    leftover.some((n) => /^part-000\.r1\.csv\.gz$/.test(n)),
    "part 0 of run 1 is on disk",
  );

  const second = await startServer({ dataDir: first.dataDir, env });
  http = api(second.url, key);
  const resumed = await waitFor(async () => (await http.get(`/v1/exports/${id}`)).json, isFinal, 120_000);
  assert.equal(resumed.status, "succeeded", JSON.stringify(resumed.error));
  assert.equal(resumed.attempts, 1, "a crash is no failed attempt: the takeover finished attempt 1");

  const parts = resumed.parts;
  assert.equal(parts.length, expectedParts);
  assert.deepEqual(
    parts.map((p) => p.index),
    parts.map((_, i) => i),
    "part indexes 0..n-1, each once",
  );
  const rows = parts.reduce((sum, p) => sum + p.rows, 0);
  assert.equal(resumed.progress.rows, rows, "progress.rows = sum of the parts' rows");
  assert.equal(rows, expectedRows, "every row of 30 days, none twice");
  for (const p of parts.slice(0, -1))
    assert.equal(p.rows, thirtyDays.part_max_rows, `part ${p.index} is full`);

  // Every part through its signed link, without Authorization.
  for (const p of parts) {
    const res = await fetch(p.url);
    assert.equal(res.status, 200, `part ${p.index}`);
    const bytes = Buffer.from(await res.arrayBuffer());
    assert.equal(bytes.length, p.bytes, `part ${p.index} bytes`);
    assert.equal(sha256(bytes), p.sha256, `part ${p.index} sha256`);
  }

  // The export's folder: exactly the published parts, the first ones still from run 1.
  const runs = assertFolderHoldsExactlyParts(dir, parts);
  assert.equal(runs[0], 1, "part 0 was kept from run 1, not redone");
  assert.ok(
    runs.some((r) => r >= 2),
    `the later parts come from a later run: ${runs.join(",")}`,
  );

  // The same export again on the restarted server, uninterrupted.
  const again = await http.post("/v1/exports", thirtyDays);
  assert.equal(again.status, 202, JSON.stringify(again.json));
  assert.notEqual(again.json.id, id);
  const clean = await waitFor(
    async () => (await http.get(`/v1/exports/${again.json.id}`)).json,
    isFinal,
    120_000,
  );
  assert.equal(clean.status, "succeeded", JSON.stringify(clean.error));
  assert.equal(clean.attempts, 1);
  assert.equal(clean.parts.length, parts.length, "same number of parts");
  assert.deepEqual(
    clean.parts.map((p) => [p.index, p.rows, p.bytes, p.sha256]),
    parts.map((p) => [p.index, p.rows, p.bytes, p.sha256]),
    "resumed parts equal uninterrupted parts byte for byte",
  );
  const cleanRuns = assertFolderHoldsExactlyParts(exportDir(first.dataDir, again.json.id), clean.parts);
  assert.ok(cleanRuns.every((r) => r === 1));

  // Nothing half-written anywhere in the object store.
  const all = filesUnder(path.join(first.dataDir, "objects"));
  assert.deepEqual(
    all.filter((f) => f.includes(".upload-")),
    [],
    "no temporary upload left behind",
  );
  assert.equal(all.length, parts.length + clean.parts.length, `object store: ${all.join(", ")}`);
});
