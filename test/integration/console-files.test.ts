/**
 * How exportd serves the built console (dist/console/, from `npm run build`): the page at /console
 * with a self-only Content-Security-Policy, hashed assets cached for a year, ETags and 304s,
 * brotli or gzip as asked, the component's script readable by other origins, and the error envelope
 * for anything else under /console.
 */
import assert from "node:assert/strict";
import fs from "node:fs";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";
import zlib from "node:zlib";
import { startTestService, type TestService } from "../helpers/service.js";

const BUILT = fileURLToPath(new URL("../../dist/console/index.html", import.meta.url));
let svc: TestService;

before(async () => {
  assert.ok(fs.existsSync(BUILT), "dist/console is not built: run `npm run build` first.");
  svc = await startTestService();
});
after(() => svc.dispose());

const get = (url: string, headers: Record<string, string> = {}) =>
  svc.app!.inject({ method: "GET", url, headers });

test("the page: HTML, no-cache, a CSP that allows only self, the same at /console and /console/", async () => {
  const page = await get("/console");
  assert.equal(page.statusCode, 200);
  assert.match(String(page.headers["content-type"]), /^text\/html/);
  assert.equal(page.headers["cache-control"], "no-cache");
  const csp = String(page.headers["content-security-policy"]);
  for (const directive of [
    "default-src 'self'",
    "script-src 'self'",
    "connect-src 'self'",
    "frame-ancestors 'self'",
  ])
    assert.ok(csp.includes(directive), `${directive} in ${csp}`);
  assert.doesNotMatch(csp, /unsafe-|\*|https?:/);
  assert.equal(page.headers["x-content-type-options"], "nosniff");
  assert.equal((await get("/console/")).body, page.body);
  assert.match(page.body, /<script type="module" crossorigin src="\/console\/assets\/index-[\w-]{8}\.js">/);
});

test("hashed assets: a year, immutable; ETag answers 304; brotli and gzip decode to the same bytes", async () => {
  const page = await get("/console");
  const script = /src="(\/console\/assets\/[^"]+\.js)"/.exec(page.body)![1]!;
  const plain = await get(script);
  assert.equal(plain.statusCode, 200);
  assert.equal(plain.headers["cache-control"], "public, max-age=31536000, immutable");
  assert.match(String(plain.headers["content-type"]), /^text\/javascript/);
  assert.equal(plain.headers["content-encoding"], undefined);
  assert.equal(plain.headers.vary, "Accept-Encoding");
  const br = await get(script, { "accept-encoding": "gzip, br" });
  assert.equal(br.headers["content-encoding"], "br");
  assert.deepEqual(zlib.brotliDecompressSync(br.rawPayload), plain.rawPayload);
  const gzip = await get(script, { "accept-encoding": "gzip" });
  assert.equal(gzip.headers["content-encoding"], "gzip");
  assert.deepEqual(zlib.gunzipSync(gzip.rawPayload), plain.rawPayload);
  assert.ok(br.rawPayload.length < 100 * 1024, `first-load script ${br.rawPayload.length} bytes compressed`);
  const again = await get(script, { "if-none-match": String(plain.headers.etag) });
  assert.equal(again.statusCode, 304);
  assert.equal(again.rawPayload.length, 0);
});

test("the component's script: a stable name, readable cross-origin, revalidated within 5 minutes", async () => {
  const res = await get("/console/exportd-export.js");
  assert.equal(res.statusCode, 200);
  assert.equal(res.headers["access-control-allow-origin"], "*");
  assert.equal(res.headers["cross-origin-resource-policy"], "cross-origin");
  assert.equal(res.headers["cache-control"], "public, max-age=300");
  assert.match(res.body, /exportd-export/);
});

test("anything else under /console is the error envelope's 404, never a file outside the build", async () => {
  for (const url of [
    "/console/nope.js",
    "/console/../package.json",
    "/console/%2e%2e/package.json",
    "/console/sizes.json",
  ]) {
    const res = await get(url);
    assert.equal(res.statusCode, 404, url);
    assert.equal(res.json().error.code, "not_found", url);
  }
});
