/**
 * Webhooks end to end in process, over real HTTP, on SQLite and on PostgreSQL: an in-process
 * exportd (its API listening on a port, its worker and deliverer running) and real receivers.
 * Signatures are checked with the standardwebhooks library and with an independent HMAC; the
 * payload is the status document without links; retries (500s, timeout, receiver down, redirect
 * not followed), 410 disabling, rotation, tenant isolation, redelivery, the delivery log, metrics.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { generateWebhookSecret } from "../../src/domain/webhooks.js";
import { listTroubledEndpoints, listWebhookEndpoints } from "../../src/usecases/webhook-endpoints.js";
import { listen } from "../helpers/http.js";
import { createTestDatabase, type TestDatabase } from "../helpers/postgres.js";
import { api } from "../helpers/server-process.js";
import { pastMidnight, startTestService, type TestService, waitFor } from "../helpers/service.js";
import { assertSigned, type Received, Receiver } from "../helpers/webhook-receiver.js";

const HOUR = 3_600_000;
const ENV = {
  EXPORTD_WEBHOOK_ALLOW_HTTP: "true",
  EXPORTD_WEBHOOK_ALLOW_NETWORKS: "127.0.0.0/8",
  EXPORTD_WEBHOOK_RETRY_SCALE: "0.004",
  EXPORTD_WEBHOOK_TIMEOUT_SECONDS: "0.5",
  EXPORTD_WORKER_POLL_MS: "200",
};

interface PartView {
  rows: number;
  bytes: number;
  sha256: string;
  url: string | null;
  url_expires_at: string | null;
}
interface AttemptView {
  status: number | null;
  error: string;
  response: string | null;
  duration_ms: number;
}
interface DeliveryView {
  state: string;
  event_id: string;
  endpoint_id: string;
  /** Typed as at least three attempts: the tests read the ones they wait for. */
  log: [AttemptView, AttemptView, AttemptView, ...AttemptView[]];
}
/** The fields of the answers these tests read (each answer has some of them). */
interface Answer {
  id: string;
  secret: string;
  status: string;
  enabled: boolean;
  disabled_reason: string | null;
  failing_since: string | null;
  previous_secret_expires_at: string;
  parts: PartView[];
  deliveries: [DeliveryView, ...DeliveryView[]];
  data: { id: string }[] & DeliveryView[];
  error: { code: string; message: string };
}

interface Ctx {
  svc: TestService;
  base: string;
}

function call(ctx: Ctx, key: string, method: string, path: string, body?: unknown) {
  return api(ctx.base, key).request<Answer>(method, path, body);
}

async function createExport(ctx: Ctx, key: string): Promise<string> {
  const to = pastMidnight();
  const res = await call(ctx, key, "POST", "/v1/exports", {
    dataset: "events",
    from: new Date(to - HOUR).toISOString(),
    to: new Date(to).toISOString(),
    format: "csv",
  });
  assert.equal(res.status, 202, JSON.stringify(res.json));
  return res.json.id as string;
}

async function endpoint(ctx: Ctx, key: string, url: string, events?: string[]) {
  const res = await call(ctx, key, "POST", "/v1/webhook_endpoints", { url, ...(events ? { events } : {}) });
  assert.equal(res.status, 201, JSON.stringify(res.json));
  assert.match(res.json.secret, /^whsec_[A-Za-z0-9+/]{43}=$/);
  return res.json;
}

function first<T>(list: T[]): T {
  const [item] = list;
  assert.ok(item !== undefined, "expected one");
  return item;
}

async function deliveries(ctx: Ctx, key: string, id: string) {
  return (await call(ctx, key, "GET", `/v1/webhook_endpoints/${id}/deliveries`)).json.data as DeliveryView[];
}

/**
 * Waits until `count` deliveries of an endpoint are recorded as delivered. A receiver sees the
 * request before the deliverer has read the answer and written the attempt, so a test that
 * asserts on the log (or on what a success clears) waits for this, not for the receiver.
 */
function delivered(ctx: Ctx, key: string, id: string, count = 1) {
  return waitFor(
    () => deliveries(ctx, key, id),
    (d) => d.filter((x) => x.state === "delivered").length >= count,
    60_000,
  );
}

/**
 * Asserts a delivered delivery's attempts against the answers its receiver gave. Every request the
 * receiver saw is an attempt in the log, and the answers the deliverer read appear in the log in the
 * order given. An attempt whose timeout fired first is logged as timed out and retried: a hanging
 * receiver's, and on a loaded machine any — the timer can run before an answer that has arrived is
 * read (the receiver shares this process's event loop). The last attempt is the 2xx that delivered.
 */
function assertAttempts(d: DeliveryView, r: Receiver, delivered = 204) {
  const given = r.received.map((x) => x.answer);
  assert.ok(d.log.length >= given.length, `an attempt per request: ${d.log.length} < ${given.length}`);
  let k = 0;
  for (const a of d.log) {
    if (a.status === null) {
      assert.match(a.error, /timed out/);
      continue;
    }
    while (k < given.length && given[k] !== a.status) k++;
    assert.ok(
      k < given.length,
      `logged ${JSON.stringify(d.log.map((x) => x.status))}, answered ${JSON.stringify(given)}`,
    );
    k++;
  }
  assert.equal(d.log.at(-1)?.status, delivered);
}

function suite(engine: "sqlite" | "postgres") {
  describe(`webhooks on ${engine}`, () => {
    let db: TestDatabase | null = null;
    const ctx = {} as Ctx;
    const receivers: Receiver[] = [];
    const receiver = async () => {
      const r = await new Receiver().start();
      receivers.push(r);
      return r;
    };

    before(async () => {
      db = engine === "postgres" ? await createTestDatabase() : null;
      ctx.svc = await startTestService({ ...ENV, ...(db ? { EXPORTD_DATABASE_URL: db.url } : {}) });
      ctx.base = await listen(ctx.svc);
    });
    after(async () => {
      await Promise.all(receivers.map((r) => r.stop()));
      await ctx.svc.dispose();
      await db?.dispose();
    });

    test("an export's events arrive signed (library and HMAC), with the status document and API links, never a signed link", async () => {
      const key = await ctx.svc.key("acme");
      const r = await receiver();
      const ep = await endpoint(ctx, key, r.url, ["export.created", "export.started", "export.succeeded"]);
      const id = await createExport(ctx, key);
      await delivered(ctx, key, ep.id, 3);
      // Events are delivered concurrently: at least once each, in no guaranteed order.
      const types = r
        .distinct()
        .map((x) => x.json.type)
        .sort();
      assert.deepEqual(types, ["export.created", "export.started", "export.succeeded"]);
      for (const x of r.received) assertSigned(ep.secret, x);
      const ok = r.ofType("export.succeeded")[0]!;
      assert.equal(ok.id, ok.json.id, "webhook-id is the event id");
      assert.equal(ok.json.tenant?.name, "acme");
      const data = ok.json.data as {
        export: { id: string; status: string; parts: PartView[] };
        links: Record<string, string>;
      };
      const status = await call(ctx, key, "GET", `/v1/exports/${id}`);
      assert.equal(data.export.id, id);
      assert.equal(data.export.status, "succeeded");
      assert.deepEqual(
        data.export.parts.map((p) => [p.rows, p.bytes, p.sha256]),
        status.json.parts.map((p) => [p.rows, p.bytes, p.sha256]),
      );
      assert.ok(data.export.parts.every((p) => p.url === null && p.url_expires_at === null));
      assert.ok(!/signature=|X-Amz-Signature/i.test(ok.body), "no signed link in the payload");
      assert.equal(data.links.export, `${ctx.svc.config.publicUrl}/v1/exports/${id}`);
      assert.equal(data.links.download, `${ctx.svc.config.publicUrl}/v1/exports/${id}/download`);
      // The event is readable with its delivery and attempt.
      const event = await call(ctx, key, "GET", `/v1/webhook_events/${ok.id}`);
      assert.equal(event.status, 200);
      assert.equal(event.json.deliveries[0].state, "delivered");
      assert.equal(event.json.deliveries[0].log.at(-1)?.status, 204);
      await call(ctx, key, "DELETE", `/v1/webhook_endpoints/${ep.id}`);
    });

    test("500s then 200: retried with the same webhook-id, every attempt in the log", async () => {
      const key = await ctx.svc.key("retry500");
      const r = await receiver();
      r.script = [{ status: 500, body: "boom" }, { status: 503 }];
      const ep = await endpoint(ctx, key, r.url, ["export.succeeded"]);
      await createExport(ctx, key);
      await delivered(ctx, key, ep.id);
      assert.ok(r.received.length >= 3);
      assert.equal(new Set(r.received.map((x) => x.id)).size, 1, "one webhook-id for every retry");
      for (const x of r.received) assertSigned(ep.secret, x);
      const d = first(await deliveries(ctx, key, ep.id));
      // [500, 503, 204], unless a timeout fired before an answer was read (see assertAttempts).
      assertAttempts(d, r);
      for (const a of d.log) if (a.status === 500) assert.equal(a.response, "boom");
    });

    test("a receiver that never answers times out, one that redirects is not followed; both are retried", async () => {
      const key = await ctx.svc.key("slow");
      const target = await receiver();
      const r = await receiver();
      r.script = ["hang", { status: 302, location: target.url }];
      const ep = await endpoint(ctx, key, r.url, ["export.succeeded"]);
      await createExport(ctx, key);
      await delivered(ctx, key, ep.id);
      const d = first(await deliveries(ctx, key, ep.id));
      assert.equal(d.log[0].status, null);
      assert.match(d.log[0].error, /timed out/);
      assert.ok(d.log[0].duration_ms >= 450);
      assert.equal(target.received.length, 0, "the redirect was not followed");
      // [timeout, 302, 204], unless a timeout fired before an answer was read (see assertAttempts).
      assert.deepEqual(
        r.received.slice(0, 2).map((x) => x.answer),
        [null, 302],
      );
      assertAttempts(d, r);
    });

    test("a receiver down for a while gets the event once it is back", async () => {
      const key = await ctx.svc.key("down");
      const r = await receiver();
      const ep = await endpoint(ctx, key, r.url, ["export.succeeded"]);
      const port = r.port;
      await r.stop();
      await createExport(ctx, key);
      await waitFor(
        () => deliveries(ctx, key, ep.id),
        (d) => (d[0]?.log.length ?? 0) >= 2,
      );
      const down = first(await deliveries(ctx, key, ep.id));
      assert.equal(down.state, "pending");
      assert.match(down.log[0].error, /ECONNREFUSED/);
      await r.start(port);
      await delivered(ctx, key, ep.id);
      assert.equal(r.distinct().length, 1);
      assertSigned(ep.secret, r.received[0]!);
      const ep2 = await call(ctx, key, "GET", `/v1/webhook_endpoints/${ep.id}`);
      assert.equal(ep2.json.failing_since, null, "a success clears failing_since");
    });

    test("410 Gone disables the endpoint", async () => {
      const key = await ctx.svc.key("gone");
      const r = await receiver();
      r.fallback = { status: 410 };
      const ep = await endpoint(ctx, key, r.url, ["export.succeeded"]);
      await createExport(ctx, key);
      const got = await waitFor(
        () => call(ctx, key, "GET", `/v1/webhook_endpoints/${ep.id}`),
        (x) => x.json.enabled === false,
      );
      assert.equal(got.json.disabled_reason, "gone");
      assert.equal(r.distinct().length, 1);
      const d = first(await deliveries(ctx, key, ep.id));
      assert.equal(d.state, "abandoned");
      // A disabled endpoint takes no redelivery; enabled again by hand, it goes out with the same webhook-id.
      const refused = await call(ctx, key, "POST", `/v1/webhook_endpoints/${ep.id}/redeliver`, {
        event_id: d.event_id,
      });
      assert.equal(refused.status, 400);
      r.fallback = { status: 200 };
      assert.equal(
        (await call(ctx, key, "POST", `/v1/webhook_endpoints/${ep.id}/enable`)).json.enabled,
        true,
      );
      const again = await call(ctx, key, "POST", `/v1/webhook_endpoints/${ep.id}/redeliver`, {
        event_id: d.event_id,
      });
      assert.equal(again.status, 202);
      const before = r.received.length;
      await waitFor(
        () => r.received.length,
        (n) => n > before,
      );
      assert.equal(r.received.at(-1)!.id, r.received[0]!.id);
    });

    test("rotating the secret: both the old and the new secret verify for 24 hours", async () => {
      const key = await ctx.svc.key("rotate");
      const r = await receiver();
      const ep = await endpoint(ctx, key, r.url, ["export.succeeded"]);
      const rotated = await call(ctx, key, "POST", `/v1/webhook_endpoints/${ep.id}/rotate_secret`);
      assert.equal(rotated.status, 200);
      assert.notEqual(rotated.json.secret, ep.secret);
      const overlap = Date.parse(rotated.json.previous_secret_expires_at) - Date.now();
      assert.ok(overlap > 23.9 * HOUR && overlap <= 24 * HOUR);
      const test_ = await call(ctx, key, "POST", `/v1/webhook_endpoints/${ep.id}/test`);
      assert.equal(test_.status, 202);
      await waitFor(
        () => r.received.length,
        (n) => n >= 1,
      );
      const x = r.received[0]!;
      assert.equal(x.json.type, "webhook.test");
      assert.equal(x.id, test_.json.id);
      assert.equal(x.signature.split(" ").length, 2);
      assertSigned(rotated.json.secret, x);
      assertSigned(ep.secret, x);
      // The secret is never shown again.
      const read = await call(ctx, key, "GET", `/v1/webhook_endpoints/${ep.id}`);
      assert.equal(read.json.secret, undefined);
    });

    test("tenant isolation: an endpoint never gets another tenant's events, nor can the other tenant see it", async () => {
      const keyA = await ctx.svc.key("tenant-a");
      const keyB = await ctx.svc.key("tenant-b");
      const ra = await receiver();
      const rb = await receiver();
      const a = await endpoint(ctx, keyA, ra.url, ["export.succeeded"]);
      const b = await endpoint(ctx, keyB, rb.url, ["export.succeeded"]);
      const idA = await createExport(ctx, keyA);
      await delivered(ctx, keyA, a.id);
      // An event's deliveries are queued in the write of its status change, all at once: had
      // tenant B's endpoint been chosen, its log would hold a delivery now.
      assert.deepEqual(await deliveries(ctx, keyB, b.id), [], "tenant B's endpoint got nothing of tenant A");
      assert.equal(rb.received.length, 0);
      assert.equal((ra.received[0]!.json.data as { export: { id: string } }).export.id, idA);
      assert.equal((await call(ctx, keyB, "GET", `/v1/webhook_endpoints/${a.id}`)).status, 404);
      assert.equal((await call(ctx, keyB, "GET", `/v1/webhook_endpoints/${a.id}/deliveries`)).status, 404);
      assert.equal((await call(ctx, keyB, "GET", `/v1/webhook_events/${ra.received[0]!.id}`)).status, 404);
      assert.equal((await call(ctx, keyB, "DELETE", `/v1/webhook_endpoints/${a.id}`)).status, 404);
      const listB = await call(ctx, keyB, "GET", "/v1/webhook_endpoints");
      assert.ok(listB.json.data.every((e) => e.id !== a.id));
    });

    test("scopes: reading needs webhooks:read, writing webhooks:write", async () => {
      const readOnly = await ctx.svc.key("scoped", ["exports:read", "webhooks:read"]);
      assert.equal((await call(ctx, readOnly, "GET", "/v1/webhook_endpoints")).status, 200);
      const res = await call(ctx, readOnly, "POST", "/v1/webhook_endpoints", {
        url: "https://example.com/x",
      });
      assert.equal(res.status, 403);
      assert.equal(res.json.error.code, "insufficient_scope");
    });

    test("/metrics shows deliveries by outcome, delivery latency and the outbox depth", async () => {
      const res = await fetch(`${ctx.base}/metrics`);
      const text = await res.text();
      assert.match(text, /exportd_webhook_attempt_seconds_count\{outcome="delivered"\} [1-9]/);
      assert.match(text, /exportd_webhook_attempt_seconds_count\{outcome="retrying"\} [1-9]/);
      assert.match(text, /exportd_webhook_delivery_latency_seconds_count [1-9]/);
      assert.match(text, /exportd_webhook_outbox_depth \d+/);
      assert.match(text, /exportd_webhook_endpoints_disabled_total\{reason="gone"\} 1/);
    });
  });
}

suite("sqlite");
suite("postgres");

describe("webhook URLs that resolve to forbidden addresses are refused at create (400 invalid_webhook_url)", () => {
  let svc: TestService;
  let base: string;
  before(async () => {
    svc = await startTestService({ EXPORTD_WEBHOOK_ALLOW_HTTP: "true" });
    base = await listen(svc);
  });
  after(() => svc.dispose());

  const refused = [
    "http://localhost/hook",
    "http://127.1/hook",
    "http://0x7f000001/hook",
    "http://2130706433/hook",
    "http://0177.0.0.1/hook",
    "http://[::1]/hook",
    "http://169.254.169.254/latest/meta-data",
    "http://[::ffff:127.0.0.1]/hook",
    "http://[fd00:ec2::254]/hook",
    "http://10.1.2.3/hook",
    "http://100.64.0.1/hook",
    "http://[fe80::1]/hook",
    "ftp://example.com/hook",
    "http://user:pass@example.com/hook",
  ];
  for (const url of refused) {
    test(url, async () => {
      const key = await svc.key("ssrf");
      const res = await call({ svc, base }, key, "POST", "/v1/webhook_endpoints", { url });
      assert.equal(res.status, 400, JSON.stringify(res.json));
      assert.equal(res.json.error.code, "invalid_webhook_url");
    });
  }

  test("http is refused unless the operator allows it", async () => {
    const strict = await startTestService({});
    try {
      const b = await listen(strict);
      const key = await strict.key("strict");
      const res = await call({ svc: strict, base: b }, key, "POST", "/v1/webhook_endpoints", {
        url: "http://example.com/hook",
      });
      assert.equal(res.status, 400);
      assert.equal(res.json.error.code, "invalid_webhook_url");
      assert.match(res.json.error.message, /https/);
    } finally {
      await strict.dispose();
    }
  });
});

describe("product-wide endpoints from the configuration, and endpoints failing for days", () => {
  const ctx = {} as Ctx;
  const productWide = new Receiver();
  const secret = generateWebhookSecret();
  before(async () => {
    await productWide.start();
    ctx.svc = await startTestService({
      ...ENV,
      EXPORTD_WEBHOOK_URL: productWide.url,
      EXPORTD_WEBHOOK_SECRET: secret,
      EXPORTD_WEBHOOK_EVENTS: "export.succeeded",
      // 1.7 seconds of failing on every attempt disables an endpoint here (5 days by default).
      EXPORTD_WEBHOOK_DISABLE_AFTER_DAYS: "0.00002",
    });
    ctx.base = await listen(ctx.svc);
  });
  after(async () => {
    await ctx.svc.dispose();
    await productWide.stop();
  });

  test("a product-wide endpoint receives every tenant's events; a tenant's only its own", async () => {
    const keyA = await ctx.svc.key("pw-a");
    const keyB = await ctx.svc.key("pw-b");
    const own = await new Receiver().start();
    try {
      const a = await endpoint(ctx, keyA, own.url, ["export.succeeded"]);
      const ids = [await createExport(ctx, keyA), await createExport(ctx, keyB)];
      await waitFor(
        () => productWide.distinct().length,
        (n) => n >= 2,
      );
      await waitFor(
        () => own.received.length,
        (n) => n >= 1,
      );
      const exportOf = (x: { json: { data: Record<string, unknown> } }) =>
        (x.json.data as { export: { id: string } }).export.id;
      assert.deepEqual(productWide.distinct().map(exportOf).sort(), [...ids].sort());
      assert.deepEqual(
        productWide
          .distinct()
          .map((x) => x.json.tenant?.name)
          .sort(),
        ["pw-a", "pw-b"],
      );
      for (const x of productWide.received) assertSigned(secret, x);
      assert.equal(exportOf(own.received[0] as Received), ids[0]);
      assertSigned(a.secret, own.received[0] as Received);
      // Tenants do not see the product-wide endpoint or its deliveries.
      const list = await call(ctx, keyA, "GET", "/v1/webhook_endpoints");
      assert.deepEqual(
        list.json.data.map((e) => e.id),
        [a.id],
      );
      const event = await call(ctx, keyA, "GET", `/v1/webhook_events/${own.received[0]?.id}`);
      assert.equal(event.json.deliveries.length, 1);
      assert.equal(event.json.deliveries[0].endpoint_id, a.id);
      const operator = await listWebhookEndpoints({ store: ctx.svc.store }, null);
      assert.deepEqual(
        operator.map((e) => [e.id, e.source]),
        [["config:env", "config"]],
      );
    } finally {
      await own.stop();
    }
  });

  test("an endpoint whose every attempt fails for too long is disabled, and the operator sees it", async () => {
    const key = await ctx.svc.key("failing");
    const r = await new Receiver().start();
    r.fallback = { status: 500 };
    try {
      const ep = await endpoint(ctx, key, r.url, ["export.succeeded"]);
      await createExport(ctx, key);
      const got = await waitFor(
        () => call(ctx, key, "GET", `/v1/webhook_endpoints/${ep.id}`),
        (x) => x.json.enabled === false,
      );
      assert.equal(got.json.disabled_reason, "failing");
      assert.ok(r.received.length >= 3);
      const troubled = await listTroubledEndpoints({ store: ctx.svc.store });
      assert.ok(troubled.some((e) => e.id === ep.id && e.disabledReason === "failing"));
      // Counted after the endpoint was disabled (the write the test waited for): wait for the count.
      await waitFor(
        async () => (await fetch(`${ctx.base}/metrics`)).text(),
        (metrics) => /exportd_webhook_endpoints_disabled_total\{reason="failing"\} 1/.test(metrics),
      );
      const d = first(await deliveries(ctx, key, ep.id));
      assert.equal(d.state, "abandoned");
    } finally {
      await r.stop();
    }
  });
});
