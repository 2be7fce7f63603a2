/**
 * Zip archives with the S3 object store (a real S3-compatible server): the status's archive link
 * points at exportd's signed /files route while the parts keep their presigned bucket links; the
 * archive streams from ranged GETs of the parts, unzip accepts it and its entries are the parts;
 * a Range resume gives the identical bytes; S3 stopping mid-download cuts the connection (no hang,
 * no answer after the headers); links expire and altered links are refused; part keys are not
 * served by /files in S3 mode.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import fs from "node:fs";
import http from "node:http";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { S3ObjectStore } from "../../src/object-store/s3.js";
import { listen } from "../helpers/http.js";
import { injectClient } from "../helpers/inject-client.js";
import { startTestS3, type TestS3 } from "../helpers/s3.js";
import { pastMidnight, startTestService, type TestService, tempDir } from "../helpers/service.js";

const HOUR = 3_600_000;

interface View {
  id: string;
  status: string;
  parts: { index: number; sha256: string; bytes: number; url: string | null }[];
  archive: { filename: string; bytes: number | null; url: string | null } | null;
  manifest: { datasets: { name: string; parts: { path: string; sha256: string }[] }[] } | null;
}

const sha256 = (b: Buffer): string => createHash("sha256").update(b).digest("hex");

describe("zip archives with S3 storage", () => {
  let s3: TestS3;
  let svc: TestService;
  let base: string;
  /** Added to the real time: moves the service's clock past a link's expiry. */
  let skew = 0;
  const dir = tempDir("exportd-s3-archive-");
  before(async () => {
    s3 = await startTestS3("exportd-s3-archive");
    svc = await startTestService(
      { ...s3.env, EXPORTD_LINK_TTL_SECONDS: "60", EXPORTD_PUBLIC_URL: "http://exportd.invalid" },
      () => Date.now() + skew,
    );
    base = await listen(svc);
  });
  after(async () => {
    await svc.dispose();
    await s3.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  const run = async (body: Record<string, unknown>): Promise<View> =>
    injectClient<View>(svc, await svc.key("acme")).run(body);
  /** The link as served by this test's listening server (the public URL is a placeholder). */
  const local = (url: string): string => {
    assert.ok(url.startsWith("http://exportd.invalid/files/exports/"), url);
    return base + url.slice("http://exportd.invalid".length);
  };
  const to = pastMidnight();

  let done: View;
  let whole: Buffer;
  before(async () => {
    done = await run({
      dataset: "events",
      from: new Date(to - 6 * HOUR).toISOString(),
      to: new Date(to).toISOString(),
      archive: "zip",
      part_max_rows: 3000,
    });
  });

  test("the archive link is exportd's, the parts S3's; the zip passes unzip -t and holds the parts", async () => {
    assert.equal(done.status, "succeeded");
    assert.equal(done.parts.length, 4);
    for (const part of done.parts)
      assert.ok(part.url?.startsWith(s3.settings.endpoint as string), part.url ?? "");
    const res = await fetch(local(done.archive?.url as string));
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("content-length"), String(done.archive?.bytes));
    assert.equal(res.headers.get("accept-ranges"), "bytes");
    whole = Buffer.from(await res.arrayBuffer());
    assert.equal(whole.length, done.archive?.bytes);
    const file = path.join(dir, "all.zip");
    fs.writeFileSync(file, whole);
    assert.match(execFileSync("unzip", ["-t", file], { encoding: "utf8" }), /No errors detected/);
    const paths = done.manifest?.datasets[0]?.parts.map((p) => p.path) ?? [];
    assert.equal(paths.length, done.parts.length);
    for (const [i, entry] of paths.entries()) {
      const bytes = execFileSync("unzip", ["-p", file, entry], { maxBuffer: 64 << 20 });
      const part = done.parts[i];
      assert.equal(sha256(bytes), part?.sha256, entry);
      const fromS3 = Buffer.from(await (await fetch(part?.url as string)).arrayBuffer());
      assert.ok(bytes.equals(fromS3), `${entry} equals the part in the bucket`);
    }
    // The download route hands out the same kind of link.
    const route = await injectClient(svc, await svc.key("acme")).inject(
      `/v1/exports/${done.id}/download?archive=zip&redirect=false`,
    );
    assert.equal(route.statusCode, 200, route.body);
    const again = await fetch(local(route.json().url));
    assert.ok(Buffer.from(await again.arrayBuffer()).equals(whole));
  });

  test("a download cut short resumes with Range and If-Range to the identical archive; HEAD and 416", async () => {
    const url = local(done.archive?.url as string);
    const size = whole.length;
    // Cut inside the second part: the resume starts mid-part with one ranged GET.
    const cut = Math.floor(size / 2) + 123;
    const first = await fetch(url, { headers: { range: `bytes=0-${cut - 1}` } });
    assert.equal(first.status, 206);
    const etag = first.headers.get("etag") as string;
    const head = Buffer.from(await first.arrayBuffer());
    const rest = await fetch(url, { headers: { range: `bytes=${cut}-`, "if-range": etag } });
    assert.equal(rest.status, 206);
    assert.equal(rest.headers.get("content-range"), `bytes ${cut}-${size - 1}/${size}`);
    const tail = Buffer.from(await rest.arrayBuffer());
    assert.equal(sha256(Buffer.concat([head, tail])), sha256(whole));
    const suffix = await fetch(url, { headers: { range: "bytes=-1000" } });
    assert.ok(Buffer.from(await suffix.arrayBuffer()).equals(whole.subarray(size - 1000)));
    const headRes = await fetch(url, { method: "HEAD" });
    assert.equal(headRes.status, 200);
    assert.equal(headRes.headers.get("content-length"), String(size));
    const past = await fetch(url, { headers: { range: `bytes=${size}-` } });
    assert.equal(past.status, 416);
    assert.equal(past.headers.get("content-range"), `bytes */${size}`);
    assert.equal(((await past.json()) as { error: { code: string } }).error.code, "range_not_satisfiable");
    const unchanged = await fetch(url, { headers: { "if-none-match": etag } });
    assert.equal(unchanged.status, 304);
  });

  test("expired and altered links are refused; /files serves no part key with S3", async () => {
    const url = local(done.archive?.url as string);
    const altered = await fetch(url.replace(/signature=[^&]+/, "signature=AAAA"));
    assert.equal(altered.status, 403);
    assert.equal(((await altered.json()) as { error: { code: string } }).error.code, "invalid_signature");
    skew = 61_000;
    try {
      const expired = await fetch(url);
      assert.equal(expired.status, 403);
      assert.equal(((await expired.json()) as { error: { code: string } }).error.code, "link_expired");
    } finally {
      skew = 0;
    }
    // A link to a part key, signed with exportd's own secret: S3 parts are not served here.
    const archiveUrl = new URL(url);
    const partKey = `${archiveUrl.pathname.slice("/files/".length).replace(/archive\.zip$/, "")}part-000.csv.gz`;
    const { LinkSigner, filesLink } = await import("../../src/object-store/signing.js");
    const { signingSecret } = await import("../../src/service.js");
    const link = filesLink(
      new LinkSigner(signingSecret(svc.config)),
      base,
      partKey,
      "p.csv.gz",
      60,
      Date.now(),
    );
    const part = await fetch(link.url);
    assert.equal(part.status, 404);
  });

  test("a part gone from the bucket is answered before any header (404), not with a cut body", async () => {
    const one = await run({
      dataset: "events",
      from: new Date(to - HOUR).toISOString(),
      to: new Date(to).toISOString(),
      archive: "zip",
    });
    assert.equal(one.status, "succeeded");
    const store = new S3ObjectStore(s3.settings);
    try {
      const keys = (await store.list("exports/")).filter((k) => k.includes(one.id));
      assert.equal(keys.length, 1);
      await store.delete(keys[0] as string);
    } finally {
      await store.close();
    }
    const res = await fetch(local(one.archive?.url as string));
    assert.equal(res.status, 404);
    assert.equal(((await res.json()) as { error: { code: string } }).error.code, "not_found");
  });

  test("clients that leave mid-download free their slot and their S3 connection (60 in a row)", async () => {
    const url = new URL(local(done.archive?.url as string));
    // The S3 client holds at most 50 sockets and this server 128 downloads: a leak per download
    // would leave the last ones, or the whole download after them, waiting. Each download has the
    // next part's GET made ahead (the parts are small) besides the one it reads: both must go.
    for (let i = 0; i < 60; i++) {
      await new Promise<void>((resolve, reject) => {
        // From the second part on: the body is a ranged GET from its first byte.
        const req = http.get(url, { headers: { range: `bytes=${Math.floor(whole.length / 3)}-` } }, (res) => {
          assert.equal(res.statusCode, 206);
          res.once("data", () => {
            req.destroy();
            resolve();
          });
        });
        req.on("error", (err) => (req.destroyed ? undefined : reject(err)));
      });
    }
    const res = await fetch(url, { signal: AbortSignal.timeout(20_000) });
    assert.ok(Buffer.from(await res.arrayBuffer()).equals(whole));
  });

  test("S3 stopping mid-download cuts the connection; while it is down a download is 503 before any header", async () => {
    const big = await run({
      dataset: "events",
      from: new Date(to - 48 * HOUR).toISOString(),
      to: new Date(to).toISOString(),
      archive: "zip",
      compression: "none",
      part_max_rows: 10_000,
    });
    assert.equal(big.status, "succeeded");
    assert.ok(big.parts.length >= 8, `${big.parts.length} parts`);
    const url = new URL(local(big.archive?.url as string));
    const started = Date.now();
    const outcome = await new Promise<{
      status: number;
      length: number;
      received: number;
      complete: boolean;
    }>((resolve, reject) => {
      const req = http.get(url, (res) => {
        let received = 0;
        let paused = false;
        res.on("data", (chunk: Buffer) => {
          received += chunk.length;
          if (paused) return;
          // After the first bytes: stop reading, stop S3, read on.
          paused = true;
          res.pause();
          s3.pause()
            .then(() => res.resume())
            .catch(reject);
        });
        res.on("error", () => undefined);
        res.on("close", () =>
          resolve({
            status: res.statusCode ?? 0,
            length: Number(res.headers["content-length"]),
            received,
            complete: res.complete,
          }),
        );
      });
      req.on("error", () => undefined);
    });
    try {
      assert.equal(outcome.status, 200);
      assert.equal(outcome.length, big.archive?.bytes);
      assert.equal(outcome.complete, false, "the body is cut, not ended as if whole");
      assert.ok(outcome.received < outcome.length, `${outcome.received} of ${outcome.length} bytes`);
      assert.ok(Date.now() - started < 30_000, "no hang");
      // S3 is down: the first ranged GET fails before the headers, answered as the store failing.
      const middle = Math.floor(outcome.length / 2);
      const down = await fetch(url, { headers: { range: `bytes=${middle}-${middle + 999}` } });
      assert.equal(down.status, 503);
      assert.equal(((await down.json()) as { error: { code: string } }).error.code, "service_unavailable");
    } finally {
      await s3.resume();
    }
    // Back up: the same link serves the archive again, whole.
    const res = await fetch(url);
    const body = Buffer.from(await res.arrayBuffer());
    assert.equal(body.length, big.archive?.bytes);
    const file = path.join(dir, "big.zip");
    fs.writeFileSync(file, body);
    assert.match(execFileSync("unzip", ["-t", file], { encoding: "utf8" }), /No errors detected/);
  });
});
