/**
 * The OpenAPI document is lint-clean (`redocly lint`, recommended rules) and true: real answers of
 * every route, successes and errors, are checked against it — the status is declared for the
 * route, the declared required headers are there, and the body validates against the declared schema.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { Ajv2020 } from "ajv/dist/2020.js";
import addFormatsModule from "ajv-formats";
import type { LightMyRequestResponse } from "fastify";
import { newExport } from "../../src/domain/export.js";
import { newId } from "../../src/domain/ids.js";
import { stampOf } from "../../src/usecases/audit.js";
import { MAINTENANCE_SETTING } from "../../src/usecases/maintenance.js";
import { issueOperatorKey } from "../../src/usecases/operator-keys.js";
import { SAMPLE_REQUEST } from "../helpers/export-request.js";
import { pastMidnight, startTestService, type TestService, tempDir, waitFor } from "../helpers/service.js";

// ajv-formats is CommonJS: its default export arrives wrapped under ESM.
const addFormats = addFormatsModule as unknown as typeof addFormatsModule.default;

const ROOT = new URL("../../", import.meta.url).pathname;
const HOUR = 3_600_000;

interface HeaderDoc {
  required?: boolean;
  schema?: object;
}
interface ResponseDoc {
  headers?: Record<string, HeaderDoc>;
  content?: Record<string, { schema?: object }>;
}
interface Document {
  paths: Record<string, Record<string, { responses: Record<string, ResponseDoc> }>>;
  components: object;
}

/** One real answer and the operation it answers: "get /v1/exports/{id}". */
interface Sample {
  operation: string;
  res: LightMyRequestResponse;
}

let now = Date.now();
let svc: TestService;
let document: Document;
const samples: Sample[] = [];

before(async () => {
  svc = await startTestService(
    { EXPORTD_PUBLIC_URL: "https://exports.acme.test", EXPORTD_RETENTION_DAYS: "7" },
    () => now,
  );
  document = (await svc.app!.inject({ method: "GET", url: "/openapi.json" })).json();
});
after(() => svc?.dispose());

test("redocly lint finds no error and no warning in /openapi.json", () => {
  const dir = tempDir("exportd-openapi-");
  try {
    const file = path.join(dir, "openapi.json");
    fs.writeFileSync(file, JSON.stringify(document));
    const run = spawnSync(
      process.execPath,
      [
        path.join(ROOT, "node_modules/@redocly/cli/bin/cli.js"),
        "lint",
        "--config",
        path.join(ROOT, "redocly.yaml"),
        "--format",
        "json",
        file,
      ],
      {
        encoding: "utf8",
        env: { ...process.env, REDOCLY_TELEMETRY: "off", REDOCLY_SUPPRESS_UPDATE_NOTICE: "true" },
        timeout: 60_000,
      },
    );
    const report = JSON.parse(run.stdout) as {
      totals: { errors: number; warnings: number };
      problems: { ruleId: string; message: string; location: { pointer: string }[] }[];
    };
    const problems = report.problems.map((p) => `${p.ruleId} at ${p.location[0]?.pointer}: ${p.message}`);
    assert.deepEqual(problems, [], "redocly lint problems");
    assert.equal(report.totals.errors, 0);
    assert.equal(run.status, 0, run.stderr);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test("the document names servers and leaves public routes without security", () => {
  const doc = document as unknown as {
    servers: { url: string }[];
    paths: Record<string, Record<string, { security?: unknown[] }>>;
  };
  assert.equal(doc.servers[0]?.url, "https://exports.acme.test");
  for (const p of ["/healthz", "/readyz", "/metrics", "/files/{key}"]) {
    assert.deepEqual(doc.paths[p]?.get?.security, [], `${p} is public`);
  }
  assert.equal(doc.paths["/v1/exports"]?.post?.security, undefined, "API routes use the global bearer");
});

describe("real answers match the document", () => {
  const bearer = (key: string) => ({ authorization: `Bearer ${key}` });
  const json = { "content-type": "application/json" };
  const to = pastMidnight();
  const body = { dataset: "events", from: new Date(to - HOUR).toISOString(), to: new Date(to).toISOString() };

  before(async () => {
    const key = await svc.key("acme");
    const readOnly = await svc.key("acme", ["exports:read"]);
    const inject = svc.app!.inject.bind(svc.app!);
    const take = async (operation: string, res: Promise<LightMyRequestResponse>) => {
      const r = await res;
      samples.push({ operation, res: r });
      return r;
    };
    const create = (payload: unknown, headers: Record<string, string> = {}) =>
      take(
        "post /v1/exports",
        inject({
          method: "POST",
          url: "/v1/exports",
          headers: { ...bearer(key), ...json, ...headers },
          payload: typeof payload === "string" ? payload : JSON.stringify(payload),
        }),
      );
    const status = (id: string) =>
      take("get /v1/exports/{id}", inject({ method: "GET", url: `/v1/exports/${id}`, headers: bearer(key) }));
    const download = (id: string, query = "") =>
      take(
        "get /v1/exports/{id}/download",
        inject({ method: "GET", url: `/v1/exports/${id}/download${query}`, headers: bearer(key) }),
      );
    const cancel = (id: string) =>
      take(
        "post /v1/exports/{id}/cancel",
        inject({ method: "POST", url: `/v1/exports/${id}/cancel`, headers: bearer(key) }),
      );
    const file = (url: string, headers: Record<string, string> = {}) => {
      const u = new URL(url);
      return take("get /files/{key}", inject({ method: "GET", url: u.pathname + u.search, headers }));
    };

    // Public routes.
    await take("get /healthz", inject({ method: "GET", url: "/healthz" }));
    await take("get /readyz", inject({ method: "GET", url: "/readyz" }));
    await take("get /metrics", inject({ method: "GET", url: "/metrics" }));
    await take("get /v1/datasets", inject({ method: "GET", url: "/v1/datasets", headers: bearer(key) }));

    // Create: 202, replay, dry run, and its errors.
    const created = await create(body, { "idempotency-key": "k-1" });
    await create(body, { "idempotency-key": "k-1" });
    await create({ ...body, format: "jsonl" }, { "idempotency-key": "k-1" });
    await create({ ...body, from: body.to, to: body.from });
    await create({ ...body, dry_run: true });
    await create({ ...body, sql: "select 1" });
    await create({ ...body, from: new Date(to - 400 * 24 * HOUR).toISOString() });
    await create('{"dataset": ');
    await create({ ...body, filters: { user_id: Array.from({ length: 20_000 }, (_, i) => `user_${i}`) } });
    await create("dataset=events", { "content-type": "text/plain" });
    await take("post /v1/exports", inject({ method: "POST", url: "/v1/exports", payload: body }));
    await take(
      "post /v1/exports",
      inject({
        method: "POST",
        url: "/v1/exports",
        headers: { ...bearer(readOnly), ...json },
        payload: body,
      }),
    );

    // Status, list, download of a finished export.
    const id = created.json().id as string;
    await waitFor(
      async () => (await status(id)).json().status,
      (s) => s === "succeeded",
    );
    await take(
      "get /v1/exports",
      inject({ method: "GET", url: "/v1/exports?limit=1", headers: bearer(key) }),
    );
    await take(
      "get /v1/exports",
      inject({ method: "GET", url: "/v1/exports?cursor=nope", headers: bearer(key) }),
    );
    await status("0190f5e4-0000-7000-8000-000000000000");
    const events = (exportId: string) =>
      take(
        "get /v1/exports/{id}/events",
        inject({ method: "GET", url: `/v1/exports/${exportId}/events`, headers: bearer(key) }),
      );
    await events(id);
    await events("0190f5e4-0000-7000-8000-000000000000");
    await download(id);
    const link = (await download(id, "?redirect=false")).json().url as string;
    await download(id, "?part=7");
    await download("0190f5e4-0000-7000-8000-000000000000");
    await cancel(id);

    // The signed link: whole, range, conditional, and refused.
    const whole = await file(link);
    await file(link, { range: "bytes=0-9" });
    await file(link, { "if-none-match": String(whole.headers.etag) });
    await file(link, { "if-match": '"not-this-one"' });
    await file(link, { range: "bytes=999999999-" });
    await file(link.replace(/signature=[^&]+/, "signature=x"));

    // A canceled export: cancel, then download is not ready.
    const second = (await create(body)).json().id as string;
    await cancel(second);
    await download(second);
    await cancel("0190f5e4-0000-7000-8000-000000000000");

    // Retention: the link signed just before expiry, then 410 on both routes.
    now = Date.parse((await status(id)).json().expires_at) - 60_000;
    const lateLink = (await download(id, "?redirect=false")).json().url as string;
    now += 2 * 60_000;
    await svc.sweeper!.sweepOnce();
    await download(id);
    await file(lateLink);
    now += 30 * 60_000;
    await file(lateLink);

    // Webhook endpoints: every operation, a success and an error each.
    const hook = (method: string, route: string, url: string, payload?: unknown, who = key) =>
      take(
        `${method.toLowerCase()} ${route}`,
        inject({
          method: method as "GET",
          url,
          headers: payload === undefined ? bearer(who) : { ...bearer(who), ...json },
          ...(payload === undefined ? {} : { payload: JSON.stringify(payload) }),
        }),
      );
    const unknownId = "0190f5e4-0000-7000-8000-000000000000";
    const EP = "/v1/webhook_endpoints";
    const endpoint = (await hook("POST", EP, EP, { url: "https://hooks.acme.test/exportd" })).json()
      .id as string;
    await hook("POST", EP, EP, { url: "http://127.0.0.1/hook" });
    await hook("GET", EP, EP);
    await hook("GET", EP, EP, undefined, readOnly);
    const one = `${EP}/{id}`;
    await hook("GET", one, `${EP}/${endpoint}`);
    await hook("GET", one, `${EP}/${unknownId}`);
    await hook("PATCH", one, `${EP}/${endpoint}`, { description: "orders" });
    await hook("PATCH", one, `${EP}/${unknownId}`, { description: "orders" });
    for (const action of ["disable", "enable", "rotate_secret"]) {
      await hook("POST", `${one}/${action}`, `${EP}/${endpoint}/${action}`);
      await hook("POST", `${one}/${action}`, `${EP}/${unknownId}/${action}`);
    }
    const event = (await hook("POST", `${one}/test`, `${EP}/${endpoint}/test`)).json().id as string;
    await hook("POST", `${one}/test`, `${EP}/${unknownId}/test`);
    await hook("GET", `${one}/deliveries`, `${EP}/${endpoint}/deliveries?limit=5`);
    await hook("GET", `${one}/deliveries`, `${EP}/${unknownId}/deliveries`);
    await hook("POST", `${one}/redeliver`, `${EP}/${endpoint}/redeliver`, { event_id: event });
    await hook("POST", `${one}/redeliver`, `${EP}/${endpoint}/redeliver`, { event_id: unknownId });
    await hook("GET", "/v1/webhook_events/{id}", `/v1/webhook_events/${event}`);
    await hook("GET", "/v1/webhook_events/{id}", `/v1/webhook_events/${unknownId}`);
    await hook("DELETE", one, `${EP}/${endpoint}`);
    await hook("DELETE", one, `${EP}/${endpoint}`);

    // The queue cap, then the rate limit (this key already sent more than one request this minute).
    await svc.store.updateTenant("acme", { overrides: { maxQueued: 0 } });
    now += 2_000;
    await create(body);
    await svc.store.updateTenant("acme", { overrides: { maxQueued: null, requestsPerMinute: 1 } });
    now += 2_000;
    await take("get /v1/datasets", inject({ method: "GET", url: "/v1/datasets", headers: bearer(key) }));
    await svc.store.updateTenant("acme", { overrides: { requestsPerMinute: null } });

    // Maintenance pauses writes.
    await svc.store.setSetting(MAINTENANCE_SETTING, JSON.stringify({ enabled: true, retryAfterSeconds: 30 }));
    now += 61_000;
    await create(body);
    await cancel(second);
    await svc.store.setSetting(MAINTENANCE_SETTING, null);

    // The operator API: a success and an error of every operation.
    const stamp = stampOf("test", now);
    const op = (await issueOperatorKey(svc.store, "t", ["admin:read", "admin:write"], stamp)).key;
    const actOnly = (await issueOperatorKey(svc.store, "t", ["admin:act"], stamp)).key;
    const admin = (method: string, route: string, url: string, payload?: unknown, key = op) =>
      take(
        `${method.toLowerCase()} ${route}`,
        inject({
          method: method as "GET",
          url,
          headers: { ...bearer(key), ...(payload === undefined ? {} : json) },
          ...(payload === undefined ? {} : { payload: JSON.stringify(payload) }),
        }),
      );
    const T = "/admin/v1/tenants";
    const ONE = "/admin/v1/tenants/{name}";
    await admin("POST", T, T, { name: "op-t", limits: { max_running: 1 } });
    await admin("POST", T, T, { name: "op-t" });
    await admin("GET", T, `${T}?limit=1`);
    await admin("GET", T, `${T}?cursor=%21`);
    await admin("GET", ONE, `${T}/op-t`);
    await admin("GET", ONE, `${T}/none`);
    await admin("PATCH", ONE, `${T}/op-t`, { limits: { max_queued: 9, max_running: null } });
    await admin("PATCH", ONE, `${T}/none`, {});
    const KEYS = `${ONE}/keys`;
    const issued = (await admin("POST", KEYS, `${T}/op-t/keys`, { scopes: ["exports:read"] })).json();
    await admin("POST", KEYS, `${T}/none/keys`, {});
    await admin("GET", KEYS, `${T}/op-t/keys`);
    await admin("GET", KEYS, `${T}/none/keys`);
    const rotated = (
      await admin("POST", `${KEYS}/{prefix}/rotate`, `${T}/op-t/keys/${issued.prefix}/rotate`)
    ).json();
    await admin("POST", `${KEYS}/{prefix}/rotate`, `${T}/op-t/keys/${issued.prefix}/rotate`);
    await admin("POST", `${KEYS}/{prefix}/revoke`, `${T}/op-t/keys/${rotated.prefix}/revoke`);
    await admin("POST", `${KEYS}/{prefix}/revoke`, `${T}/op-t/keys/${rotated.prefix}/revoke`);
    const P = "/admin/v1/plans";
    const plan = { name: "op-p", limits: { max_running: 1, max_queued: 2, requests_per_minute: 3 } };
    await admin("POST", P, P, plan);
    await admin("POST", P, P, plan);
    await admin("GET", P, P);
    await admin("GET", P, P, undefined, actOnly);
    await admin("PATCH", `${P}/{name}`, `${P}/op-p`, { limits: { max_queued: 5 } });
    await admin("PATCH", `${P}/{name}`, `${P}/none`, { limits: {} });
    // A queued export of op-t that no worker takes (op-t runs nothing at once).
    const tenant = await svc.store.updateTenant("op-t", { overrides: { maxRunning: 0 } });
    const queued = newExport({
      id: newId(),
      tenantId: tenant!.id,
      request: SAMPLE_REQUEST,
      now,
      estimatedRows: 1,
    });
    await svc.store.insertExport(queued);
    const E = "/admin/v1/exports";
    await admin("GET", E, `${E}?tenant=op-t`);
    await admin("GET", E, `${E}?cursor=nope`);
    await admin("GET", `${E}/{id}`, `${E}/${queued.id}`);
    await admin("GET", `${E}/{id}`, `${E}/0190f5e4-0000-7000-8000-000000000000`);
    await admin("POST", `${E}/{id}/cancel`, `${E}/${queued.id}/cancel`);
    await admin("POST", `${E}/{id}/cancel`, `${E}/${queued.id}/cancel`);
    const M = "/admin/v1/maintenance";
    await admin("GET", M, M);
    await admin("GET", M, M, undefined, actOnly);
    await admin("PUT", M, M, { enabled: false });
    await admin("PUT", M, M, { enabled: "yes" });
    const A = "/admin/v1/audit";
    await admin("GET", A, `${A}?tenant=op-t&limit=2`);
    await admin("GET", A, `${A}?cursor=nope`);
    // Product-wide webhook endpoints: a success and an error of every operation.
    const W = "/admin/v1/webhook_endpoints";
    const WONE = `${W}/{id}`;
    const noId = "0190f5e4-0000-7000-8000-000000000000";
    const wid = (await admin("POST", W, W, { url: "https://hooks.acme.test/all" })).json().id as string;
    await admin("POST", W, W, { url: "http://127.0.0.1/hook" });
    await admin("GET", W, W);
    await admin("GET", W, W, undefined, actOnly);
    await admin("GET", `${W}/troubled`, `${W}/troubled`);
    await admin("GET", `${W}/troubled`, `${W}/troubled`, undefined, actOnly);
    await admin("GET", WONE, `${W}/${wid}`);
    await admin("GET", WONE, `${W}/${noId}`);
    await admin("PATCH", WONE, `${W}/${wid}`, { description: "all tenants" });
    await admin("PATCH", WONE, `${W}/${noId}`, { description: "all tenants" });
    for (const action of ["disable", "enable", "rotate_secret"]) {
      await admin("POST", `${WONE}/${action}`, `${W}/${wid}/${action}`);
      await admin("POST", `${WONE}/${action}`, `${W}/${noId}/${action}`);
    }
    const testEvent = (await admin("POST", `${WONE}/test`, `${W}/${wid}/test`)).json().id as string;
    await admin("POST", `${WONE}/test`, `${W}/${noId}/test`);
    await admin("GET", `${WONE}/deliveries`, `${W}/${wid}/deliveries?limit=5`);
    await admin("GET", `${WONE}/deliveries`, `${W}/${noId}/deliveries`);
    await admin("POST", `${WONE}/redeliver`, `${W}/${wid}/redeliver`, { event_id: testEvent });
    await admin("POST", `${WONE}/redeliver`, `${W}/${wid}/redeliver`, { event_id: noId });
    await admin("GET", "/admin/v1/webhook_events/{id}", `/admin/v1/webhook_events/${testEvent}`);
    await admin("GET", "/admin/v1/webhook_events/{id}", `/admin/v1/webhook_events/${noId}`);
    await admin("DELETE", WONE, `${W}/${wid}`);
    await admin("DELETE", WONE, `${W}/${wid}`);
    await admin("POST", `${ONE}/disable`, `${T}/op-t/disable`);
    await admin("POST", `${ONE}/disable`, `${T}/none/disable`);
    await admin("POST", `${ONE}/enable`, `${T}/op-t/enable`);
    await admin("POST", `${ONE}/enable`, `${T}/none/enable`);
    await admin("DELETE", ONE, `${T}/op-t`);
    await admin("DELETE", ONE, `${T}/op-t`);
  });

  test("each answer's status, required headers and body are as declared", () => {
    const ajv = new Ajv2020({ strict: false, allErrors: true });
    addFormats(ajv);
    const problems: string[] = [];
    for (const { operation, res } of samples) {
      const [method, route] = operation.split(" ") as [string, string];
      const where = `${operation} → ${res.statusCode}`;
      const declared = document.paths[route]?.[method];
      if (!declared) {
        problems.push(`${operation}: not in the document`);
        continue;
      }
      const response = declared.responses[String(res.statusCode)];
      if (!response) {
        problems.push(`${where}: status not declared (${res.body.slice(0, 200)})`);
        continue;
      }
      for (const [name, h] of Object.entries(response.headers ?? {})) {
        const value = res.headers[name.toLowerCase()];
        if (value === undefined) {
          if (h.required) problems.push(`${where}: required header ${name} missing`);
          continue;
        }
        const schema = h.schema as { type?: string } | undefined;
        const typed = schema?.type === "integer" ? Number(value) : value;
        if (schema && !ajv.validate(schema, typed)) problems.push(`${where}: header ${name}=${value}`);
      }
      const content = response.content ?? {};
      if (Object.keys(content).length === 0) {
        if (res.body !== "") problems.push(`${where}: a body where none is declared`);
        continue;
      }
      const type = String(res.headers["content-type"]);
      const media = content[type] ?? content[type.split(";")[0] as string];
      if (!media) {
        problems.push(`${where}: Content-Type ${type} not declared (${Object.keys(content).join(", ")})`);
        continue;
      }
      if (!type.startsWith("application/json")) continue;
      // The response schema's refs point into the document's components.
      const validate = ajv.compile({ ...media.schema, components: document.components });
      if (!validate(res.json())) {
        problems.push(`${where}: body ${ajv.errorsText(validate.errors)} in ${res.body.slice(0, 300)}`);
      }
    }
    assert.deepEqual(problems, []);
  });

  test("the samples cover a success and an error of every operation", () => {
    const seen = new Map<string, Set<number>>();
    for (const { operation, res } of samples) {
      seen.set(operation, (seen.get(operation) ?? new Set()).add(res.statusCode));
    }
    for (const [route, item] of Object.entries(document.paths)) {
      for (const method of Object.keys(item)) {
        const statuses = [...(seen.get(`${method} ${route}`) ?? [])];
        assert.ok(
          statuses.some((s) => s < 400),
          `no success sample for ${method} ${route}`,
        );
        if (!["/healthz", "/readyz", "/metrics"].includes(route)) {
          assert.ok(
            statuses.some((s) => s >= 400),
            `no error sample for ${method} ${route}`,
          );
        }
      }
    }
    const codes = new Set<string | number>(
      samples.map((s) => (s.res.statusCode >= 400 ? s.res.json().error.code : s.res.statusCode)),
    );
    for (const code of [
      200,
      202,
      206,
      302,
      304,
      "invalid_request",
      "invalid_date_range",
      "unauthorized",
      "insufficient_scope",
      "invalid_signature",
      "link_expired",
      "not_found",
      "not_cancellable",
      "export_not_ready",
      "idempotency_conflict",
      "export_expired",
      "precondition_failed",
      "payload_too_large",
      "unsupported_media_type",
      "range_not_satisfiable",
      "rate_limited",
      "too_many_exports",
      "maintenance",
    ]) {
      assert.ok(codes.has(code), `no sample answered ${code}`);
    }
  });
});
