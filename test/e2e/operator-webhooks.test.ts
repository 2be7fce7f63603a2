/**
 * Product-wide webhook endpoints through the operator API, end to end over real HTTP on SQLite and
 * PostgreSQL: an endpoint created with the bootstrap token receives the events of two tenants,
 * signed with its secret; its delivery log, any tenant's event, rotation (both secrets sign),
 * redelivery, disable, delete; the troubled view across tenants; every write in the audit log
 * without a secret; tenant keys answered 404.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { listen } from "../helpers/http.js";
import { createTestDatabase, type TestDatabase } from "../helpers/postgres.js";
import { api } from "../helpers/server-process.js";
import { pastMidnight, startTestService, type TestService, waitFor } from "../helpers/service.js";
import { assertSigned, Receiver } from "../helpers/webhook-receiver.js";

const TOKEN = "bootstrap-token-for-webhook-tests-0123456789";
const HOUR = 3_600_000;
const ENV = {
  EXPORTD_ADMIN_TOKEN: TOKEN,
  EXPORTD_WEBHOOK_ALLOW_HTTP: "true",
  EXPORTD_WEBHOOK_ALLOW_NETWORKS: "127.0.0.0/8",
  EXPORTD_WEBHOOK_RETRY_SCALE: "0.004",
  EXPORTD_WEBHOOK_TIMEOUT_SECONDS: "0.5",
  EXPORTD_WORKER_POLL_MS: "200",
};

/** The fields of the answers these tests read. */
interface Answer {
  id: string;
  secret: string;
  enabled: boolean;
  disabled_reason: string | null;
  previous_secret_expires_at: string | null;
  tenant_id: string | null;
  endpoint: { id: string; failing_since: string | null };
  deliveries: { endpoint_id: string; state: string; event_id: string }[];
  data: Answer[];
  action: string;
  actor: string;
  target: string;
  before: unknown;
  after: unknown;
  error: { code: string };
}

function suite(engine: "sqlite" | "postgres") {
  describe(`product-wide webhooks through the operator API on ${engine}`, () => {
    let db: TestDatabase | null = null;
    let svc: TestService;
    let base = "";
    const receivers: Receiver[] = [];
    const receiver = async (fallback?: { status: number }) => {
      const r = await new Receiver().start();
      if (fallback) r.fallback = fallback;
      receivers.push(r);
      return r;
    };
    const call = (key: string, method: string, path: string, body?: unknown) =>
      api(base, key).request<Answer>(method, path, body);
    const exportOf = async (key: string) => {
      const to = pastMidnight();
      const res = await call(key, "POST", "/v1/exports", {
        dataset: "events",
        from: new Date(to - HOUR).toISOString(),
        to: new Date(to).toISOString(),
        format: "csv",
      });
      assert.equal(res.status, 202, res.text);
      return res.json.id;
    };

    before(async () => {
      db = engine === "postgres" ? await createTestDatabase() : null;
      svc = await startTestService({ ...ENV, ...(db ? { EXPORTD_DATABASE_URL: db.url } : {}) });
      base = await listen(svc);
    });
    after(async () => {
      await Promise.all(receivers.map((r) => r.stop()));
      await svc.dispose();
      await db?.dispose();
    });

    test("one endpoint gets both tenants' events, signed; rotate, redeliver, disable, delete — each audited, no secret in the log", async () => {
      const alpha = await svc.key("alpha");
      const beta = await svc.key("beta");
      const r = await receiver();
      const W = "/admin/v1/webhook_endpoints";

      // Tenant keys never reach the operator routes.
      assert.equal((await call(alpha, "POST", W, { url: r.url })).status, 404);
      assert.equal((await call(alpha, "GET", W)).status, 404);

      const created = await call(TOKEN, "POST", W, { url: r.url, events: ["export.succeeded"] });
      assert.equal(created.status, 201, created.text);
      const ep = created.json;
      assert.match(ep.secret, /^whsec_[A-Za-z0-9+/]{43}=$/);
      assert.equal(created.headers.get("location"), `${W}/${ep.id}`);
      const got = await call(TOKEN, "GET", `${W}/${ep.id}`);
      assert.equal(got.status, 200);
      assert.equal(got.json.secret, undefined, "the secret is shown only at create");
      assert.deepEqual(
        (await call(TOKEN, "GET", W)).json.data.map((e) => e.id),
        [ep.id],
      );
      // A tenant does not see the product-wide endpoint among its own.
      assert.deepEqual((await call(alpha, "GET", "/v1/webhook_endpoints")).json.data, []);
      assert.equal((await call(alpha, "GET", `/v1/webhook_endpoints/${ep.id}`)).status, 404);

      await Promise.all([exportOf(alpha), exportOf(beta)]);
      // At least once each: an answer read after the deliverer's timeout is sent again.
      await waitFor(
        () => r.distinct("export.succeeded").length,
        (n) => n >= 2,
      );
      const events = r.distinct("export.succeeded");
      assert.deepEqual(events.map((x) => x.json.tenant?.name).sort(), ["alpha", "beta"]);
      for (const x of events) assertSigned(ep.secret, x);
      const alphaEvent = events.find((x) => x.json.tenant?.name === "alpha")!;

      // Any tenant's event with its delivery to the product-wide endpoint; the other tenant gets 404.
      const event = await call(TOKEN, "GET", `/admin/v1/webhook_events/${alphaEvent.id}`);
      assert.equal(event.status, 200, event.text);
      assert.equal(event.json.deliveries[0]?.endpoint_id, ep.id);
      await waitFor(
        async () =>
          (await call(TOKEN, "GET", `/admin/v1/webhook_events/${alphaEvent.id}`)).json.deliveries[0]?.state,
        (s) => s === "delivered",
      );
      assert.equal((await call(beta, "GET", `/v1/webhook_events/${alphaEvent.id}`)).status, 404);
      const log = await call(TOKEN, "GET", `${W}/${ep.id}/deliveries`);
      assert.equal(log.json.data.length, 2);

      // Rotation: the new secret and the old one both sign a test event.
      const rotated = await call(TOKEN, "POST", `${W}/${ep.id}/rotate_secret`);
      assert.equal(rotated.status, 200);
      assert.notEqual(rotated.json.secret, ep.secret);
      assert.ok(rotated.json.previous_secret_expires_at);
      const queued = await call(TOKEN, "POST", `${W}/${ep.id}/test`);
      assert.equal(queued.status, 202);
      const testEvent = await waitFor(
        () => r.received.find((x) => x.id === queued.json.id),
        (x) => x !== undefined,
      );
      assertSigned(rotated.json.secret, testEvent!);
      assertSigned(ep.secret, testEvent!);

      // Redelivery: the same webhook-id again.
      const sent = r.received.filter((x) => x.id === alphaEvent.id).length;
      assert.equal(
        (await call(TOKEN, "POST", `${W}/${ep.id}/redeliver`, { event_id: alphaEvent.id })).status,
        202,
      );
      await waitFor(
        () => r.received.filter((x) => x.id === alphaEvent.id).length,
        (n) => n > sent,
      );

      const changed = await call(TOKEN, "PATCH", `${W}/${ep.id}`, { description: "product-wide" });
      assert.equal(changed.status, 200);
      const disabled = await call(TOKEN, "POST", `${W}/${ep.id}/disable`);
      assert.equal(disabled.json.enabled, false);
      assert.equal(disabled.json.disabled_reason, "manual");
      assert.equal((await call(TOKEN, "POST", `${W}/${ep.id}/enable`)).json.enabled, true);
      assert.equal((await call(TOKEN, "DELETE", `${W}/${ep.id}`)).status, 204);
      assert.equal((await call(TOKEN, "GET", `${W}/${ep.id}`)).status, 404);
      assert.equal((await call(TOKEN, "DELETE", `${W}/${ep.id}`)).status, 404);

      // The audit log: every write, by the bootstrap token, on this endpoint, never a secret.
      const audit = await call(TOKEN, "GET", "/admin/v1/audit?limit=100");
      const mine = audit.json.data.filter((e) => e.target === ep.id);
      assert.deepEqual(mine.map((e) => e.action).reverse(), [
        "webhook_endpoint.create",
        "webhook_endpoint.rotate_secret",
        "webhook_endpoint.test",
        "webhook_endpoint.redeliver",
        "webhook_endpoint.update",
        "webhook_endpoint.disable",
        "webhook_endpoint.enable",
        "webhook_endpoint.delete",
      ]);
      assert.ok(mine.every((e) => e.actor === "bootstrap"));
      assert.ok(!audit.text.includes("whsec_"), "no secret in the audit log");
      assert.ok(!audit.text.includes(ep.secret.slice(6, 20)));
      const update = mine.find((e) => e.action === "webhook_endpoint.update")!;
      assert.equal((update.before as { description: string }).description, "");
      assert.equal((update.after as { description: string }).description, "product-wide");
      assert.equal(mine.find((e) => e.action === "webhook_endpoint.delete")!.after as unknown, null);
    });

    test("troubled endpoints across tenants: a tenant's failing endpoint shows with its tenant", async () => {
      const gamma = await svc.key("gamma");
      const failing = await receiver({ status: 500 });
      const made = await call(gamma, "POST", "/v1/webhook_endpoints", { url: failing.url });
      assert.equal(made.status, 201, made.text);
      assert.equal((await call(gamma, "POST", `/v1/webhook_endpoints/${made.json.id}/test`)).status, 202);
      const troubled = await waitFor(
        async () => (await call(TOKEN, "GET", "/admin/v1/webhook_endpoints/troubled")).json.data,
        (list) => list.some((t) => t.endpoint.id === made.json.id),
      );
      const entry = troubled.find((t) => t.endpoint.id === made.json.id)!;
      assert.ok(entry.endpoint.failing_since);
      assert.equal(typeof entry.tenant_id, "string");
      assert.equal((await call(gamma, "GET", "/admin/v1/webhook_endpoints/troubled")).status, 404);
      // The operator manages product-wide endpoints only: a tenant's is not found there.
      assert.equal((await call(TOKEN, "GET", `/admin/v1/webhook_endpoints/${made.json.id}`)).status, 404);
    });
  });
}

suite("sqlite");
suite("postgres");
