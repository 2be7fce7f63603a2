/**
 * The operator API over real HTTP, on SQLite and on PostgreSQL: only operator credentials reach
 * /admin/v1 (anything else is answered exactly as an unknown path), operator scopes, tenants'
 * life cycle with audit entries, disable and delete of a tenant with exports in every state (rows
 * and objects gone after the delete), acting for a tenant on /v1 (only with admin:act, logged with
 * the operator's actor), and the bootstrap token. The separate listener (EXPORTD_ADMIN_PORT) and
 * the CLI commands run against the built binary (`npm run build` first) at the end.
 */
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { Writable } from "node:stream";
import { after, before, describe, test } from "node:test";
import Database from "better-sqlite3";
import pg from "pg";
import { pino } from "pino";
import { loadConfig } from "../../src/config/index.js";
import { partObjectKey } from "../../src/domain/naming.js";
import { OPERATOR_SCOPES, type OperatorScope } from "../../src/domain/operator-scopes.js";
import { EXPORT_EVENT_TYPES } from "../../src/domain/webhooks.js";
import type { Lease } from "../../src/metadata/types.js";
import { createService, openObjectStore, type Service } from "../../src/service.js";
import { stampOf } from "../../src/usecases/audit.js";
import { issueOperatorKey } from "../../src/usecases/operator-keys.js";
import { type RawResponse, rawRequest } from "../helpers/http.js";
import { freePort } from "../helpers/net.js";
import { createTestDatabase, type TestDatabase } from "../helpers/postgres.js";
import { cli, filesUnder, startServer, stopAll } from "../helpers/server-process.js";
import { pastMidnight, tempDir, waitFor } from "../helpers/service.js";

const TOKEN = "bootstrap-token-for-tests-0123456789abcdef";
const to = pastMidnight();
const createBody = JSON.stringify({
  dataset: "events",
  from: new Date(to - 3_600_000).toISOString(),
  to: new Date(to).toISOString(),
});

interface Envelope {
  error: { code: string; message: string; request_id: string; details: { field: string; code: string }[] };
}

const json = (key: string | null, extra: Record<string, string> = {}) => ({
  "content-type": "application/json",
  ...(key === null ? {} : { authorization: `Bearer ${key}` }),
  ...extra,
});

function assertError(res: RawResponse, status: number, code: string, where = ""): Envelope {
  assert.equal(res.status, status, `${where} → ${res.body}`);
  const body = res.json<Envelope>();
  assert.equal(body.error.code, code, where);
  assert.equal(res.headers["x-request-id"], body.error.request_id, where);
  return body;
}

/** An exportd in this process with its log lines kept, on a real listener. */
interface Harness {
  service: Service;
  base: string;
  dataDir: string;
  logs: Record<string, unknown>[];
  /** An operator key with these scopes, made through the use case the CLI calls. */
  operatorKey(scopes: OperatorScope[]): Promise<string>;
  call(
    method: string,
    url: string,
    key: string | null,
    body?: unknown,
    headers?: Record<string, string>,
  ): Promise<RawResponse>;
  /** Rows of a table matching an SQL condition, read straight from the database. */
  count(table: string, where: string, value: string): Promise<number>;
  dispose(): Promise<void>;
}

async function startHarness(databaseUrl: string | null): Promise<Harness> {
  const dataDir = tempDir("exportd-operator-");
  const logs: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString().split("\n")) if (line) logs.push(JSON.parse(line));
      done();
    },
  });
  const config = loadConfig({
    EXPORTD_DATA_DIR: dataDir,
    EXPORTD_ROLE: "api",
    EXPORTD_ADMIN_TOKEN: TOKEN,
    ...(databaseUrl ? { EXPORTD_DATABASE_URL: databaseUrl } : {}),
  });
  const service = await createService(config, pino({ level: "info" }, sink));
  const app = service.app!;
  await app.listen({ port: 0, host: "127.0.0.1" });
  const { port } = app.server.address() as { port: number };
  const base = `http://127.0.0.1:${port}`;
  return {
    service,
    base,
    dataDir,
    logs,
    async operatorKey(scopes) {
      return (await issueOperatorKey(service.store, "test", scopes, stampOf("test", Date.now()))).key;
    },
    call(method, url, key, body, headers = {}) {
      const text = body === undefined ? undefined : JSON.stringify(body);
      return rawRequest(
        base,
        method,
        url,
        text === undefined ? { ...json(key), ...headers } : json(key, headers),
        text,
      );
    },
    async count(table, where, value) {
      if (databaseUrl) {
        const client = new pg.Client({ connectionString: databaseUrl });
        await client.connect();
        try {
          const { rows } = await client.query(
            `SELECT count(*) AS n FROM ${table} WHERE ${where.replace("?", "$1")}`,
            [value],
          );
          return Number(rows[0].n);
        } finally {
          await client.end();
        }
      }
      const db = new Database(path.join(dataDir, "exportd.sqlite"), { readonly: true });
      try {
        return Number(
          (db.prepare(`SELECT count(*) AS n FROM ${table} WHERE ${where}`).get(value) as { n: number }).n,
        );
      } finally {
        db.close();
      }
    },
    async dispose() {
      await service.close();
      fs.rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

let pgDatabase: TestDatabase;
before(async () => {
  pgDatabase = await createTestDatabase();
});
after(async () => {
  await stopAll();
  await pgDatabase?.dispose();
});

for (const engine of ["sqlite", "postgres"] as const) {
  describe(`operator API on ${engine}`, () => {
    let h: Harness;
    let tenantKey: string;
    before(async () => {
      h = await startHarness(engine === "postgres" ? pgDatabase.url : null);
      // No tenant, no key: the operator API never creates a tenant on the side.
      assertError(await h.call("POST", "/admin/v1/tenants/acme/keys", TOKEN, {}), 404, "not_found");
      assert.equal((await h.call("POST", "/admin/v1/tenants", TOKEN, { name: "acme" })).status, 201);
      const issued = await h.call("POST", "/admin/v1/tenants/acme/keys", TOKEN, {});
      assert.equal(issued.status, 201, issued.body);
      tenantKey = issued.json<{ key: string }>().key;
      assert.match(tenantKey, /^exd_/);
    });
    after(() => h.dispose());

    /** A concrete request for every registered operator route. */
    const concrete = (url: string) =>
      url
        .replace(":name", "walk-target")
        .replace(":prefix", "nothing")
        .replace(":id", "0192f3a0-0000-7000-8000-000000000000");

    test("no credential, a tenant key, a garbage, JWT-like or revoked operator key: every /admin route answers as an unknown path", async () => {
      const routes = h.service.app!.adminRouteScopes.filter((r) => r.method !== "HEAD");
      assert.ok(routes.length >= 20, `walked ${routes.length} routes`);
      // The product-wide webhook routes are operator routes like the others.
      for (const url of ["/admin/v1/webhook_endpoints/:id/rotate_secret", "/admin/v1/webhook_events/:id"])
        assert.ok(
          routes.some((r) => r.url === url),
          `${url} walked`,
        );
      const revoked = await h.operatorKey([...OPERATOR_SCOPES]);
      const prefix = revoked.split("_")[1] as string;
      assert.equal((await h.call("GET", "/admin/v1/tenants", revoked)).status, 200);
      await h.service.store.revokeOperatorKey(prefix, stampOf("test", Date.now()));
      const jwtLike = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl";
      const credentials: [string, string | null][] = [
        ["no credential", null],
        ["a tenant key", tenantKey],
        ["garbage", "garbage"],
        ["a JWT", jwtLike],
        ["the bootstrap token with one character changed", `${TOKEN.slice(0, -1)}X`],
      ];
      // The revoked key stops within the 1-second cache.
      await waitFor(
        async () => (await h.call("GET", "/admin/v1/tenants", revoked)).status,
        (s) => s === 404,
        5000,
      );
      credentials.push(["a revoked operator key", revoked]);
      for (const [what, key] of credentials) {
        for (const route of routes) {
          const url = concrete(route.url);
          const res = await h.call(route.method, url, key, route.method === "GET" ? undefined : {});
          const body = assertError(res, 404, "not_found", `${what}: ${route.method} ${route.url}`);
          const unknown = await h.call(route.method, `${url}-unknown`, key);
          const expected = assertError(unknown, 404, "not_found").error;
          // Word for word the unknown path's answer (with its own path), no header more or less.
          assert.equal(body.error.message, expected.message.replace("-unknown", ""), what);
          assert.deepEqual(body.error.details, expected.details);
          assert.equal(res.headers["www-authenticate"], undefined);
          assert.equal(res.headers["ratelimit-limit"], undefined);
          assert.deepEqual(
            Object.keys(res.headers).sort(),
            Object.keys(unknown.headers).sort(),
            `${what} ${route.url}`,
          );
        }
      }
    });

    test("an operator key without the route's scope → 403 insufficient_scope; with it, no 403", async () => {
      const routes = h.service.app!.adminRouteScopes.filter((r) => r.method !== "HEAD");
      for (const scope of OPERATOR_SCOPES) {
        const key = await h.operatorKey([scope]);
        for (const route of routes) {
          const res = await h.call(
            route.method,
            concrete(route.url),
            key,
            route.method === "GET" ? undefined : {},
          );
          const where = `[${scope}] ${route.method} ${route.url}`;
          if (route.scope !== scope) {
            const body = assertError(res, 403, "insufficient_scope", where);
            assert.ok(body.error.message.includes(route.scope), where);
          } else {
            assert.notEqual(res.status, 403, where);
            assert.ok(res.status < 500, `${where} → ${res.status} ${res.body}`);
          }
        }
      }
    });

    test("tenants: create, list with a cursor, get, change plan and limits — each write audited with before and after", async () => {
      const writer = await h.operatorKey(["admin:read", "admin:write"]);
      const writerPrefix = writer.split("_")[1];
      for (const name of ["t-b", "t-a", "t-c"])
        assert.equal((await h.call("POST", "/admin/v1/tenants", writer, { name })).status, 201);
      assertError(await h.call("POST", "/admin/v1/tenants", writer, { name: "t-a" }), 409, "already_exists");
      assertError(
        await h.call("POST", "/admin/v1/tenants", writer, { name: "t-z", plan: "nope" }),
        400,
        "invalid_request",
      );
      const names: string[] = [];
      let cursor: string | null = null;
      do {
        const page: RawResponse = await h.call(
          "GET",
          `/admin/v1/tenants?limit=2${cursor ? `&cursor=${cursor}` : ""}`,
          writer,
        );
        assert.equal(page.status, 200, page.body);
        const body = page.json<{ data: { name: string }[]; next_cursor: string | null }>();
        assert.ok(body.data.length <= 2);
        names.push(...body.data.map((t) => t.name));
        cursor = body.next_cursor;
      } while (cursor);
      assert.deepEqual(names, ["acme", "t-a", "t-b", "t-c"]);
      assertError(await h.call("GET", "/admin/v1/tenants?cursor=!!", writer), 400, "invalid_request");

      const plan = { name: "pro", limits: { max_running: 4, max_queued: 40, requests_per_minute: 900 } };
      assert.equal((await h.call("POST", "/admin/v1/plans", writer, plan)).status, 201);
      assertError(await h.call("POST", "/admin/v1/plans", writer, plan), 409, "already_exists");
      const changedPlan = await h.call("PATCH", "/admin/v1/plans/pro", writer, {
        limits: { max_queued: 45 },
      });
      assert.equal(changedPlan.json<{ limits: { max_queued: number } }>().limits.max_queued, 45);
      const changed = await h.call("PATCH", "/admin/v1/tenants/t-a", writer, {
        plan: "pro",
        limits: { max_running: 7 },
      });
      assert.equal(changed.status, 200, changed.body);
      const t = changed.json<{
        plan: string;
        limits: Record<string, number>;
        overrides: Record<string, unknown>;
      }>();
      assert.equal(t.plan, "pro");
      assert.deepEqual(t.limits, { max_running: 7, max_queued: 45, requests_per_minute: 900 });
      assert.deepEqual(t.overrides, { max_running: 7, max_queued: null, requests_per_minute: null });
      const got = await h.call("GET", "/admin/v1/tenants/t-a", writer);
      assert.deepEqual(got.json<{ limits: unknown }>().limits, t.limits);
      assertError(await h.call("GET", "/admin/v1/tenants/none", writer), 404, "not_found");

      const audit = await h.call("GET", "/admin/v1/audit?tenant=t-a", writer);
      const entries = audit.json<{
        data: {
          actor: string;
          action: string;
          target: string;
          before: { plan?: string } | null;
          after: { plan?: string };
        }[];
      }>().data;
      assert.deepEqual(
        entries.map((e) => e.action),
        ["tenant.change", "tenant.create"],
      );
      const [change, create] = entries;
      assert.equal(change?.actor, `operator:${writerPrefix}`);
      assert.equal(change?.target, "tenant:t-a");
      assert.equal(change?.before?.plan, "default");
      assert.equal(change?.after.plan, "pro");
      assert.equal(create?.before, null);
      const plans = await h.call("GET", "/admin/v1/audit?action=plan.change", writer);
      assert.equal(plans.json<{ data: unknown[] }>().data.length, 1);
    });

    test("disable and delete a tenant with exports in every state: keys refused, active exports canceled, then no row and no object left", async () => {
      const admin = await h.operatorKey(["admin:read", "admin:write"]);
      const store = h.service.store;
      const { storage } = await openObjectStore(h.service.config);
      await h.call("POST", "/admin/v1/tenants", admin, { name: "doomed", limits: { max_running: 10 } });
      const key = (await h.call("POST", "/admin/v1/tenants/doomed/keys", admin, {})).json<{ key: string }>()
        .key;
      const other = (await h.call("POST", "/admin/v1/tenants/acme/keys", admin, {})).json<{ key: string }>()
        .key;
      // Webhooks: an endpoint of the tenant's own and a product-wide one, both subscribed to every
      // event, so the outbox holds the tenant's events and deliveries when it is deleted. Their URL
      // resolves nowhere: deliveries stay pending.
      const endpoint = (id: string, tenantId: string | null) => ({
        id,
        tenantId,
        url: "https://doomed.invalid/hook",
        description: "",
        events: [...EXPORT_EVENT_TYPES],
        enabled: true,
        disabledReason: null,
        disabledAt: null,
        failingSince: null,
        source: tenantId === null ? ("operator" as const) : ("api" as const),
        createdAt: Date.now(),
        updatedAt: Date.now(),
        previousSecretExpiresAt: null,
        sealedSecret: "sealed",
      });
      const doomedId = (await store.findTenantByName("doomed"))?.id as string;
      await store.insertWebhookEndpoint(endpoint("wh-doomed", doomedId));
      await store.insertWebhookEndpoint(endpoint("wh-product", null));
      // acme's export first: claims take the oldest runnable export, so five claims take it and
      // doomed's first four, and doomed's fifth stays queued.
      const otherExport = (await h.call("POST", "/v1/exports", other, JSON.parse(createBody))).json<{
        id: string;
      }>().id;
      const ids: string[] = [];
      for (let i = 0; i < 5; i++) {
        const res = await h.call("POST", "/v1/exports", key, JSON.parse(createBody), {
          "idempotency-key": `k${i}`,
        });
        assert.equal(res.status, 202, res.body);
        ids.push(res.json<{ id: string }>().id);
      }
      const lease: Lease = { owner: "test-worker", now: Date.now(), leaseMs: 60_000 };
      const claimed = new Map<string, Awaited<ReturnType<typeof store.claimExport>>>();
      for (let i = 0; i < 5; i++) {
        const c = await store.claimExport(lease);
        assert.ok(c);
        claimed.set(c.id, c);
      }
      const otherClaim = claimed.get(otherExport);
      assert.ok(otherClaim, "acme's export was among the oldest");
      await store.failExport(otherExport, lease, { code: "internal_error", message: "x", retryable: true });
      const [succeeded, running, failed, canceled, queued] = ids as [string, string, string, string, string];
      const withPart = async (id: string) => {
        const record = claimed.get(id);
        assert.ok(record);
        const objectKey = partObjectKey(record.tenantId, id, 0, record.runs, record.request);
        const upload = await storage.upload(objectKey);
        upload.stream.end("a,b\r\n1,2\r\n");
        await new Promise((r) => upload.stream.once("finish", r));
        await upload.commit();
        const part = { index: 0, objectKey, rows: 1, bytes: 10, sha256: "0".repeat(64) };
        assert.equal(await store.recordPart(id, lease, part, null, { percent: 50, rows: 1, parts: 1 }), "ok");
      };
      await withPart(succeeded);
      assert.equal(await store.completeExport(succeeded, lease, Date.now() + 86_400_000), "ok");
      await withPart(running);
      await store.failExport(failed, lease, { code: "internal_error", message: "x", retryable: true });
      assert.equal((await h.call("POST", `/v1/exports/${canceled}/cancel`, key, {})).status, 200);
      assert.equal(claimed.has(queued), false);
      const status = async (id: string) =>
        (await h.call("GET", `/admin/v1/exports/${id}`, admin)).json<{ export: { status: string } }>().export
          .status;
      assert.deepEqual(await Promise.all(ids.map(status)), [
        "succeeded",
        "running",
        "failed",
        "canceled",
        "queued",
      ]);
      const tenantId = (await store.findTenantByName("doomed"))?.id as string;
      const objectsDir = h.service.config.objectsDir;
      const tenantFiles = () => filesUnder(path.join(objectsDir, "exports", tenantId));
      assert.equal(tenantFiles().length, 2, "the succeeded and the running export's parts");

      // The succeeded export's signed part link, issued while the tenant is active.
      const doc = await h.call("GET", `/v1/exports/${succeeded}`, key);
      const partUrl = new URL(doc.json<{ parts: { url: string }[] }>().parts[0]?.url as string);
      const link = `${partUrl.pathname}${partUrl.search}`;
      assert.equal((await rawRequest(h.base, "GET", link, {})).status, 200);

      // Disable: keys refused within the tenant cache's second, active exports canceled.
      const disabled = await h.call("POST", "/admin/v1/tenants/doomed/disable", admin, {});
      assert.equal(disabled.status, 200, disabled.body);
      const result = disabled.json<{ tenant: { status: string }; canceled_exports: string[] }>();
      assert.equal(result.tenant.status, "disabled");
      assert.deepEqual([...result.canceled_exports].sort(), [running, queued].sort());
      await waitFor(
        async () => (await h.call("GET", "/v1/exports", key)).status,
        (s) => s === 403,
        5000,
      );
      assertError(await h.call("GET", "/v1/exports", key), 403, "tenant_disabled");
      assertError(await h.call("POST", "/v1/exports", key, JSON.parse(createBody)), 403, "tenant_disabled");
      assert.equal((await h.call("GET", "/v1/exports", other)).status, 200, "other tenants unaffected");
      // Its signed links too (they were good for 20 minutes more), naming no tenant in the answer.
      const linkRefused = await waitFor(
        () => rawRequest(h.base, "GET", link, {}),
        (r) => r.status === 403,
        5000,
      );
      const refusal = assertError(linkRefused, 403, "tenant_disabled");
      assert.doesNotMatch(refusal.error.message, /doomed/);
      assert.equal(await status(running), "canceled");
      assert.equal(await status(queued), "canceled");
      assert.equal(await status(succeeded), "succeeded");
      const disableEntry = (
        await h.call("GET", "/admin/v1/audit?action=tenant.disable&tenant=doomed", admin)
      ).json<{
        data: { before: { disabledAt: number | null }; after: { disabledAt: number | null } }[];
      }>().data[0];
      assert.equal(disableEntry?.before.disabledAt, null);
      assert.equal(typeof disableEntry?.after.disabledAt, "number");
      // Enable: the key works again.
      assert.equal((await h.call("POST", "/admin/v1/tenants/doomed/enable", admin, {})).status, 200);
      await waitFor(
        async () => (await h.call("GET", "/v1/exports", key)).status,
        (s) => s === 200,
        5000,
      );
      await waitFor(
        async () => (await rawRequest(h.base, "GET", link, {})).status,
        (s) => s === 200,
        5000,
      );

      // Delete: every row and object of the tenant, nothing of another tenant's.
      const deleted = await h.call("DELETE", "/admin/v1/tenants/doomed", admin);
      assert.equal(deleted.status, 200, deleted.body);
      assert.deepEqual(deleted.json(), {
        object: "tenant_deleted",
        name: "doomed",
        deleted_exports: 5,
        deleted_keys: 1,
      });
      assert.deepEqual(tenantFiles(), []);
      // Its webhooks too: its endpoint, every event about its exports (those queued for the
      // product-wide endpoint included), their deliveries and attempts; the product-wide endpoint stays.
      assert.equal(await h.count("webhook_endpoints", "tenant_id = ?", tenantId), 0);
      assert.equal(await h.count("webhook_events", "tenant_id = ?", tenantId), 0);
      assert.equal(await h.count("webhook_deliveries", "endpoint_id = ?", "wh-doomed"), 0);
      assert.equal(await h.count("webhook_endpoints", "id = ?", "wh-product"), 1);
      assert.equal(await h.count("tenants", "name = ?", "doomed"), 0);
      for (const table of ["exports", "api_keys", "idempotency_keys"])
        assert.equal(await h.count(table, "tenant_id = ?", tenantId), 0, table);
      for (const id of ids) assert.equal(await h.count("export_parts", "export_id = ?", id), 0);
      assert.equal(await h.count("exports", "id = ?", otherExport), 1, "another tenant's export stays");
      await waitFor(
        async () => (await h.call("GET", "/v1/exports", key)).status,
        (s) => s === 401,
        5000,
      );
      assertError(await h.call("GET", `/admin/v1/exports/${succeeded}`, admin), 404, "not_found");
      // A deleted tenant's link is not found, as a file that no longer exists.
      assertError(await rawRequest(h.base, "GET", link, {}), 404, "not_found");
      const entry = (await h.call("GET", "/admin/v1/audit?action=tenant.delete", admin)).json<{
        data: { tenant: string; before: { name: string }; after: unknown }[];
      }>().data[0];
      assert.equal(entry?.tenant, "doomed");
      assert.equal(entry?.before.name, "doomed");
      assert.deepEqual(entry?.after, { deleted_exports: 5, deleted_keys: 1, deleted_webhook_endpoints: 1 });
    });

    test("keys of a tenant: create (shown once), list, rotate, revoke — scoped to the tenant named", async () => {
      const admin = await h.operatorKey(["admin:read", "admin:write"]);
      await h.call("POST", "/admin/v1/tenants", admin, { name: "keyed" });
      const created = await h.call("POST", "/admin/v1/tenants/keyed/keys", admin, {
        scopes: ["exports:read"],
      });
      const { key, prefix } = created.json<{ key: string; prefix: string }>();
      assert.equal((await h.call("GET", "/v1/exports", key)).status, 200);
      assertError(
        await h.call("POST", `/admin/v1/tenants/acme/keys/${prefix}/revoke`, admin, {}),
        404,
        "not_found",
      );
      const rotated = await h.call("POST", `/admin/v1/tenants/keyed/keys/${prefix}/rotate`, admin, {});
      assert.equal(rotated.status, 201, rotated.body);
      const fresh = rotated.json<{ key: string; prefix: string; scopes: string[] }>();
      assert.deepEqual(fresh.scopes, ["exports:read"]);
      const list = (await h.call("GET", "/admin/v1/tenants/keyed/keys", admin)).json<{
        data: { prefix: string; revoked_at: string | null; key?: string }[];
      }>().data;
      assert.deepEqual(
        list.map((k) => [k.prefix, k.revoked_at !== null, "key" in k]),
        [
          [prefix, true, false],
          [fresh.prefix, false, false],
        ],
      );
      assert.equal(
        (await h.call("POST", `/admin/v1/tenants/keyed/keys/${fresh.prefix}/revoke`, admin, {})).status,
        204,
      );
      await waitFor(
        async () => (await h.call("GET", "/v1/exports", fresh.key)).status,
        (s) => s === 401,
        5000,
      );
      const actions = (await h.call("GET", "/admin/v1/audit?tenant=keyed", admin))
        .json<{ data: { action: string }[] }>()
        .data.map((e) => e.action);
      assert.deepEqual(actions, ["api_key.revoke", "api_key.rotate", "api_key.create", "tenant.create"]);
    });

    test("acting for a tenant: only with admin:act, as that tenant, logged with the operator's actor", async () => {
      const actor = await h.operatorKey(["admin:act"]);
      const actorPrefix = actor.split("_")[1];
      const reader = await h.operatorKey(["admin:read"]);
      const as = (tenant: string) => ({ "x-exportd-tenant": tenant });
      const created = await h.call("POST", "/v1/exports", actor, JSON.parse(createBody), as("acme"));
      assert.equal(created.status, 202, created.body);
      const id = created.json<{ id: string }>().id;
      // It is acme's export: acme's own key sees it.
      assert.equal((await h.call("GET", `/v1/exports/${id}`, tenantKey)).status, 200);
      assert.equal((await h.call("GET", `/v1/exports/${id}`, actor, undefined, as("acme"))).status, 200);
      await h.call("POST", "/admin/v1/tenants", TOKEN, { name: "globex" });
      assertError(await h.call("GET", `/v1/exports/${id}`, actor, undefined, as("globex")), 404, "not_found");
      const line = h.logs.find((l) => l.msg === "export queued" && l.export_id === id);
      assert.equal(line?.actor, `operator:${actorPrefix}`);
      const request = h.logs
        .filter((l) => l.msg === "request" && l.method === "POST" && l.path === "/v1/exports")
        .at(-1);
      assert.equal(request?.actor, `operator:${actorPrefix}`);
      const keyLine =
        (await h.call("GET", "/v1/exports", tenantKey)) && h.logs.filter((l) => l.msg === "request").at(-1);
      assert.match(String(keyLine?.actor), /^key:[a-z0-9]{10}$/);

      assertError(
        await h.call("GET", "/v1/exports", reader, undefined, as("acme")),
        403,
        "insufficient_scope",
      );
      assertError(
        await h.call("GET", "/v1/exports", tenantKey, undefined, as("acme")),
        400,
        "tenant_header_not_allowed",
      );
      assertError(await h.call("GET", "/v1/exports", actor, undefined, as("nobody")), 404, "unknown_tenant");
      // A name longer than any tenant's is not looked up nor echoed back (it was, all 12,000 bytes).
      const huge = assertError(
        await h.call("GET", "/v1/exports", actor, undefined, as("a".repeat(12_000))),
        404,
        "unknown_tenant",
      );
      assert.ok(JSON.stringify(huge).length < 1_000, JSON.stringify(huge).slice(0, 300));
      // Two header lines are ambiguous (Node joined them as "acme, globex": unknown_tenant) → 400.
      // (Node's client sends an array value as one line each; the helper's type says string.)
      const twice = { "x-exportd-tenant": ["acme", "globex"] } as unknown as Record<string, string>;
      const ambiguous = assertError(
        await h.call("GET", "/v1/exports", actor, undefined, twice),
        400,
        "invalid_request",
      );
      assert.equal(ambiguous.error.details[0]?.field, "x-exportd-tenant");
      assertError(
        await h.call("GET", "/v1/exports", tenantKey, undefined, twice),
        400,
        "tenant_header_not_allowed",
      );
      // Without the header, the bootstrap token gets what an operator key gets (it got 401, as if
      // it were a tenant key that is not valid).
      const withoutHeader = assertError(await h.call("GET", "/v1/exports", actor), 400, "invalid_request");
      const bootstrapWithout = assertError(await h.call("GET", "/v1/exports", TOKEN), 400, "invalid_request");
      assert.deepEqual(bootstrapWithout.error.details, withoutHeader.error.details);
      assert.equal(bootstrapWithout.error.message, withoutHeader.error.message);
      assert.equal(
        (await h.call("GET", "/v1/exports", TOKEN, undefined, as("acme"))).status,
        200,
        "bootstrap acts",
      );
      await h.call("POST", "/admin/v1/tenants/globex/disable", TOKEN, {});
      // The tenant named in the header is read through a one-second cache, as a key's tenant is.
      const refused = await waitFor(
        () => h.call("GET", "/v1/exports", actor, undefined, as("globex")),
        (r) => r.status === 403,
        5000,
      );
      assertError(refused, 403, "tenant_disabled");
    });

    test("support views and maintenance: exports of any tenant, cancel one, maintenance on and off", async () => {
      const admin = await h.operatorKey(["admin:read", "admin:write"]);
      const created = (await h.call("POST", "/v1/exports", tenantKey, JSON.parse(createBody))).json<{
        id: string;
      }>();
      const list = await h.call("GET", "/admin/v1/exports?tenant=acme&status=queued", admin);
      const rows = list.json<{ data: { tenant: string; export: { id: string; status: string } }[] }>().data;
      assert.ok(rows.some((r) => r.export.id === created.id && r.tenant === "acme"));
      assert.ok(rows.every((r) => r.export.status === "queued"));
      const canceled = await h.call("POST", `/admin/v1/exports/${created.id}/cancel`, admin, {});
      assert.equal(canceled.json<{ export: { status: string } }>().export.status, "canceled");
      assertError(
        await h.call("POST", `/admin/v1/exports/${created.id}/cancel`, admin, {}),
        409,
        "not_cancellable",
      );
      const on = await h.call("PUT", "/admin/v1/maintenance", admin, {
        enabled: true,
        retry_after_seconds: 60,
      });
      assert.equal(on.json<{ enabled: boolean }>().enabled, true);
      await waitFor(
        async () => (await h.call("POST", "/v1/exports", tenantKey, JSON.parse(createBody))).status,
        (s) => s === 503,
        5000,
      );
      // The operator API is no write of the public API: it keeps working.
      assert.equal((await h.call("PUT", "/admin/v1/maintenance", admin, { enabled: false })).status, 200);
      const actions = (await h.call("GET", "/admin/v1/audit?limit=3", admin))
        .json<{ data: { action: string }[] }>()
        .data.map((e) => e.action);
      assert.deepEqual(actions, ["maintenance.off", "maintenance.on", "export.cancel"]);
    });
  });
}

describe("the built binary: EXPORTD_ADMIN_PORT and the CLI", () => {
  test("the operator API only on its own listener; CLI commands on the same store", async () => {
    const adminPort = await freePort();
    const server = await startServer({
      env: { EXPORTD_ADMIN_PORT: String(adminPort), EXPORTD_ADMIN_TOKEN: TOKEN, EXPORTD_ROLE: "api" },
    });
    const adminBase = `http://127.0.0.1:${adminPort}`;
    const opKey = cli(server.dataDir, [
      "operator-keys",
      "create",
      "--scopes",
      "admin:read,admin:write",
      "--name",
      "ops",
    ])
      .trim()
      .split("\n")
      .at(-1) as string;
    assert.match(opKey, /^exo_[a-z0-9]{10}_/);
    for (const key of [TOKEN, opKey]) {
      assertError(await rawRequest(server.url, "GET", "/admin/v1/tenants", json(key)), 404, "not_found");
      assert.equal((await rawRequest(adminBase, "GET", "/admin/v1/tenants", json(key))).status, 200);
    }
    const tenantKey = cli(server.dataDir, ["keys", "create", "--tenant", "acme"])
      .trim()
      .split("\n")
      .at(-1) as string;
    assertError(await rawRequest(adminBase, "GET", "/v1/exports", json(tenantKey)), 404, "not_found");
    assert.equal((await rawRequest(server.url, "GET", "/v1/exports", json(tenantKey))).status, 200);
    const doc = (await rawRequest(server.url, "GET", "/openapi.json")).json<{
      paths: Record<string, unknown>;
    }>();
    assert.ok(
      !Object.keys(doc.paths).some((p) => p.startsWith("/admin")),
      "the public document has no operator route",
    );
    const adminDoc = (await rawRequest(adminBase, "GET", "/openapi.json")).json<{
      paths: Record<string, unknown>;
    }>();
    assert.ok(Object.keys(adminDoc.paths).some((p) => p.startsWith("/admin/v1/tenants")));

    // CLI parity: the same operations, audited as cli:<user>.
    assert.match(cli(server.dataDir, ["tenants", "get", "acme"]), /^acme {2}plan default/);
    assert.match(cli(server.dataDir, ["tenants", "disable", "acme"]), /DISABLED/);
    const refused = await waitFor(
      () => rawRequest(server.url, "GET", "/v1/exports", json(tenantKey)),
      (r) => r.status === 403,
      5000,
    );
    assertError(refused, 403, "tenant_disabled");
    cli(server.dataDir, ["tenants", "enable", "acme"]);
    assert.match(cli(server.dataDir, ["support", "list", "--tenant", "acme"]), /^$/);
    assert.throws(() => cli(server.dataDir, ["tenants", "delete", "acme"]), /--yes/);
    assert.match(
      cli(server.dataDir, ["tenants", "delete", "acme", "--yes"]),
      /Deleted tenant acme: 0 export\(s\)/,
    );
    const audit = cli(server.dataDir, ["audit", "list", "--tenant", "acme"]);
    const lines = audit.trim().split("\n");
    assert.deepEqual(
      lines.map((l) => l.split(/ {2}/)[2]),
      ["tenant.delete", "tenant.disable", "tenant.enable", "tenant.disable", "api_key.create"],
    );
    assert.ok(
      lines.every((l) => /^\S+ {2}cli:\S+ {2}/.test(l)),
      audit,
    );
    const listed = await rawRequest(
      adminBase,
      "GET",
      "/admin/v1/audit?action=operator_key.create",
      json(opKey),
    );
    assert.match(listed.json<{ data: { actor: string }[] }>().data[0]?.actor ?? "", /^cli:/);
    const prefix = opKey.split("_")[1] as string;
    assert.match(cli(server.dataDir, ["operator-keys", "revoke", prefix]), /Revoked/);
    await waitFor(
      async () => (await rawRequest(adminBase, "GET", "/admin/v1/tenants", json(opKey))).status,
      (s) => s === 404,
      5000,
    );
    await server.stop();
  });
});
