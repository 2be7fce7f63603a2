/**
 * The whole lifecycle against the real server process on a fresh data folder: a key from the CLI,
 * a 7-day csv.gz export polled to succeeded, the 302 followed by a client that sends no
 * Authorization, rows / bytes / sha256 checked, Range downloads reassembled, ETag → 304, tampered
 * links refused, and (on a second server with a 10-second link TTL) an expired link refused.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { gunzipSync } from "node:zlib";
import { parse } from "csv-parse/sync";
import { rawRequest } from "../helpers/http.js";
import {
  api,
  createKey,
  type ErrorBody,
  type ExportView,
  type ServerProcess,
  startServer,
  stopAll,
} from "../helpers/server-process.js";
import { pastMidnight, waitFor } from "../helpers/service.js";

const DAY = 86_400_000;

after(() => stopAll());

/** Asserts a 403 with the error envelope and the given code. */
async function assertRefused(res: Response, code: string, what: string): Promise<void> {
  assert.equal(res.status, 403, what);
  assert.match(res.headers.get("content-type") ?? "", /^application\/json/, what);
  const body = (await res.json()) as ErrorBody;
  assert.equal(body.error.code, code, what);
  assert.equal(res.headers.get("x-request-id"), body.error.request_id, what);
}

describe("a 7-day csv.gz export on a fresh data folder", () => {
  let server: ServerProcess;
  let http: ReturnType<typeof api>;
  const to = pastMidnight();
  const from = to - 7 * DAY;
  let done: ExportView;
  let part: ExportView["parts"][number];
  let fileUrl: string;
  let whole: Buffer;
  let etag: string;

  before(async () => {
    server = await startServer();
    http = api(server.url, createKey(server.dataDir, "acme"));
  });

  test("POST /v1/exports → 202 with a Location that polls to succeeded", async () => {
    const created = await http.post("/v1/exports", {
      dataset: "events",
      from: new Date(from).toISOString(),
      to: new Date(to).toISOString(),
      format: "csv",
      compression: "gzip",
    });
    assert.equal(created.status, 202, JSON.stringify(created.json));
    const location = created.headers.get("location");
    assert.ok(location, "a Location header");
    assert.equal(location, `/v1/exports/${created.json.id}`);
    assert.ok(["queued", "running"].includes(created.json.status), created.json.status);

    const percents: number[] = [];
    const final = await waitFor(
      async () => {
        const res = await http.get(location);
        assert.equal(res.status, 200);
        percents.push(res.json.progress.percent);
        return res.json;
      },
      (e) => !["queued", "running"].includes(e.status),
      60_000,
    );
    assert.equal(final.status, "succeeded", JSON.stringify(final.error));
    for (let i = 1; i < percents.length; i++) {
      assert.ok(percents[i]! >= percents[i - 1]!, `progress went back: ${percents.join(",")}`);
    }
    assert.equal(final.progress.percent, 100);
    assert.equal(final.parts.length, 1, "7 days fit the default part size");
    done = final;
    part = final.parts[0]!;
    assert.equal(part.index, 0);
    assert.equal(final.progress.rows, part.rows);
    assert.equal(final.progress.parts, 1);
    // The demo dataset has one event in every 2-second slot of the range.
    assert.equal(part.rows, (to - from) / 2000);
    assert.match(part.sha256, /^[0-9a-f]{64}$/);
    assert.ok(part.bytes > 0);
  });

  test("download → 302 (no-store) to a link that works without Authorization", async () => {
    const res = await http.get<unknown>(`/v1/exports/${done.id}/download`);
    assert.equal(res.status, 302);
    assert.equal(res.headers.get("cache-control"), "no-store");
    const location = res.headers.get("location");
    assert.ok(location, "a Location header");
    assert.ok(location.startsWith(`${server.url}/files/`), location);
    fileUrl = location;

    const file = await fetch(location); // a plain client: no Authorization header at all
    assert.equal(file.status, 200);
    const disposition = file.headers.get("content-disposition") ?? "";
    assert.ok(disposition.includes(part.filename), `${disposition} names ${part.filename}`);
    assert.ok(disposition.startsWith("attachment"), disposition);
    assert.equal(file.headers.get("content-encoding"), null, "the .gz is served as stored");
    etag = file.headers.get("etag") ?? "";
    assert.ok(etag, "an ETag header");
    whole = Buffer.from(await file.arrayBuffer());
    assert.equal(whole.length, part.bytes);
    assert.equal(Number(file.headers.get("content-length")), part.bytes);
    assert.equal(createHash("sha256").update(whole).digest("hex"), part.sha256);

    const csv = gunzipSync(whole);
    const records = parse(csv, { columns: true, relax_column_count: false }) as Record<string, string>[];
    assert.equal(records.length, part.rows);
    assert.equal(records.length, done.progress.rows);
    assert.deepEqual(Object.keys(records[0]!), ["id", "occurred_at", "type", "user_id", "properties"]);
    // Every row lies inside the requested range and ids are unique.
    const ids = new Set<string>();
    for (const r of records) {
      const at = Date.parse(r.occurred_at!);
      assert.ok(at >= from && at < to, `${r.occurred_at} is outside the range`);
      ids.add(r.id!);
    }
    assert.equal(ids.size, records.length, "no duplicate rows");
  });

  test("the status links and the download link serve the same bytes", async () => {
    const res = await fetch(part.url);
    assert.equal(res.status, 200);
    const bytes = Buffer.from(await res.arrayBuffer());
    assert.ok(bytes.equals(whole));
  });

  test("Range requests in three pieces: 206, exact Content-Range, reassembled = whole part", async () => {
    const n = whole.length;
    assert.ok(n > 4000, `part is large enough to split (${n} bytes)`);
    const half = Math.floor(n / 2);
    const ranges: [string, number, number][] = [
      ["bytes=0-999", 0, 999],
      [`bytes=1000-${half}`, 1000, half],
      [`bytes=${half + 1}-`, half + 1, n - 1],
    ];
    const pieces: Buffer[] = [];
    for (const [range, first, last] of ranges) {
      const res = await fetch(fileUrl, { headers: { range } });
      assert.equal(res.status, 206, range);
      assert.equal(res.headers.get("content-range"), `bytes ${first}-${last}/${n}`, range);
      const piece = Buffer.from(await res.arrayBuffer());
      assert.equal(piece.length, last - first + 1, range);
      assert.equal(Number(res.headers.get("content-length")), piece.length, range);
      pieces.push(piece);
    }
    assert.ok(Buffer.concat(pieces).equals(whole), "the pieces reassemble to the whole part");

    // A suffix range and an unsatisfiable one.
    const tail = await fetch(fileUrl, { headers: { range: "bytes=-100" } });
    assert.equal(tail.status, 206);
    assert.equal(tail.headers.get("content-range"), `bytes ${n - 100}-${n - 1}/${n}`);
    assert.ok(Buffer.from(await tail.arrayBuffer()).equals(whole.subarray(n - 100)));
    const beyond = await fetch(fileUrl, { headers: { range: `bytes=${n}-` } });
    assert.equal(beyond.status, 416);
    assert.equal(beyond.headers.get("content-range"), `bytes */${n}`);
    await beyond.arrayBuffer();
  });

  test("If-None-Match with the ETag → 304; another ETag → 200", async () => {
    // Plain node:http: fetch() adds `Cache-Control: no-cache` to conditional requests, which
    // (rightly) makes the server ignore them.
    const target = new URL(fileUrl);
    const pathAndQuery = target.pathname + target.search;
    const notModified = await rawRequest(server.url, "GET", pathAndQuery, { "if-none-match": etag });
    assert.equal(notModified.status, 304);
    assert.equal(notModified.body, "");
    const changed = await rawRequest(server.url, "GET", pathAndQuery, { "if-none-match": '"other"' });
    assert.equal(changed.status, 200);
    assert.equal(Number(changed.headers["content-length"]), part.bytes);
  });

  test("tampered links → 403 invalid_signature", async () => {
    const original = new URL(fileUrl);
    const signature = original.searchParams.get("signature")!;
    assert.ok(signature.length > 10);

    // One character of the signature changed (in the middle: no base64url padding bits there).
    const i = Math.floor(signature.length / 2);
    const flipped = signature[i] === "A" ? "B" : "A";
    const badSignature = new URL(original);
    badSignature.searchParams.set("signature", signature.slice(0, i) + flipped + signature.slice(i + 1));
    await assertRefused(await fetch(badSignature), "invalid_signature", "signature changed");

    // Another export id in the path (same shape: one hex digit changed).
    const otherId = done.id.replace(/[0-9a-f](?=[^0-9a-f]*$)/, (c) => (c === "0" ? "1" : "0"));
    assert.notEqual(otherId, done.id);
    assert.ok(original.pathname.includes(done.id));
    const badPath = new URL(original);
    badPath.pathname = original.pathname.replace(done.id, otherId);
    await assertRefused(await fetch(badPath), "invalid_signature", "export id changed");

    // Another download name.
    const badName = new URL(original);
    badName.searchParams.set("filename", part.filename.replace(".part-000.", ".part-001."));
    await assertRefused(await fetch(badName), "invalid_signature", "filename changed");

    // A later expiry: signed too, so it cannot be extended.
    const badExpiry = new URL(original);
    badExpiry.searchParams.set("expires", String(Number(original.searchParams.get("expires")) + 3600));
    await assertRefused(await fetch(badExpiry), "invalid_signature", "expires changed");

    // No signature at all.
    const unsigned = new URL(original);
    unsigned.searchParams.delete("signature");
    await assertRefused(await fetch(unsigned), "invalid_signature", "signature missing");

    // The untouched link still works.
    const ok = await fetch(original);
    assert.equal(ok.status, 200);
    await ok.arrayBuffer();
  });

  test("the signing secret was generated in the data folder with mode 0600", () => {
    const file = path.join(server.dataDir, "signing-secret");
    const stat = fs.statSync(file);
    assert.ok(stat.isFile());
    assert.equal(stat.mode & 0o777, 0o600);
    assert.ok(fs.readFileSync(file, "utf8").trim().length >= 32);
  });
});

describe("links from a server with EXPORTD_LINK_TTL_SECONDS=10", () => {
  test("a link works until expires_at, then → 403 link_expired", async () => {
    const server = await startServer({ env: { EXPORTD_LINK_TTL_SECONDS: "10" } });
    const http = api(server.url, createKey(server.dataDir, "acme"));
    const to = pastMidnight();
    const created = await http.post("/v1/exports", {
      dataset: "events",
      from: new Date(to - 3_600_000).toISOString(),
      to: new Date(to).toISOString(),
      format: "csv",
      compression: "gzip",
    });
    assert.equal(created.status, 202);
    const final = await waitFor(
      async () => (await http.get(`/v1/exports/${created.json.id}`)).json,
      (e) => !["queued", "running"].includes(e.status),
      30_000,
    );
    assert.equal(final.status, "succeeded");

    const asked = Date.now();
    const res = await http.get<{ part: number; filename: string; url: string; expires_at: string }>(
      `/v1/exports/${final.id}/download?redirect=false`,
    );
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("cache-control"), "no-store");
    assert.equal(res.json.part, 0);
    assert.equal(res.json.filename, final.parts[0]!.filename);
    const answered = Date.now();
    const expiresAt = Date.parse(res.json.expires_at);
    // 10 s after the server signed it, which is between asking and the answer (a loaded machine may
    // answer late); in Unix seconds, so up to one second earlier.
    assert.ok(
      expiresAt > asked + 8_000 && expiresAt <= answered + 10_000,
      `expires_at ${res.json.expires_at}, asked ${new Date(asked).toISOString()}, answered ${new Date(answered).toISOString()}`,
    );
    assert.equal(Number(new URL(res.json.url).searchParams.get("expires")) * 1000, expiresAt);

    const fresh = await fetch(res.json.url);
    assert.equal(fresh.status, 200);
    assert.equal(
      createHash("sha256")
        .update(Buffer.from(await fresh.arrayBuffer()))
        .digest("hex"),
      final.parts[0]!.sha256,
    );

    await new Promise((r) => setTimeout(r, Math.max(0, expiresAt - Date.now()) + 300));
    await assertRefused(await fetch(res.json.url), "link_expired", "expired link");
    // The status links signed at the same time have expired too; a fresh status gives fresh links.
    await assertRefused(await fetch(final.parts[0]!.url), "link_expired", "expired status link");
    const again = (await http.get(`/v1/exports/${final.id}`)).json;
    const renewed = await fetch(again.parts[0]!.url);
    assert.equal(renewed.status, 200);
    await renewed.arrayBuffer();
  });
});
