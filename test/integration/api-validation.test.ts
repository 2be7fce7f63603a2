/** Request validation and the error envelope, through the real HTTP app (in process) on a real SQLite file. */
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { gzipSync } from "node:zlib";
import { ERROR_CATALOGUE } from "../../src/domain/errors.js";
import { pastMidnight, startTestService, type TestService } from "../helpers/service.js";

let svc: TestService;
let key: string;
const to = pastMidnight();
const from = to - 86_400_000;
const valid = { dataset: "events", from: new Date(from).toISOString(), to: new Date(to).toISOString() };

before(async () => {
  // API role only: nothing runs, so every created export stays queued.
  svc = await startTestService({ EXPORTD_ROLE: "api" });
  key = await svc.key("acme");
});
after(() => svc.dispose());

async function post(body: unknown, headers: Record<string, string> = {}) {
  return svc.app!.inject({
    method: "POST",
    url: "/v1/exports",
    headers: { authorization: `Bearer ${key}`, "content-type": "application/json", ...headers },
    payload: typeof body === "string" ? body : JSON.stringify(body),
  });
}

function assertEnvelope(res: Awaited<ReturnType<typeof post>>, status: number, code: string) {
  assert.equal(res.statusCode, status, res.body);
  const body = res.json();
  assert.equal(body.error.code, code);
  assert.equal(typeof body.error.message, "string");
  assert.ok(Array.isArray(body.error.details));
  assert.match(body.error.request_id, /^req_/);
  assert.equal(res.headers["x-request-id"], body.error.request_id);
  assert.equal(ERROR_CATALOGUE[code as keyof typeof ERROR_CATALOGUE].status, status);
  return body.error as { details: { field: string; code: string; message: string }[] };
}

describe("create validation", () => {
  const cases: [string, unknown, string, string][] = [
    ["bad JSON", '{"dataset": "events",', "body", "invalid_json"],
    ["unknown field", { ...valid, sql: "select 1" }, "sql", "unknown_field"],
    ["missing field", { dataset: "events", from: valid.from }, "to", "required"],
    ["wrong type", { ...valid, part_max_rows: "many" }, "part_max_rows", "invalid_type"],
    ["unknown dataset", { ...valid, dataset: "payroll" }, "dataset", "unknown_dataset"],
    ["unknown column", { ...valid, columns: ["id", "password"] }, "columns[1]", "unknown_column"],
    ["duplicate column", { ...valid, columns: ["id", "id"] }, "columns[1]", "duplicate_column"],
    ["unknown filter", { ...valid, filters: { country: "FR" } }, "filters.country", "unknown_filter"],
    ["from after to", { ...valid, from: valid.to, to: valid.from }, "from", "empty_range"],
    ["from equal to to", { ...valid, from: valid.from, to: valid.from }, "from", "empty_range"],
    ["unparseable from", { ...valid, from: "yesterday" }, "from", "invalid_date"],
    ["impossible date", { ...valid, from: "2026-02-31" }, "from", "invalid_date"],
    ["impossible local time", { ...valid, to: "2026-11-01T24:30:00" }, "to", "invalid_date"],
    ["bad time zone", { ...valid, timezone: "Mars/Olympus" }, "timezone", "invalid"],
    ["bad format", { ...valid, format: "xlsx" }, "format", "invalid_value"],
    ["bad delimiter", { ...valid, csv: { delimiter: "x" } }, "csv.delimiter", "invalid"],
    ["unknown csv option", { ...valid, csv: { quote: "'" } }, "csv.quote", "unknown_field"],
    ["zero part size", { ...valid, part_max_rows: 0 }, "part_max_rows", "invalid"],
    ["body not an object", [1, 2], "body", "invalid_type"],
  ];
  for (const [name, body, field, code] of cases) {
    test(`${name} → 400 invalid_request naming ${field}`, async () => {
      const error = assertEnvelope(await post(body), 400, "invalid_request");
      assert.ok(
        error.details.some((d) => d.field === field && d.code === code),
        `expected ${field}/${code} in ${JSON.stringify(error.details)}`,
      );
    });
  }

  test("every problem is reported at once", async () => {
    const error = assertEnvelope(
      await post({ ...valid, from: "nope", columns: ["nope"], filters: { nope: "x" } }),
      400,
      "invalid_request",
    );
    assert.deepEqual(error.details.map((d) => d.field).sort(), ["columns[0]", "filters.nope", "from"]);
  });

  test("a body of many bad items answers a bounded envelope: at most 100 details, the first ones, no amplification", async () => {
    // 8,000 wrong-typed items in a 16 KB body answered 8,000 details (~620 KB) before the cap.
    const many = Array.from({ length: 8_000 }, () => 1);
    for (const body of [
      { ...valid, columns: many },
      { ...valid, filters: { type: many } },
      { ...valid, dataset: undefined, datasets: many },
      { ...valid, columns: Array.from({ length: 150 }, (_, i) => `nope_${i}`) },
    ]) {
      const res = await post(body);
      const error = assertEnvelope(res, 400, "invalid_request");
      assert.ok(error.details.length > 0 && error.details.length <= 100, `${error.details.length} details`);
      assert.ok(res.rawPayload.length < 16_384, `${res.rawPayload.length} bytes`);
    }
    const error = assertEnvelope(await post({ ...valid, columns: ["id", ...many] }), 400, "invalid_request");
    const fields = error.details.map((d) => d.field);
    assert.ok(
      fields.includes("columns[1]") && !fields.includes("columns[8000]"),
      "the first problems are kept",
    );
  });

  test("more datasets than one export holds → the documented detail code too_many_datasets", async () => {
    const { dataset: _single, ...range } = valid;
    for (const count of [0, 17, 40]) {
      const datasets = Array.from({ length: count }, (_, i) => ({ name: `d${i}` }));
      const error = assertEnvelope(await post({ ...range, datasets }), 400, "invalid_request");
      const entry = error.details.find((d) => d.field === "datasets");
      assert.equal(entry?.code, "too_many_datasets", `${count}: ${JSON.stringify(error.details)}`);
    }
  });

  test("a range longer than the dataset allows → 400 invalid_date_range", async () => {
    const error = assertEnvelope(
      await post({ ...valid, from: new Date(to - 40 * 86_400_000).toISOString() }),
      400,
      "invalid_date_range",
    );
    assert.equal(error.details[0]?.code, "range_too_long");
  });

  test("an oversized body → 413 payload_too_large", async () => {
    const huge = { ...valid, filters: { user_id: Array.from({ length: 20_000 }, (_, i) => `user_${i}`) } };
    assertEnvelope(await post(huge), 413, "payload_too_large");
  });

  test("a body that is not JSON → 415 unsupported_media_type", async () => {
    assertEnvelope(
      await post("dataset=events", { "content-type": "text/plain" }),
      415,
      "unsupported_media_type",
    );
  });

  test("a charset other than UTF-8 → 415 unsupported_media_type naming content-type; UTF-8 in any spelling is read", async () => {
    const dryRun = { ...valid, dry_run: true };
    const refused: [string, Buffer][] = [
      ["application/json; charset=utf-16", Buffer.from(JSON.stringify(dryRun), "utf16le")],
      ["application/json; charset=latin1", Buffer.from(JSON.stringify(dryRun), "latin1")],
      ['application/json;charset="ISO-8859-1"', Buffer.from(JSON.stringify(dryRun))],
    ];
    for (const [contentType, payload] of refused) {
      const res = await svc.app!.inject({
        method: "POST",
        url: "/v1/exports",
        headers: { authorization: `Bearer ${key}`, "content-type": contentType },
        payload,
      });
      const error = assertEnvelope(res, 415, "unsupported_media_type");
      assert.deepEqual(
        error.details.map((d) => d.field),
        ["content-type"],
        contentType,
      );
      assert.match(res.json().error.message, /UTF-8/);
    }
    for (const contentType of ["application/json; charset=UTF-8", 'application/json; charset="utf-8"']) {
      const res = await post(dryRun, { "content-type": contentType });
      assert.equal(res.statusCode, 200, `${contentType}: ${res.body}`);
    }
  });

  test("bytes that are not UTF-8 → 400 invalid_request, not read as U+FFFD", async () => {
    const text = JSON.stringify({ ...valid, dry_run: true, filters: { user_id: ["X"] } });
    const [head, tail] = text.split("X") as [string, string];
    const payload = Buffer.concat([Buffer.from(head), Buffer.from([0xff, 0xfe]), Buffer.from(tail)]);
    const res = await svc.app!.inject({
      method: "POST",
      url: "/v1/exports",
      headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
      payload,
    });
    const error = assertEnvelope(res, 400, "invalid_request");
    assert.deepEqual(
      error.details.map((d) => [d.field, d.code]),
      [["body", "invalid_json"]],
    );
  });

  test("any Content-Encoding but identity → 415 unsupported_media_type naming content-encoding, whatever the body", async () => {
    const dryRun = JSON.stringify({ ...valid, dry_run: true });
    const cases: [string, string | Buffer][] = [
      ["br", dryRun],
      ["gzip", gzipSync(dryRun)],
      ["deflate", dryRun],
      ["identity, gzip", dryRun],
    ];
    for (const [encoding, payload] of cases) {
      const res = await svc.app!.inject({
        method: "POST",
        url: "/v1/exports",
        headers: {
          authorization: `Bearer ${key}`,
          "content-type": "application/json",
          "content-encoding": encoding,
        },
        payload,
      });
      const error = assertEnvelope(res, 415, "unsupported_media_type");
      assert.deepEqual(
        error.details.map((d) => d.field),
        ["content-encoding"],
        encoding,
      );
    }
    assert.equal((await post(dryRun, { "content-encoding": "identity" })).statusCode, 200);
  });

  test("a string with a lone surrogate anywhere in the body → 400 invalid_request naming the field; pairs pass", async () => {
    const cases: [Record<string, unknown>, string][] = [
      [{ ...valid, filters: { user_id: ["ok", "\ud800"] } }, "filters.user_id[1]"],
      [{ ...valid, dataset: "events\udfff" }, "dataset"],
      [{ ...valid, columns: ["id", "\udbff"] }, "columns[1]"],
      [{ ...valid, timezone: "Europe/Paris\ud800" }, "timezone"],
      [{ ...valid, csv: { delimiter: "\udc00" } }, "csv.delimiter"],
      [{ ...valid, filters: { "\ud800": "x" } }, "filters"],
    ];
    for (const [body, field] of cases) {
      // JSON.stringify writes a lone surrogate as its escape: valid JSON, not valid Unicode text.
      const text = JSON.stringify(body);
      assert.match(text, /\\u[dD][89a-fA-F]/);
      const error = assertEnvelope(await post(text), 400, "invalid_request");
      assert.deepEqual(
        error.details.map((d) => [d.field, d.code]),
        [[field, "invalid"]],
        text,
      );
    }
    const pair = JSON.stringify({ ...valid, dry_run: true, filters: { user_id: ["PAIR"] } });
    const res = await post(pair.replace("PAIR", "\\ud83d\\ude00"));
    assert.equal(res.statusCode, 200, res.body);
  });

  test("a valid request → 202 with Location and the normalized request", async () => {
    const res = await post({ ...valid, filters: { type: "purchase" }, to: "now" });
    assert.equal(res.statusCode, 202, res.body);
    const body = res.json();
    assert.equal(res.headers.location, `/v1/exports/${body.id}`);
    assert.match(body.id, /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/, "UUIDv7");
    assert.equal(body.status, "queued");
    assert.equal(body.cancellable, true);
    assert.deepEqual(body.request.filters, { type: ["purchase"] });
    assert.deepEqual(body.request.columns, ["id", "occurred_at", "type", "user_id", "properties"]);
    assert.ok(
      Math.abs(Date.parse(body.request.to) - Date.now()) < 60_000,
      "to=now resolves to the creation time",
    );
    assert.equal(body.request.to_requested, "now", "the echo says that now was asked for");
    const status = await svc.app!.inject({
      method: "GET",
      url: `/v1/exports/${body.id}`,
      headers: { authorization: `Bearer ${key}` },
    });
    assert.equal(status.json().request.to, body.request.to, "the resolved end is kept");
    assert.equal(status.json().request.to_requested, "now");
    const dated = (await post({ ...valid, from: "2026-10-31", to: "2026-11-01" })).json();
    assert.equal(dated.request.to_requested, "2026-11-01");
    assert.equal(dated.request.to, "2026-11-01T00:00:00.000Z");
  });
});

describe("routes and ids", () => {
  const auth = () => ({ authorization: `Bearer ${key}` });

  test("unknown route → 404 not_found in the envelope", async () => {
    assertEnvelope(
      await svc.app!.inject({ method: "GET", url: "/v1/nothing", headers: auth() }),
      404,
      "not_found",
    );
  });

  for (const id of ["not-a-uuid", "01a20625-9dbc-7129-a20f-445ab69398b4", "../../etc/passwd", "%00"]) {
    test(`GET /v1/exports/${id} → 404`, async () => {
      const res = await svc.app!.inject({
        method: "GET",
        url: `/v1/exports/${encodeURIComponent(id)}`,
        headers: auth(),
      });
      assertEnvelope(res, 404, "not_found");
    });
  }

  test("list with a forged cursor → 400", async () => {
    const res = await svc.app!.inject({ method: "GET", url: "/v1/exports?cursor=zzz", headers: auth() });
    const error = assertEnvelope(res, 400, "invalid_request");
    assert.equal(error.details[0]?.field, "cursor");
  });

  test("list with an unknown status → 400 naming the field", async () => {
    const res = await svc.app!.inject({ method: "GET", url: "/v1/exports?status=done", headers: auth() });
    const error = assertEnvelope(res, 400, "invalid_request");
    assert.equal(error.details[0]?.field, "status");
  });

  test("download of a queued export → 409 export_not_ready with its status", async () => {
    const created = (await post(valid)).json();
    const res = await svc.app!.inject({
      method: "GET",
      url: `/v1/exports/${created.id}/download`,
      headers: auth(),
    });
    const error = assertEnvelope(res, 409, "export_not_ready");
    assert.deepEqual(error.details[0], {
      field: "status",
      code: "queued",
      message: "Current status: queued.",
    });
  });

  test("cancel a queued export, then again → 409 not_cancellable", async () => {
    const created = (await post(valid)).json();
    const url = `/v1/exports/${created.id}/cancel`;
    const first = await svc.app!.inject({ method: "POST", url, headers: auth() });
    assert.equal(first.statusCode, 200);
    assert.equal(first.json().status, "canceled");
    assert.equal(first.json().cancellable, false);
    assertEnvelope(await svc.app!.inject({ method: "POST", url, headers: auth() }), 409, "not_cancellable");
  });

  test("canceling a queued export that holds parts of an interrupted run deletes them at once", async () => {
    const created = (await post(valid)).json();
    const tenantId = (await svc.store.findTenantByName("acme"))!.id;
    // An earlier run published one part, then handed the export back (a shutdown).
    await svc.store.updateTenant("acme", { overrides: { maxRunning: 1000 } });
    const lease = { owner: "w", now: Date.now(), leaseMs: 60_000 };
    let claimed = await svc.store.claimExport(lease);
    while (claimed && claimed.id !== created.id) claimed = await svc.store.claimExport(lease);
    const key = `exports/${tenantId}/${created.id}/part-000.a1.csv.gz`;
    const file = path.join(svc.dataDir, "objects", key);
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(file, "id\r\n");
    const part = { index: 0, objectKey: key, rows: 0, bytes: 4, sha256: "x" };
    assert.equal(
      await svc.store.recordPart(created.id, lease, part, null, { percent: 1, rows: 0, parts: 1 }),
      "ok",
    );
    assert.equal(await svc.store.requeueExport(created.id, lease, Date.now(), null), "ok");
    const queued = await svc.app!.inject({
      method: "GET",
      url: `/v1/exports/${created.id}`,
      headers: auth(),
    });
    assert.equal(queued.json().status, "queued");
    assert.equal(queued.json().parts.length, 1, "a queued export shows the parts it already has");
    const res = await svc.app!.inject({
      method: "POST",
      url: `/v1/exports/${created.id}/cancel`,
      headers: auth(),
    });
    assert.equal(res.statusCode, 200);
    assert.equal(fs.existsSync(file), false, "its file is gone at once");
    assert.deepEqual(res.json().parts, []);
  });

  test("list pages through every export, newest first, and filters", async () => {
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) ids.push((await post({ ...valid, dataset: "events" })).json().id);
    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const res: Awaited<ReturnType<typeof post>> = await svc.app!.inject({
        method: "GET",
        url: `/v1/exports?limit=2&status=queued${cursor ? `&cursor=${cursor}` : ""}`,
        headers: auth(),
      });
      assert.equal(res.statusCode, 200, res.body);
      const page = res.json();
      assert.ok(page.data.length <= 2);
      for (const e of page.data) assert.equal(e.status, "queued");
      seen.push(...page.data.map((e: { id: string }) => e.id));
      cursor = page.next_cursor;
    } while (cursor);
    assert.equal(new Set(seen).size, seen.length, "no export twice");
    for (const id of ids) assert.ok(seen.includes(id));
    assert.deepEqual(seen, [...seen].sort().reverse(), "newest first");
    const canceled = await svc.app!.inject({
      method: "GET",
      url: "/v1/exports?status=canceled",
      headers: auth(),
    });
    assert.ok(canceled.json().data.length >= 1);
    for (const e of canceled.json().data) assert.equal(e.status, "canceled");
  });
});

describe("service documents", () => {
  test("/openapi.json is OpenAPI 3.1 with every API route", async () => {
    const res = await svc.app!.inject({ method: "GET", url: "/openapi.json" });
    assert.equal(res.statusCode, 200);
    const doc = res.json();
    assert.equal(doc.openapi, "3.1.0");
    for (const p of [
      "/v1/exports",
      "/v1/exports/{id}",
      "/v1/exports/{id}/cancel",
      "/v1/exports/{id}/download",
      "/v1/datasets",
    ]) {
      assert.ok(doc.paths[p], `missing ${p}`);
    }
    assert.ok(doc.paths["/v1/exports"].post.requestBody, "create body documented");
  });

  test("/docs serves the interactive page", async () => {
    const res = await svc.app!.inject({ method: "GET", url: "/docs/" });
    assert.equal(res.statusCode, 200);
    assert.match(res.body, /swagger/i);
  });

  test("/healthz and /readyz", async () => {
    assert.equal((await svc.app!.inject({ method: "GET", url: "/healthz" })).statusCode, 200);
    const ready = await svc.app!.inject({ method: "GET", url: "/readyz" });
    assert.equal(ready.statusCode, 200);
    assert.deepEqual(ready.json().checks, { database: "ok", storage: "ok", disk: "ok" });
  });

  test("/v1/datasets lists events with its columns, filters and limits", async () => {
    const res = await svc.app!.inject({
      method: "GET",
      url: "/v1/datasets",
      headers: { authorization: `Bearer ${key}` },
    });
    const events = res.json().data.find((d: { name: string }) => d.name === "events");
    assert.deepEqual(
      events.columns.map((c: { name: string }) => c.name),
      ["id", "occurred_at", "type", "user_id", "properties"],
    );
    assert.deepEqual(
      events.filters.map((f: { name: string }) => f.name),
      ["type", "user_id"],
    );
    assert.ok(events.limits.max_range_days >= 30);
  });
});
