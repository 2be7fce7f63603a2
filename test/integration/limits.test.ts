/**
 * Limits a public API needs: per-key rate limits, per-tenant queue and running caps (with queue
 * positions), Idempotency-Key (also under concurrency), maintenance mode and plan-gated datasets.
 */
import assert from "node:assert/strict";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { pino } from "pino";
import { loadConfig } from "../../src/config/index.js";
import { newExport } from "../../src/domain/export.js";
import { newId } from "../../src/domain/ids.js";
import { buildApp } from "../../src/http/app.js";
import { Metrics } from "../../src/metrics/metrics.js";
import { LocalObjectStore } from "../../src/object-store/local.js";
import { LinkSigner } from "../../src/object-store/signing.js";
import { DEMO_EVENTS_DESCRIPTOR, DemoEventsDataset } from "../../src/sources/demo-events.js";
import { DatasetRegistry } from "../../src/sources/registry.js";
import { MAINTENANCE_SETTING } from "../../src/usecases/maintenance.js";
import { listen, type RawResponse, rawRequest } from "../helpers/http.js";
import { pastMidnight, startTestService, type TestService } from "../helpers/service.js";

const to = pastMidnight();
const body = (extra: Record<string, unknown> = {}) =>
  JSON.stringify({
    dataset: "events",
    from: new Date(to - 3_600_000).toISOString(),
    to: new Date(to).toISOString(),
    ...extra,
  });
const headers = (key: string, extra: Record<string, string> = {}) => ({
  authorization: `Bearer ${key}`,
  "content-type": "application/json",
  ...extra,
});

function code(res: RawResponse): string | undefined {
  return res.status >= 400 ? res.json<{ error: { code: string } }>().error.code : undefined;
}

describe("rate limits per key", () => {
  let svc: TestService;
  let base: string;
  before(async () => {
    svc = await startTestService({ EXPORTD_ROLE: "api" });
    base = await listen(svc);
  });
  after(() => svc.dispose());

  test("past the tenant's budget → 429 rate_limited with Retry-After and RateLimit headers; per key", async () => {
    const key = await svc.key("limited");
    await svc.store.updateTenant("limited", { overrides: { requestsPerMinute: 5 } });
    const other = await svc.key("unlimited");
    const answers: RawResponse[] = [];
    for (let i = 0; i < 7; i++) answers.push(await rawRequest(base, "GET", "/v1/exports", headers(key)));
    assert.deepEqual(
      answers.map((r) => r.status),
      [200, 200, 200, 200, 200, 429, 429],
    );
    assert.equal(answers[0]!.headers["ratelimit-limit"], "5");
    assert.equal(answers[0]!.headers["ratelimit-remaining"], "4");
    const limited = answers[5]!;
    assert.equal(code(limited), "rate_limited");
    const retryAfter = Number(limited.headers["retry-after"]);
    assert.ok(retryAfter >= 1 && retryAfter <= 60, `Retry-After ${retryAfter}`);
    assert.equal(limited.headers["ratelimit-remaining"], "0");
    // Another tenant, and another key of the same tenant, have budgets of their own.
    assert.equal((await rawRequest(base, "GET", "/v1/exports", headers(other))).status, 200);
    const second = await svc.key("limited");
    assert.equal((await rawRequest(base, "GET", "/v1/exports", headers(second))).status, 200);
  });

  test("concurrent requests: exactly the budget passes", async () => {
    const key = await svc.key("burst");
    await svc.store.updateTenant("burst", { overrides: { requestsPerMinute: 10 } });
    const answers = await Promise.all(
      Array.from({ length: 25 }, () => rawRequest(base, "GET", "/v1/datasets", headers(key))),
    );
    assert.equal(answers.filter((r) => r.status === 200).length, 10);
    assert.equal(answers.filter((r) => code(r) === "rate_limited").length, 15);
  });
});

describe("queue caps and idempotency", () => {
  let svc: TestService;
  let base: string;
  before(async () => {
    // API role: nothing runs, so created exports stay queued.
    svc = await startTestService({ EXPORTD_ROLE: "api" });
    base = await listen(svc);
  });
  after(() => svc.dispose());

  test("past max_queued → 429 too_many_exports; queued exports show their place", async () => {
    const key = await svc.key("queue");
    await svc.store.updateTenant("queue", { overrides: { maxQueued: 3 } });
    const made: RawResponse[] = [];
    for (let i = 0; i < 4; i++)
      made.push(await rawRequest(base, "POST", "/v1/exports", headers(key), body()));
    assert.deepEqual(
      made.map((r) => r.status),
      [202, 202, 202, 429],
    );
    assert.equal(code(made[3]!), "too_many_exports");
    assert.ok(Number(made[3]!.headers["retry-after"]) > 0);
    const positions = [];
    for (const r of made.slice(0, 3)) {
      const id = r.json<{ id: string }>().id;
      const view = (await rawRequest(base, "GET", `/v1/exports/${id}`, headers(key))).json<{
        queue_position: number;
      }>();
      positions.push(view.queue_position);
    }
    assert.deepEqual(positions, [1, 2, 3]);
    // Canceling the first frees a place and moves the others up.
    const first = made[0]!.json<{ id: string }>().id;
    assert.equal((await rawRequest(base, "POST", `/v1/exports/${first}/cancel`, headers(key))).status, 200);
    const second = made[1]!.json<{ id: string }>().id;
    const view = (await rawRequest(base, "GET", `/v1/exports/${second}`, headers(key))).json<{
      queue_position: number;
    }>();
    assert.equal(view.queue_position, 1);
    assert.equal((await rawRequest(base, "POST", "/v1/exports", headers(key), body())).status, 202);
  });

  test("concurrent creates never pass max_queued", async () => {
    const key = await svc.key("queue-race");
    await svc.store.updateTenant("queue-race", { overrides: { maxQueued: 4 } });
    const answers = await Promise.all(
      Array.from({ length: 12 }, () => rawRequest(base, "POST", "/v1/exports", headers(key), body())),
    );
    assert.equal(answers.filter((r) => r.status === 202).length, 4);
    assert.equal(answers.filter((r) => code(r) === "too_many_exports").length, 8);
  });

  test("Idempotency-Key: same body → same export; other body → 409; key order does not matter", async () => {
    const key = await svc.key("idem");
    const idem = { "idempotency-key": "order-42" };
    const first = await rawRequest(
      base,
      "POST",
      "/v1/exports",
      headers(key, idem),
      body({ format: "jsonl" }),
    );
    assert.equal(first.status, 202);
    assert.equal(first.headers["idempotent-replayed"], undefined);
    const id = first.json<{ id: string }>().id;
    // The same fields, written in another order and with other spacing.
    const fields = JSON.parse(body({ format: "jsonl" })) as Record<string, unknown>;
    const reordered = JSON.stringify(Object.fromEntries(Object.entries(fields).reverse()), null, 2);
    assert.notEqual(reordered, body({ format: "jsonl" }));
    const again = await rawRequest(base, "POST", "/v1/exports", headers(key, idem), reordered);
    assert.equal(again.status, 202);
    assert.equal(again.headers["idempotent-replayed"], "true");
    assert.equal(again.json<{ id: string }>().id, id);
    assert.equal(again.headers.location, `/v1/exports/${id}`);
    const conflict = await rawRequest(
      base,
      "POST",
      "/v1/exports",
      headers(key, idem),
      body({ format: "csv" }),
    );
    assert.equal(code(conflict), "idempotency_conflict");
    assert.equal(conflict.status, 409);
    // Keys belong to a tenant: the same key elsewhere is another request.
    const other = await svc.key("idem-other");
    const elsewhere = await rawRequest(
      base,
      "POST",
      "/v1/exports",
      headers(other, idem),
      body({ format: "jsonl" }),
    );
    assert.notEqual(elsewhere.json<{ id: string }>().id, id);
  });

  test("Idempotency-Key: concurrent POSTs with one key create one export", async () => {
    const key = await svc.key("idem-race");
    const idem = { "idempotency-key": newId() };
    const answers = await Promise.all(
      Array.from({ length: 10 }, () => rawRequest(base, "POST", "/v1/exports", headers(key, idem), body())),
    );
    assert.ok(answers.every((r) => r.status === 202));
    const ids = new Set(answers.map((r) => r.json<{ id: string }>().id));
    assert.equal(ids.size, 1);
    assert.equal(answers.filter((r) => r.headers["idempotent-replayed"] === "true").length, 9);
    const list = (await rawRequest(base, "GET", "/v1/exports", headers(key))).json<{ data: unknown[] }>();
    assert.equal(list.data.length, 1);
  });

  test("Idempotency-Key: expires after 24 hours", async () => {
    const tenant = await svc.store.ensureTenant("idem-ttl", 0);
    const idem = { key: "k", requestHash: "h" };
    const at = Date.now() - 25 * 3_600_000;
    const r1 = await svc.store.createExport(
      newExport({ id: newId(), tenantId: tenant.id, request: sampleRequest(), now: at, estimatedRows: null }),
      { maxQueued: 100, idempotency: idem },
    );
    assert.equal(r1.kind, "created");
    const r2 = await svc.store.createExport(
      newExport({
        id: newId(),
        tenantId: tenant.id,
        request: sampleRequest(),
        now: Date.now(),
        estimatedRows: null,
      }),
      { maxQueued: 100, idempotency: idem },
    );
    assert.equal(r2.kind, "created", "a day-old key is free again");
  });

  test("an invalid Idempotency-Key → 400 naming the header", async () => {
    const key = await svc.key("idem-bad");
    const res = await rawRequest(
      base,
      "POST",
      "/v1/exports",
      headers(key, { "idempotency-key": "x".repeat(300) }),
      body(),
    );
    assert.equal(code(res), "invalid_request");
  });
});

function sampleRequest() {
  return {
    dataset: "events",
    from: to - 3_600_000,
    to,
    filters: {},
    columns: ["id"],
    format: "csv" as const,
    compression: "gzip" as const,
    csv: { delimiter: ",", header: true, bom: false },
    timezone: "UTC",
    partMaxRows: 1000,
  };
}

describe("running cap", () => {
  test("a tenant at max_running waits; other tenants are not held up", async () => {
    const svc = await startTestService({ EXPORTD_ROLE: "api" });
    try {
      const { store } = svc;
      const a = await store.ensureTenant("busy", 0);
      const b = await store.ensureTenant("idle", 0);
      await store.updateTenant("busy", { overrides: { maxRunning: 1 } });
      const t = Date.now();
      for (const [tenantId, n] of [
        [a.id, 0],
        [a.id, 1],
        [b.id, 2],
      ] as const) {
        await store.insertExport(
          newExport({ id: newId(), tenantId, request: sampleRequest(), now: t + n, estimatedRows: null }),
        );
      }
      const lease = (owner: string) => ({ owner, now: t + 10, leaseMs: 60_000 });
      assert.equal((await store.claimExport(lease("w1")))?.tenantId, a.id);
      assert.equal(
        (await store.claimExport(lease("w2")))?.tenantId,
        b.id,
        "busy's second export waits; idle's runs",
      );
      assert.equal(await store.claimExport(lease("w3")), null);
      // Once busy's lease is gone (its worker died), the running count drops and the export may run.
      assert.equal(
        (await store.claimExport({ owner: "w4", now: t + 70_000, leaseMs: 60_000 }))?.tenantId,
        a.id,
      );
    } finally {
      await svc.dispose();
    }
  });
});

describe("maintenance", () => {
  let now = Date.now();
  let svc: TestService;
  let base: string;
  before(async () => {
    svc = await startTestService({ EXPORTD_ROLE: "api" }, () => now);
    base = await listen(svc);
  });
  after(() => svc.dispose());

  test("switched on at run time: writes → 503 maintenance with Retry-After, reads work; off again", async () => {
    const key = await svc.key("m");
    const created = await rawRequest(base, "POST", "/v1/exports", headers(key), body());
    assert.equal(created.status, 202);
    await svc.store.setSetting(
      MAINTENANCE_SETTING,
      JSON.stringify({ enabled: true, retryAfterSeconds: 120, message: "" }),
    );
    now += 2500;
    const refused = await rawRequest(base, "POST", "/v1/exports", headers(key), body());
    assert.equal(refused.status, 503);
    assert.equal(code(refused), "maintenance");
    assert.equal(refused.headers["retry-after"], "120");
    const id = created.json<{ id: string }>().id;
    assert.equal(
      code(await rawRequest(base, "POST", `/v1/exports/${id}/cancel`, headers(key))),
      "maintenance",
    );
    assert.equal((await rawRequest(base, "GET", `/v1/exports/${id}`, headers(key))).status, 200);
    assert.equal((await rawRequest(base, "GET", "/v1/exports", headers(key))).status, 200);
    assert.equal((await rawRequest(base, "GET", "/healthz")).status, 200);
    await svc.store.setSetting(MAINTENANCE_SETTING, null);
    now += 2500;
    assert.equal((await rawRequest(base, "POST", "/v1/exports", headers(key), body())).status, 202);
  });

  test("forced: a write whose path is percent-encoded (routed to the same route) is paused too", async () => {
    const forced = await startTestService({ EXPORTD_ROLE: "api", EXPORTD_MAINTENANCE: "true" });
    try {
      const key = await forced.key("m");
      for (const url of ["/%761/exports", "/v1/%65xports", "/v1%2Fexports"]) {
        const res = await forced.app!.inject({ method: "POST", url, headers: headers(key), payload: body() });
        assert.notEqual(res.statusCode, 202, `${url} created an export in maintenance`);
        if (res.statusCode !== 404)
          assert.equal(res.json<{ error: { code: string } }>().error.code, "maintenance", url);
      }
    } finally {
      await forced.dispose();
    }
  });

  test("forced by configuration", async () => {
    const forced = await startTestService({ EXPORTD_ROLE: "api", EXPORTD_MAINTENANCE: "true" });
    try {
      const key = await forced.key("m");
      const res = await forced.app!.inject({
        method: "POST",
        url: "/v1/exports",
        headers: headers(key),
        payload: body(),
      });
      assert.equal(res.statusCode, 503);
      assert.equal(res.headers["retry-after"], "300");
    } finally {
      await forced.dispose();
    }
  });
});

describe("plans", () => {
  test("a dataset outside the tenant's plan → 403 plan_required, and it is not listed", async () => {
    const svc = await startTestService({ EXPORTD_ROLE: "api" });
    try {
      await svc.store.upsertPlan(
        { name: "enterprise", limits: { maxRunning: 5, maxQueued: 50, requestsPerMinute: 1000 } },
        0,
      );
      const premium = new DemoEventsDataset();
      Object.assign(premium, {
        descriptor: { ...DEMO_EVENTS_DESCRIPTOR, name: "audit_log", plans: ["enterprise"] },
      });
      const app = await buildApp(
        {
          config: loadConfig({ EXPORTD_DATA_DIR: svc.dataDir }),
          store: svc.store,
          storage: new LocalObjectStore(
            path.join(svc.dataDir, "objects"),
            new LinkSigner("s".repeat(32)),
            "http://x",
          ),
          datasets: new DatasetRegistry([new DemoEventsDataset(), premium]),
          signer: null,
          filesRoot: null,
          metrics: new Metrics(() => svc.store.countExportsByStatus()),
          redis: null,
          clock: Date.now,
          onExportQueued: () => undefined,
        },
        pino({ level: "silent" }),
      );
      const basic = await svc.key("basic");
      const rich = await svc.key("rich");
      await svc.store.updateTenant("rich", { plan: "enterprise" });
      const create = (key: string) =>
        app.inject({
          method: "POST",
          url: "/v1/exports",
          headers: headers(key),
          payload: body({ dataset: "audit_log" }),
        });
      const refused = await create(basic);
      assert.equal(refused.statusCode, 403);
      assert.equal(refused.json().error.code, "plan_required");
      assert.equal((await create(rich)).statusCode, 202);
      const names = async (key: string) =>
        (await app.inject({ method: "GET", url: "/v1/datasets", headers: headers(key) }))
          .json()
          .data.map((d: { name: string }) => d.name);
      assert.deepEqual(await names(basic), ["events"]);
      assert.deepEqual(await names(rich), ["events", "audit_log"]);
      await app.close();
    } finally {
      await svc.dispose();
    }
  });
});
