/**
 * A progress stream is bound by its credential, not only authorized when it opens: against a
 * listening API server (no worker, so exports stay queued and their streams open), on SQLite and
 * on PostgreSQL, a stream whose tenant the operator disables ends with `event: error`
 * `tenant_disabled`, a revoked key's stream and a revoked operator key's (acting for a tenant) end
 * with `unauthorized`, a sign-in token's stream ends at the token's `exp`, and a stream of an
 * unaffected tenant keeps going until its export is final. The hub checks credentials every
 * CREDENTIAL_CHECK_MS (5 s): the waits are generous, no duration is asserted.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { SignJWT } from "jose";
import { pino } from "pino";
import { ExportdApiError, ExportdClient } from "../../clients/typescript/src/index.js";
import { loadConfig } from "../../src/config/index.js";
import { keyPrefix } from "../../src/domain/api-keys.js";
import { createService, type Service } from "../../src/service.js";
import { issueApiKey, revokeApiKey } from "../../src/usecases/api-keys.js";
import { issueOperatorKey, revokeOperatorKey } from "../../src/usecases/operator-keys.js";
import { createTestDatabase, type TestDatabase } from "../helpers/postgres.js";
import { pastMidnight, tempDir } from "../helpers/service.js";

const ADMIN_TOKEN = "bootstrap-token-0123456789abcdef0123456789";
const HS256_SECRET = "0123456789abcdef0123456789abcdef-stream-secret";
/** A stream's end is waited for this long at most: several credential checks on a loaded machine. */
const END_WITHIN_MS = 60_000;
const to = pastMidnight();
const createBody = {
  dataset: "events",
  from: new Date(to - 3_600_000).toISOString(),
  to: new Date(to).toISOString(),
};

interface StreamEvent {
  event: string;
  // Parsed JSON of the event's data: an export document or an error envelope.
  data: { status?: string; error?: { code: string; message: string; request_id: string } };
}

/** An open progress stream: its events as they come, and whether (and how) it ended. */
class OpenStream {
  readonly events: StreamEvent[] = [];
  /** Resolves with every event once the server ends the stream. */
  readonly ended: Promise<StreamEvent[]>;
  private readonly reader: ReadableStreamDefaultReader<Uint8Array>;

  constructor(
    body: ReadableStream<Uint8Array>,
    readonly exportId: string,
  ) {
    this.reader = body.getReader();
    this.ended = this.read();
  }

  private async read(): Promise<StreamEvent[]> {
    let buffer = "";
    for (;;) {
      const { value, done } = await this.reader.read();
      if (done) return this.events;
      buffer += Buffer.from(value).toString();
      for (let end = buffer.indexOf("\n\n"); end >= 0; end = buffer.indexOf("\n\n")) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const event = /^event: (.*)$/m.exec(block)?.[1];
        const data = /^data: (.*)$/m.exec(block)?.[1];
        if (event && data) this.events.push({ event, data: JSON.parse(data) });
      }
    }
  }

  /** Waits for the server to end the stream (a generous bound: a hung stream fails the test). */
  async end(): Promise<StreamEvent[]> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error("the stream did not end")), END_WITHIN_MS);
    });
    try {
      return await Promise.race([this.ended, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Stops reading (the client leaves). */
  async close(): Promise<void> {
    await this.reader.cancel().catch(() => undefined);
  }
}

/** One API-only server (no worker: exports stay queued) listening on a free port. */
async function apiServer(env: Record<string, string>): Promise<{ service: Service; base: string }> {
  const config = loadConfig({
    EXPORTD_DATA_DIR: tempDir(),
    EXPORTD_ROLE: "api",
    EXPORTD_LOG_LEVEL: "silent",
    EXPORTD_ADMIN_TOKEN: ADMIN_TOKEN,
    EXPORTD_JWT_HS256_SECRET: HS256_SECRET,
    EXPORTD_JWT_TENANT_CLAIM: "tenant",
    ...env,
  });
  const service = await createService(config, pino({ level: "silent" }));
  await service.app!.listen({ port: 0, host: "127.0.0.1" });
  const { port } = service.app!.server.address() as { port: number };
  return { service, base: `http://127.0.0.1:${port}` };
}

/** Creates a (queued) export with these headers and opens its progress stream. */
async function streamOfNewExport(base: string, headers: Record<string, string>): Promise<OpenStream> {
  const created = await fetch(`${base}/v1/exports`, {
    method: "POST",
    headers: { ...headers, "content-type": "application/json" },
    body: JSON.stringify(createBody),
  });
  assert.equal(created.status, 202, await created.clone().text());
  const { id } = (await created.json()) as { id: string };
  return openStream(base, id, headers);
}

async function openStream(base: string, id: string, headers: Record<string, string>): Promise<OpenStream> {
  const res = await fetch(`${base}/v1/exports/${id}/events`, { headers });
  // (The body is not read here for the message: it is the stream.)
  if (res.status !== 200) assert.fail(`${res.status}: ${await res.text()}`);
  const stream = new OpenStream(res.body as ReadableStream<Uint8Array>, id);
  // The first document (queued): the stream is open and registered with the hub.
  const deadline = Date.now() + END_WITHIN_MS;
  while (stream.events.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  assert.equal(stream.events[0]?.data.status, "queued");
  return stream;
}

/** The stream ended with an `error` event of this code, as its last event. */
function assertEndedWith(events: StreamEvent[], code: string): StreamEvent {
  const last = events.at(-1);
  assert.equal(last?.event, "error", JSON.stringify(events));
  assert.equal(last?.data.error?.code, code, JSON.stringify(last));
  assert.equal(events.filter((e) => e.event === "error").length, 1, "one error event, the last one");
  return last as StreamEvent;
}

async function bearer(
  service: Service,
  tenant: string,
): Promise<{ key: string; headers: Record<string, string> }> {
  const { key } = await issueApiKey(service.store, tenant, ["exports:read", "exports:write"], Date.now());
  return { key, headers: { authorization: `Bearer ${key}` } };
}

const stores: Array<{ name: string; env: () => Record<string, string> }> = [
  { name: "SQLite", env: () => ({}) },
];
let db: TestDatabase | null = null;
stores.push({ name: "PostgreSQL", env: () => ({ EXPORTD_DATABASE_URL: (db as TestDatabase).url }) });

before(async () => {
  db = await createTestDatabase();
});
after(async () => {
  await db?.dispose();
});

for (const store of stores) {
  describe(`progress streams on ${store.name} end with their credential`, () => {
    let service: Service;
    let base: string;
    before(async () => {
      ({ service, base } = await apiServer(store.env()));
    });
    after(() => service.close());

    test("a tenant disabled by the operator, a revoked key, an operator's revoked key; an unaffected tenant's stream goes on", async () => {
      const disabled = await bearer(service, "disabled-co");
      const revoked = await bearer(service, "revoked-co");
      const kept = await bearer(service, "kept-co");
      const operator = await issueOperatorKey(service.store, "backend", ["admin:act"], {
        actor: "test",
        at: Date.now(),
      });
      await service.store.ensureTenant("acted-co", Date.now());
      const acting = { authorization: `Bearer ${operator.key}`, "x-exportd-tenant": "acted-co" };

      const ofDisabled = await streamOfNewExport(base, disabled.headers);
      // Two streams of one credential: one check serves both, both end.
      const ofDisabledToo = await streamOfNewExport(base, disabled.headers);
      const ofRevoked = await streamOfNewExport(base, revoked.headers);
      const ofActing = await streamOfNewExport(base, acting);
      const ofKept = await streamOfNewExport(base, kept.headers);

      // The operator disables the tenant through the operator API (which cancels its exports too).
      const res = await fetch(`${base}/admin/v1/tenants/disabled-co/disable`, {
        method: "POST",
        headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
      });
      assert.equal(res.status, 200, await res.text());
      assert.ok(await revokeApiKey(service.store, keyPrefix(revoked.key) as string, Date.now()));
      assert.ok(
        await revokeOperatorKey(service.store, operator.record.prefix, { actor: "test", at: Date.now() }),
      );

      const error = assertEndedWith(await ofDisabled.end(), "tenant_disabled");
      assert.doesNotMatch(JSON.stringify(error), /disabled-co/, "the reason names no tenant");
      assert.match(error.data.error?.request_id ?? "", /\S/);
      assertEndedWith(await ofDisabledToo.end(), "tenant_disabled");
      assertEndedWith(await ofRevoked.end(), "unauthorized");
      assertEndedWith(await ofActing.end(), "unauthorized");
      // A new request with those credentials gets the same answers.
      const again = await fetch(`${base}/v1/exports`, { headers: disabled.headers });
      assert.equal(again.status, 403);

      // The unaffected stream is still open after those checks: it gets its export's final event.
      assert.deepEqual(
        ofKept.events.map((e) => e.event),
        ["progress"],
      );
      const canceled = await fetch(`${base}/v1/exports/${ofKept.exportId}/cancel`, {
        method: "POST",
        headers: kept.headers,
      });
      assert.equal(canceled.status, 200, await canceled.text());
      const events = await ofKept.end();
      assert.equal(events.at(-1)?.event, "status");
      assert.equal(events.at(-1)?.data.status, "canceled");
      assert.equal(events.filter((e) => e.event === "error").length, 0);
    });
  });
}

describe("clients of a stream that ends with its credential", () => {
  let service: Service;
  let base: string;
  before(async () => {
    ({ service, base } = await apiServer({}));
  });
  after(() => service.close());

  test("the typed client's waitForExport reconnects, gets the 401 and stops with it", {
    timeout: 2 * END_WITHIN_MS,
  }, async () => {
    const { key } = await bearer(service, "client-co");
    const client = new ExportdClient({ baseUrl: base, apiKey: key });
    const created = await client.createExport(createBody);
    const seen: string[] = [];
    const waiting = client.waitForExport(created.id, { onProgress: (e) => seen.push(e.status) });
    // Revoked once the stream is open (its first document heard).
    const deadline = Date.now() + END_WITHIN_MS;
    while (seen.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    assert.deepEqual(seen, ["queued"]);
    assert.ok(await revokeApiKey(service.store, keyPrefix(key) as string, Date.now()));
    await assert.rejects(waiting, (err: unknown) => {
      assert.ok(err instanceof ExportdApiError, String(err));
      assert.equal(err.status, 401);
      assert.equal(err.code, "unauthorized");
      return true;
    });
  });
});

describe("a sign-in token's progress stream", () => {
  let service: Service;
  let base: string;
  before(async () => {
    ({ service, base } = await apiServer({}));
  });
  after(() => service.close());

  test("ends at the token's exp with unauthorized, while the tenant's key stream goes on", async () => {
    const expiresAt = Math.ceil((Date.now() + 6_000) / 1000);
    const token = await new SignJWT({ tenant: "token-co", scope: "exports:read exports:write" })
      .setProtectedHeader({ alg: "HS256" })
      .setSubject("user-1")
      .setIssuedAt()
      .setExpirationTime(expiresAt)
      .sign(new TextEncoder().encode(HS256_SECRET));
    const headers = { authorization: `Bearer ${token}` };
    const ofToken = await streamOfNewExport(base, headers);
    const kept = await bearer(service, "token-co");
    const ofKey = await streamOfNewExport(base, kept.headers);

    const error = assertEndedWith(await ofToken.end(), "unauthorized");
    assert.match(error.data.error?.message ?? "", /expired/);
    // Not before exp (the verifier's clock tolerance does not stretch a stream).
    assert.ok(Date.now() >= expiresAt * 1000 - 20, "ended at exp, not before");
    assert.deepEqual(
      ofKey.events.map((e) => e.event),
      ["progress"],
      "the key's stream of the same tenant is still open",
    );
    await ofKey.close();
  });
});
