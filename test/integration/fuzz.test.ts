/**
 * No input reaches a 500: generated malformed requests sent over HTTP to a listening server, on
 * every route, answered in the error envelope with a 4xx (or a success when the generator happens
 * to build a valid request).
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import fc from "fast-check";
import { listen, rawRequest } from "../helpers/http.js";
import { startTestService, type TestService } from "../helpers/service.js";

let svc: TestService;
let key: string;
let base: string;

before(async () => {
  svc = await startTestService({ EXPORTD_ROLE: "api" });
  key = await svc.key("acme");
  // A budget no generated burst reaches: this suite is about answers, not rate limits.
  await svc.store.updateTenant("acme", { overrides: { requestsPerMinute: 1_000_000, maxQueued: 1_000_000 } });
  base = await listen(svc);
});
after(() => svc.dispose());

const anyJson = fc.jsonValue({ maxDepth: 3 });
const fieldValue = fc.oneof(
  anyJson,
  fc.string(),
  fc.constantFrom(
    "events",
    "now",
    "2026-11-01",
    "2026-11-01T00:00:00Z",
    "csv",
    "jsonl",
    "gzip",
    "UTC",
    "",
    "__proto__",
  ),
  fc.integer(),
  fc.array(fc.string(), { maxLength: 3 }),
);
const createBody = fc.dictionary(
  fc.constantFrom(
    "dataset",
    "from",
    "to",
    "filters",
    "columns",
    "format",
    "compression",
    "csv",
    "timezone",
    "part_max_rows",
    "extra",
  ),
  fieldValue,
  { maxKeys: 9 },
);
const rawBody = fc.oneof(
  createBody.map((b) => JSON.stringify(b)),
  fc.string(),
  fc.constantFrom("{", "[]", "null", '{"dataset":', "\u0000", '{"a":1}{"b":2}'),
);
const segment = fc.oneof(
  fc.uuid(),
  fc.string({ maxLength: 40 }).map(encodeURIComponent),
  fc.constantFrom("..", "%2e%2e", "%2F", "%00", "%E0%A4%A", "01a20625-9dbc-7129-a20f-445ab69398b4"),
);
const query = fc.dictionary(
  fc.constantFrom(
    "part",
    "redirect",
    "limit",
    "cursor",
    "status",
    "dataset",
    "expires",
    "signature",
    "filename",
    "x",
  ),
  fc.oneof(fc.string({ maxLength: 20 }), fc.integer().map(String), fc.constantFrom("-1", "1e9", "true", "")),
  { maxKeys: 4 },
);
const request = fc.record({
  method: fc.constantFrom("GET", "POST", "PUT", "DELETE", "PATCH"),
  path: fc.oneof(
    fc.constant("/v1/exports"),
    segment.map((id) => `/v1/exports/${id}`),
    segment.map((id) => `/v1/exports/${id}/cancel`),
    segment.map((id) => `/v1/exports/${id}/download`),
    fc.constant("/v1/datasets"),
    fc.array(segment, { minLength: 1, maxLength: 4 }).map((s) => `/files/${s.join("/")}`),
  ),
  query,
  body: fc.option(rawBody),
  contentType: fc.constantFrom(
    "application/json",
    "text/plain",
    "application/x-www-form-urlencoded",
    undefined,
  ),
  auth: fc.constantFrom("good", "none", "garbage"),
});

test("10,000 generated requests: no 5xx, every error in the envelope", async () => {
  let answered = 0;
  await fc.assert(
    fc.asyncProperty(request, async (r) => {
      const headers: Record<string, string> = {};
      if (r.auth === "good") headers.authorization = `Bearer ${key}`;
      if (r.auth === "garbage")
        headers.authorization = "Bearer exd_aaaaaaaaaa_bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
      if (r.contentType && r.body !== null) headers["content-type"] = r.contentType;
      const qs = new URLSearchParams(r.query).toString();
      // A connection per request: an error answer may close its connection before the body is read.
      const res = await rawRequest(
        base,
        r.method,
        `${r.path}${qs ? `?${qs}` : ""}`,
        headers,
        r.body !== null && r.method !== "GET" ? r.body : undefined,
      );
      answered++;
      assert.ok(res.status < 500, `${r.method} ${r.path} → ${res.status} ${res.body}`);
      if (res.status >= 400) {
        const body = JSON.parse(res.body);
        assert.equal(typeof body.error.code, "string");
        assert.equal(body.error.request_id, res.headers["x-request-id"]);
        assert.ok(Array.isArray(body.error.details));
      }
    }),
    { numRuns: 10_000 },
  );
  assert.equal(answered, 10_000);
});
