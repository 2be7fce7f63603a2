/**
 * The whole lifecycle against the real server process on a fresh data folder: a key from the CLI,
 * a 7-day csv.gz export, polling, the 302 followed by a client that sends no Authorization, the
 * row count and sha256 checked, Range downloads reassembled, other tenants and scopes refused.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { after, before, test } from "node:test";
import { gunzipSync } from "node:zlib";
import { parse } from "csv-parse/sync";
import { rawRequest } from "../helpers/http.js";
import {
  client,
  createKey,
  type ExportView,
  errorCode,
  removeDir,
  type ServerProcess,
  startServer,
} from "../helpers/server-process.js";
import { pastMidnight, waitFor } from "../helpers/service.js";

let server: ServerProcess;
let key: string;
let api: ReturnType<typeof client>;
let exportId: string;
let part: ExportView["parts"][number];

before(async () => {
  server = await startServer();
  key = createKey(server.dataDir, "acme");
  api = client(server.url, key);
});
after(async () => {
  await server.stop();
  removeDir(server.dataDir);
});

test("a key from the CLI; a 7-day csv.gz export runs to succeeded", async () => {
  assert.match(key, /^exd_/);
  const to = pastMidnight();
  const created = await api.create({
    dataset: "events",
    from: new Date(to - 7 * 86_400_000).toISOString(),
    to: new Date(to).toISOString(),
    format: "csv",
    compression: "gzip",
  });
  assert.equal(created.status, 202);
  assert.equal(created.location, `/v1/exports/${created.body.id}`);
  exportId = created.body.id;
  const seen: number[] = [];
  const done = await waitFor(
    async () => {
      const view = (await (await api.raw(created.location!)).json()) as ExportView;
      seen.push(view.progress.percent);
      return view;
    },
    (e) => e.status !== "queued" && e.status !== "running",
    60_000,
  );
  assert.equal(done.status, "succeeded");
  for (let i = 1; i < seen.length; i++) assert.ok(seen[i]! >= seen[i - 1]!, "progress only moves forward");
  assert.equal(done.parts.length, 1);
  part = done.parts[0]!;
  assert.equal(part.rows, 7 * 43_200, "one event per 2-second slot");
  assert.equal(done.progress.rows, part.rows);
});

test("the download answers 302; the link works without Authorization; rows and sha256 match", async () => {
  const res = await api.raw(`/v1/exports/${exportId}/download`, { redirect: "manual" });
  assert.equal(res.status, 302);
  assert.equal(res.headers.get("cache-control"), "no-store");
  const location = res.headers.get("location")!;
  assert.ok(location.startsWith(`${server.url}/files/`));
  const file = await fetch(location); // a plain client: no Authorization header at all
  assert.equal(file.status, 200);
  assert.ok(file.headers.get("content-disposition")!.includes(part.filename));
  assert.match(part.filename, /^events_\d{4}-\d{2}-\d{2}_\d{4}-\d{2}-\d{2}\.part-000\.csv\.gz$/);
  const bytes = Buffer.from(await file.arrayBuffer());
  assert.equal(bytes.length, part.bytes);
  assert.equal(Number(file.headers.get("content-length")), part.bytes);
  assert.equal(createHash("sha256").update(bytes).digest("hex"), part.sha256);
  const records = parse(gunzipSync(bytes), { columns: true }) as Record<string, string>[];
  assert.equal(records.length, part.rows);
  assert.deepEqual(Object.keys(records[0]!), ["id", "occurred_at", "type", "user_id", "properties"]);
});

test("a Range download in three pieces reassembles to the whole part; ETag gives 304", async () => {
  const url = part.url;
  const whole = Buffer.from(await (await fetch(url)).arrayBuffer());
  const a = Math.floor(whole.length / 3);
  const b = Math.floor((2 * whole.length) / 3);
  const pieces: Buffer[] = [];
  for (const range of [`bytes=0-${a - 1}`, `bytes=${a}-${b - 1}`, `bytes=${b}-`]) {
    const res = await fetch(url, { headers: { range } });
    assert.equal(res.status, 206);
    assert.match(res.headers.get("content-range")!, new RegExp(`/${whole.length}$`));
    pieces.push(Buffer.from(await res.arrayBuffer()));
  }
  assert.ok(Buffer.concat(pieces).equals(whole));
  // Plain HTTP: fetch() adds Cache-Control: no-cache to conditional requests, which rightly defeats 304.
  const target = new URL(url);
  const etag = (await rawRequest(server.url, "HEAD", target.pathname + target.search)).headers.etag!;
  assert.ok(etag);
  const conditional = await rawRequest(server.url, "GET", target.pathname + target.search, {
    "if-none-match": etag,
  });
  assert.equal(conditional.status, 304);
});

test("tampered links → 403 invalid_signature", async () => {
  const u = new URL(part.url);
  u.searchParams.set("filename", "other.csv.gz");
  const res = await fetch(u);
  assert.equal(res.status, 403);
  assert.equal(await errorCode(res), "invalid_signature");
});

test("another tenant gets 404 on every id route; a read-only key gets 403 on writes", async () => {
  const other = client(server.url, createKey(server.dataDir, "globex"));
  for (const [method, p] of [
    ["GET", `/v1/exports/${exportId}`],
    ["POST", `/v1/exports/${exportId}/cancel`],
    ["GET", `/v1/exports/${exportId}/download`],
  ] as const) {
    const res = await other.raw(p, { method, redirect: "manual" });
    assert.equal(res.status, 404, `${method} ${p}`);
    assert.equal(await errorCode(res), "not_found");
  }
  const reader = client(server.url, createKey(server.dataDir, "acme", ["exports:read"]));
  const refused = await reader.create({ dataset: "events", from: "2026-11-01", to: "2026-11-02" });
  assert.equal(refused.status, 403);
  assert.equal(refused.body.error?.code, "insufficient_scope");
  assert.equal((await reader.get(exportId)).id, exportId);
});

test("the signing secret was generated on first start, readable by the owner only", () => {
  const stat = fs.statSync(path.join(server.dataDir, "signing-secret"));
  assert.equal(stat.mode & 0o777, 0o600);
  assert.ok(stat.size >= 32);
});
