/**
 * The product's own sign-in tokens (JWT) against a listening server: a JWKS served over HTTP by the
 * test (RS256, ES256 and EdDSA keys), rotation at the JWKS while requests flow, the attacks of
 * issue 13 (alg none, HS256 signed with the RSA public key, expired, nbf in the future, wrong
 * iss/aud, unknown kid, a kid that looks like a path or URL, jku, missing or non-string tenant
 * claim, another tenant's export, an oversized token), the JWKS server down, PEM and HS256 modes,
 * first-sight tenant creation on and off, scope mapping, created_by and the log's actor.
 * Then CORS: preflight, allowed and denied origins, refusals, /admin.
 */
import assert from "node:assert/strict";
import fs from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { Writable } from "node:stream";
import { after, before, describe, test } from "node:test";
import {
  type CryptoKey,
  exportJWK,
  exportSPKI,
  generateKeyPair,
  type JWK,
  type JWTPayload,
  SignJWT,
} from "jose";
import { pino } from "pino";
import { loadConfig } from "../../src/config/index.js";
import { keyPrefix } from "../../src/domain/api-keys.js";
import { createService } from "../../src/service.js";
import { listen, type RawResponse, rawRequest } from "../helpers/http.js";
import { pastMidnight, startTestService, type TestService, tempDir } from "../helpers/service.js";

const ISSUER = "https://idp.example.com/";
const AUDIENCE = "exportd";
const TENANT_CLAIM = "https://example.com/tenant";
const to = pastMidnight();
const createBody = JSON.stringify({
  dataset: "events",
  from: new Date(to - 3_600_000).toISOString(),
  to: new Date(to).toISOString(),
});

/** The services' clock, moved by the tests (exp, nbf, JWKS cooldown, caches). */
let now = Date.now();
const clock = () => now;

type Alg = "RS256" | "ES256" | "EdDSA";
interface SigningKey {
  alg: Alg;
  kid: string;
  privateKey: CryptoKey;
  publicJwk: JWK;
  publicPem: string;
}

async function signingKey(alg: Alg, kid: string): Promise<SigningKey> {
  const pair = await generateKeyPair(alg, {
    extractable: true,
    ...(alg === "EdDSA" ? { crv: "Ed25519" } : {}),
  });
  const publicJwk = { ...(await exportJWK(pair.publicKey)), kid, alg, use: "sig" };
  return { alg, kid, privateKey: pair.privateKey, publicJwk, publicPem: await exportSPKI(pair.publicKey) };
}

/** A token with sensible claims at the services' clock; `claims` overrides or adds (undefined removes). */
async function token(
  key: { alg: string; kid?: string; privateKey: CryptoKey | Uint8Array },
  claims: Record<string, unknown> = {},
  header: Record<string, unknown> = {},
): Promise<string> {
  const seconds = Math.floor(now / 1000);
  const payload: JWTPayload = {
    iss: ISSUER,
    aud: AUDIENCE,
    sub: "user-1",
    [TENANT_CLAIM]: "acme",
    scope: "exports:read exports:write exports:download datasets:read",
    iat: seconds,
    exp: seconds + 300,
    jti: `${Math.random()}`,
    ...claims,
  };
  for (const [name, value] of Object.entries(payload)) if (value === undefined) delete payload[name];
  return new SignJWT(payload)
    .setProtectedHeader({ alg: key.alg, ...(key.kid ? { kid: key.kid } : {}), ...header })
    .sign(key.privateKey);
}

const b64 = (value: unknown) => Buffer.from(JSON.stringify(value)).toString("base64url");

/** A server the test controls: the JWKS (or an attacker's host, counting hits), stoppable. */
class TestHost {
  jwks: { keys: JWK[] } = { keys: [] };
  hits = 0;
  private server = http.createServer((_req, res) => {
    this.hits++;
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify(this.jwks));
  });
  port = 0;

  async start(): Promise<this> {
    await new Promise<void>((resolve) => this.server.listen(this.port, "127.0.0.1", resolve));
    this.port = (this.server.address() as AddressInfo).port;
    return this;
  }

  async stop(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.server = http.createServer(this.server.listeners("request")[0] as http.RequestListener);
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}/.well-known/jwks.json`;
  }
}

const bearer = (credential: string, extra: Record<string, string> = {}) => ({
  authorization: `Bearer ${credential}`,
  ...extra,
});
const json = (credential: string) => bearer(credential, { "content-type": "application/json" });

function assertError(res: RawResponse, status: number, code: string): string {
  assert.equal(res.status, status, res.body);
  const body = res.json<{ error: { code: string; message: string } }>();
  assert.equal(body.error.code, code);
  return body.error.message;
}

/** A refusal that tells the client nothing about which check failed. */
function assertRefused(res: RawResponse): void {
  const message = assertError(res, 401, "unauthorized");
  assert.equal(message, "The bearer token is not valid.");
  assert.match(String(res.headers["www-authenticate"]), /^Bearer realm="exportd", error="invalid_token"/);
}

let rsa: SigningKey;
let ec: SigningKey;
let ed: SigningKey;
let jwksHost: TestHost;
let attacker: TestHost;
let svc: TestService;
let base: string;
const logLines: Record<string, unknown>[] = [];

before(async () => {
  [rsa, ec, ed] = await Promise.all([
    signingKey("RS256", "rsa-1"),
    signingKey("ES256", "ec-1"),
    signingKey("EdDSA", "ed-1"),
  ]);
  jwksHost = await new TestHost().start();
  jwksHost.jwks = { keys: [rsa.publicJwk, ec.publicJwk, ed.publicJwk] };
  attacker = await new TestHost().start();
  // A service whose log lines the test reads (the actor), on the JWKS.
  const dataDir = tempDir();
  const sink = new Writable({
    write(chunk, _encoding, done) {
      for (const line of String(chunk).split("\n").filter(Boolean)) logLines.push(JSON.parse(line));
      done();
    },
  });
  const env = {
    EXPORTD_DATA_DIR: dataDir,
    EXPORTD_JWT_JWKS_URL: jwksHost.url,
    EXPORTD_JWT_ISSUER: ISSUER,
    EXPORTD_JWT_AUDIENCE: AUDIENCE,
    EXPORTD_JWT_TENANT_CLAIM: TENANT_CLAIM,
    EXPORTD_CORS_ORIGINS: "https://app.example.com",
    // The attacks below refuse many tokens from one address; the budget has a test of its own.
    EXPORTD_UNAUTHENTICATED_PER_MINUTE: "100000",
  };
  const service = await createService(loadConfig(env), pino({ level: "info" }, sink), clock);
  svc = {
    ...service,
    dataDir,
    key: async () => "",
    async dispose() {
      await service.close();
      fs.rmSync(dataDir, { recursive: true, force: true });
    },
  };
  base = await listen(svc);
});
after(async () => {
  await svc.dispose();
  await jwksHost.stop();
  await attacker.stop();
});

describe("tokens from a JWKS", () => {
  for (const alg of ["RS256", "ES256", "EdDSA"] as const) {
    test(`${alg}: a valid token reads and creates; the export records created_by token:<sub>`, async () => {
      const key = { RS256: rsa, ES256: ec, EdDSA: ed }[alg];
      const t = await token(key, { sub: `user-${alg}` });
      assert.equal((await rawRequest(base, "GET", "/v1/exports", bearer(t))).status, 200);
      const created = await rawRequest(base, "POST", "/v1/exports", json(t), createBody);
      assert.equal(created.status, 202, created.body);
      const id = created.json<{ id: string; created_by: string }>().id;
      assert.equal(created.json().created_by, `token:user-${alg}`);
      const read = await rawRequest(base, "GET", `/v1/exports/${id}`, bearer(t));
      assert.equal(read.json().created_by, `token:user-${alg}`);
      const line = logLines.find(
        (l) => l.msg === "request" && l.method === "POST" && l.actor === `token:user-${alg}`,
      );
      assert.ok(line, "the request log line names the actor");
    });
  }

  test("an export created with an API key records created_by key:<prefix>", async () => {
    const { issueApiKey } = await import("../../src/usecases/api-keys.js");
    const key = (await issueApiKey(svc.store, "acme", ["exports:write", "exports:read"], now)).key;
    const created = await rawRequest(base, "POST", "/v1/exports", json(key), createBody);
    assert.equal(created.status, 202, created.body);
    assert.equal(created.json().created_by, `key:${keyPrefix(key)}`);
  });

  test("the tenant comes from the claim and is created on first sight with the default plan", async () => {
    const t = await token(rsa, { [TENANT_CLAIM]: "newcomer" });
    assert.equal(await svc.store.findTenantByName("newcomer"), null);
    assert.equal((await rawRequest(base, "GET", "/v1/exports", bearer(t))).status, 200);
    assert.equal((await svc.store.findTenantByName("newcomer"))?.plan, "default");
  });

  test("a tenant created on first sight is audited once as tenant.create by token:<sub>", async () => {
    const audited = () => svc.store.listAudit({ tenant: "audited-co", action: "tenant.create", limit: 10 });
    assert.deepEqual(await audited(), []);
    // Several first requests at once (none finds the tenant): one creates it, one entry.
    const tokens = await Promise.all(
      ["first-user", "second-user", "third-user"].map((sub) =>
        token(rsa, { sub, [TENANT_CLAIM]: "audited-co" }),
      ),
    );
    const answers = await Promise.all(tokens.map((t) => rawRequest(base, "GET", "/v1/exports", bearer(t))));
    for (const res of answers) assert.equal(res.status, 200, res.body);
    const tenant = await svc.store.findTenantByName("audited-co");
    const entries = await audited();
    assert.equal(entries.length, 1, JSON.stringify(entries));
    const entry = entries[0];
    assert.match(String(entry?.actor), /^token:(first|second|third)-user$/);
    assert.equal(entry?.target, "tenant:audited-co");
    assert.equal(entry?.before, null);
    assert.equal((entry?.after as { id?: string } | undefined)?.id, tenant?.id);
    // A tenant that existed already is not created again, nor audited.
    now += 2_000;
    const again = await token(rsa, { sub: "fourth-user", [TENANT_CLAIM]: "audited-co" });
    assert.equal((await rawRequest(base, "GET", "/v1/exports", bearer(again))).status, 200);
    assert.equal((await audited()).length, 1);
  });

  test("a key and a token of their own tenant get the same answers: header, disabled tenant, then scope", async () => {
    const { issueApiKey } = await import("../../src/usecases/api-keys.js");
    const readOnlyKey = (await issueApiKey(svc.store, "bound-co", ["exports:read"], now)).key;
    const readOnlyToken = await token(rsa, { [TENANT_CLAIM]: "bound-co", scope: "exports:read" });
    const answers = async (credential: string) => {
      const header = await rawRequest(
        base,
        "POST",
        "/v1/exports",
        { ...json(credential), "x-exportd-tenant": "bound-co" },
        createBody,
      );
      const scope = await rawRequest(base, "POST", "/v1/exports", json(credential), createBody);
      return [header, scope].map((r) => `${r.status} ${r.json<{ error: { code: string } }>().error.code}`);
    };
    const active = ["400 tenant_header_not_allowed", "403 insufficient_scope"];
    assert.deepEqual(await answers(readOnlyKey), active);
    assert.deepEqual(await answers(readOnlyToken), active);
    assert.ok(await svc.store.setTenantDisabled("bound-co", true, { actor: "test", at: now }));
    now += 2_000;
    // A disabled tenant is refused before the scope is looked at, by keys as by tokens.
    const disabled = ["400 tenant_header_not_allowed", "403 tenant_disabled"];
    assert.deepEqual(await answers(readOnlyKey), disabled);
    assert.deepEqual(
      await answers(await token(rsa, { [TENANT_CLAIM]: "bound-co", scope: "exports:read" })),
      disabled,
    );
  });

  test("a token naming another tenant never sees this tenant's export (404)", async () => {
    const mine = await rawRequest(base, "POST", "/v1/exports", json(await token(rsa)), createBody);
    const id = mine.json<{ id: string }>().id;
    const other = await token(rsa, { [TENANT_CLAIM]: "other-co" });
    assertError(await rawRequest(base, "GET", `/v1/exports/${id}`, bearer(other)), 404, "not_found");
    assertError(await rawRequest(base, "POST", `/v1/exports/${id}/cancel`, bearer(other)), 404, "not_found");
  });

  test("a token for a disabled tenant → 403 tenant_disabled on reads and writes; enabled again, it passes", async () => {
    const t = await token(rsa, { [TENANT_CLAIM]: "paused-co" });
    assert.equal((await rawRequest(base, "GET", "/v1/exports", bearer(t))).status, 200);
    const stamp = { actor: "test", at: now };
    assert.ok(await svc.store.setTenantDisabled("paused-co", true, stamp));
    // Past the one-second tenant cache.
    now += 2_000;
    const late = await token(rsa, { [TENANT_CLAIM]: "paused-co" });
    for (const credential of [t, late]) {
      assertError(await rawRequest(base, "GET", "/v1/exports", bearer(credential)), 403, "tenant_disabled");
      assertError(
        await rawRequest(base, "POST", "/v1/exports", json(credential), createBody),
        403,
        "tenant_disabled",
      );
    }
    assert.ok(await svc.store.setTenantDisabled("paused-co", false, { actor: "test", at: now }));
    now += 2_000;
    assert.equal((await rawRequest(base, "GET", "/v1/exports", bearer(late))).status, 200);
  });

  test("a token with X-Exportd-Tenant → 400 tenant_header_not_allowed, also naming its own tenant", async () => {
    const t = await token(rsa);
    for (const name of ["other-co", "acme"]) {
      const res = await rawRequest(base, "GET", "/v1/exports", bearer(t, { "x-exportd-tenant": name }));
      assertError(res, 400, "tenant_header_not_allowed");
      const created = await rawRequest(
        base,
        "POST",
        "/v1/exports",
        { ...json(t), "x-exportd-tenant": name },
        createBody,
      );
      assertError(created, 400, "tenant_header_not_allowed");
    }
  });

  test("scopes: a token without exports:write gets 403 on POST, unknown scopes are ignored", async () => {
    const t = await token(ec, { scope: "exports:read admin:everything openid" });
    assert.equal((await rawRequest(base, "GET", "/v1/exports", bearer(t))).status, 200);
    assertError(
      await rawRequest(base, "POST", "/v1/exports", json(t), createBody),
      403,
      "insufficient_scope",
    );
    const none = await token(ec, { scope: undefined });
    assertError(await rawRequest(base, "GET", "/v1/exports", bearer(none)), 403, "insufficient_scope");
  });

  test("exp and nbf are checked with the 30 s clock tolerance", async () => {
    const s = Math.floor(now / 1000);
    assert.equal(
      (await rawRequest(base, "GET", "/v1/exports", bearer(await token(rsa, { exp: s - 10 })))).status,
      200,
    );
    const expired = await rawRequest(base, "GET", "/v1/exports", bearer(await token(rsa, { exp: s - 120 })));
    assert.equal(assertError(expired, 401, "unauthorized"), "The token has expired.");
    assertRefused(await rawRequest(base, "GET", "/v1/exports", bearer(await token(rsa, { nbf: s + 120 }))));
    assertRefused(await rawRequest(base, "GET", "/v1/exports", bearer(await token(rsa, { exp: undefined }))));
  });

  test("a cached token stops working at its exp", async () => {
    const t = await token(rsa, { exp: Math.floor(now / 1000) + 5 });
    assert.equal((await rawRequest(base, "GET", "/v1/exports", bearer(t))).status, 200);
    now += 40_000;
    assertError(await rawRequest(base, "GET", "/v1/exports", bearer(t)), 401, "unauthorized");
  });
});

describe("attacks", () => {
  const get = (credential: string) => rawRequest(base, "GET", "/v1/exports", bearer(credential));

  test("alg none, with and without a signature", async () => {
    const claims = {
      iss: ISSUER,
      aud: AUDIENCE,
      sub: "x",
      [TENANT_CLAIM]: "acme",
      scope: "exports:read",
      exp: Math.floor(now / 1000) + 300,
    };
    assertRefused(await get(`${b64({ alg: "none", typ: "JWT" })}.${b64(claims)}.`));
    assertRefused(await get(`${b64({ alg: "none", kid: "rsa-1" })}.${b64(claims)}.c2ln`));
  });

  test("HS256 signed with the RSA public key (as PEM and as JWK) as the HMAC secret", async () => {
    for (const secret of [rsa.publicPem, JSON.stringify(rsa.publicJwk)]) {
      const forged = await token({
        alg: "HS256",
        kid: "rsa-1",
        privateKey: new TextEncoder().encode(secret),
      });
      assertRefused(await get(forged));
    }
  });

  test("wrong iss, wrong aud, no tenant, a tenant claim that is no string, no sub", async () => {
    for (const claims of [
      { iss: "https://evil.example.com/" },
      { aud: "someone-else" },
      { [TENANT_CLAIM]: undefined },
      { [TENANT_CLAIM]: 42 },
      { [TENANT_CLAIM]: { name: "acme" } },
      { [TENANT_CLAIM]: ["acme"] },
      { [TENANT_CLAIM]: "" },
      { [TENANT_CLAIM]: "bad\nname" },
      // Invisible or layout characters would make a tenant that reads as another one (all were
      // created before): a zero-width space, a right-to-left override, a line separator, a
      // name of a no-break space only, and leading or trailing blanks.
      { [TENANT_CLAIM]: "acme\u200b" },
      { [TENANT_CLAIM]: "\u202eemca" },
      { [TENANT_CLAIM]: "ac\u2028me" },
      { [TENANT_CLAIM]: "\u00a0" },
      { [TENANT_CLAIM]: " acme" },
      { [TENANT_CLAIM]: "acme " },
      { sub: "user\u200b" },
      { sub: undefined },
      { sub: 7 },
    ]) {
      assertRefused(await get(await token(rsa, claims)));
    }
  });

  test("a token signed by an unknown key, and kids that look like paths or URLs, fetch nothing from them", async () => {
    const stranger = await signingKey("RS256", "rsa-1");
    now += 60_000; // past the JWKS cooldown
    assertRefused(await get(await token(stranger)));
    for (const kid of [
      "../../../../etc/passwd",
      "/etc/passwd",
      `http://127.0.0.1:${attacker.port}/jwks`,
      "file:///etc/passwd",
    ]) {
      now += 60_000;
      assertRefused(await get(await token({ ...stranger, kid })));
    }
    // jku and x5u name the attacker's host: never fetched.
    attacker.jwks = { keys: [stranger.publicJwk] };
    assertRefused(await get(await token(stranger, {}, { jku: attacker.url, x5u: attacker.url })));
    assert.equal(attacker.hits, 0);
  });

  test("an unknown kid refetches the JWKS at most once per cooldown", async () => {
    const stranger = await signingKey("ES256", "nobody");
    now += 60_000;
    const before = jwksHost.hits;
    assertRefused(await get(await token(stranger)));
    assert.equal(jwksHost.hits, before + 1);
    for (let i = 0; i < 5; i++) assertRefused(await get(await token(stranger)));
    assert.equal(jwksHost.hits, before + 1, "no refetch within the cooldown");
  });

  test("an oversized token → 401 without verifying it", async () => {
    const big = await token(rsa, { padding: "x".repeat(9 * 1024) });
    assertRefused(await get(big));
  });

  test("garbage that looks like a JWT → 401", async () => {
    assertRefused(await get("aaa.bbb.ccc"));
    assertRefused(await get(`${b64({ alg: "RS256", kid: "rsa-1" })}.not-json.c2ln`));
  });
});

describe("JWKS rotation and outage", () => {
  test("rotation while requests flow: the new kid is fetched, the removed one refused, never a 5xx", async () => {
    const next = await signingKey("RS256", "rsa-2");
    const before: number[] = [];
    const afterRotation: { kid: string; status: number }[] = [];
    let rotated = false;
    // Three clients, each signing with the key the provider currently publishes; the clock moves
    // half a second per request, so the JWKS cooldown passes while they run.
    const client = async () => {
      for (let i = 0; i < 100; i++) {
        const key = rotated ? next : rsa;
        now += 500;
        const { status } = await rawRequest(base, "GET", "/v1/exports", bearer(await token(key)));
        if (!rotated) before.push(status);
        else afterRotation.push({ kid: key.kid, status });
        if (before.length >= 10 && !rotated) {
          jwksHost.jwks = { keys: [next.publicJwk, ec.publicJwk, ed.publicJwk] };
          rotated = true;
        }
        if (afterRotation.filter((r) => r.kid === "rsa-2" && r.status === 200).length >= 10) return;
      }
    };
    await Promise.all([client(), client(), client()]);
    assert.ok(
      before.every((s) => s === 200),
      `before the rotation: ${before}`,
    );
    const statuses = afterRotation.map((r) => r.status);
    assert.ok(
      statuses.every((s) => s === 200 || s === 401),
      `after the rotation: ${statuses}`,
    );
    assert.ok(
      afterRotation.filter((r) => r.kid === "rsa-2" && r.status === 200).length >= 10,
      "the new key's tokens pass",
    );
    assert.equal(afterRotation.at(-1)?.status, 200);
    // The set without rsa-1 is the cached one now: a fresh token signed with rsa-1 is refused.
    now += 60_000;
    assertRefused(await rawRequest(base, "GET", "/v1/exports", bearer(await token(rsa))));
  });

  test("JWKS server down: cached keys keep working, an unknown kid is 401 (not 500); back up, new keys load", async () => {
    await jwksHost.stop();
    try {
      now += 3_600_000; // past the set's max age too: the background refresh fails, the keys stay
      for (let i = 0; i < 3; i++) {
        assert.equal((await rawRequest(base, "GET", "/v1/exports", bearer(await token(ec)))).status, 200);
      }
      const fresh = await signingKey("ES256", "ec-2");
      now += 60_000;
      assertRefused(await rawRequest(base, "GET", "/v1/exports", bearer(await token(fresh))));
      jwksHost.jwks = { keys: [...jwksHost.jwks.keys, fresh.publicJwk] };
      await jwksHost.start();
      now += 60_000;
      assert.equal((await rawRequest(base, "GET", "/v1/exports", bearer(await token(fresh)))).status, 200);
    } finally {
      if (!jwksHost.port) await jwksHost.start();
    }
  });

  test("a JWKS larger than 1 MiB is refused: the cached keys stay", async () => {
    const fresh = await signingKey("ES256", "ec-big");
    const keys = jwksHost.jwks.keys;
    Object.assign(jwksHost, { jwks: { keys: [...keys, fresh.publicJwk], padding: "x".repeat(1100 * 1024) } });
    try {
      now += 60_000;
      const hits = jwksHost.hits;
      assertRefused(await rawRequest(base, "GET", "/v1/exports", bearer(await token(fresh))));
      assert.equal(jwksHost.hits, hits + 1, "fetched, and refused");
      assert.equal((await rawRequest(base, "GET", "/v1/exports", bearer(await token(ec)))).status, 200);
    } finally {
      jwksHost.jwks = { keys };
    }
  });

  test("a JWKS that was never reachable → 503 service_unavailable, not 500", async () => {
    const down = await startTestService({ EXPORTD_JWT_JWKS_URL: "http://127.0.0.1:9/jwks.json" }, clock);
    try {
      const b = await listen(down);
      const res = await rawRequest(b, "GET", "/v1/exports", bearer(await token(rsa)));
      assertError(res, 503, "service_unavailable");
    } finally {
      await down.dispose();
    }
  });
});

describe("the budget for invalid credentials", () => {
  test("refused tokens count per address; past the budget only cached tokens pass", async () => {
    const limited = await startTestService(
      { EXPORTD_JWT_JWKS_URL: jwksHost.url, EXPORTD_UNAUTHENTICATED_PER_MINUTE: "3" },
      clock,
    );
    try {
      const b = await listen(limited);
      const claims = { iss: undefined, aud: undefined, tenant: "acme" };
      const good = await token(ec, claims);
      assert.equal((await rawRequest(b, "GET", "/v1/exports", bearer(good))).status, 200);
      for (let i = 0; i < 3; i++)
        assertRefused(await rawRequest(b, "GET", "/v1/exports", bearer("aaa.bbb.ccc")));
      const limitedAnswer = await rawRequest(b, "GET", "/v1/exports", bearer("aaa.bbb.ccc"));
      assertError(limitedAnswer, 429, "rate_limited");
      assert.ok(Number(limitedAnswer.headers["retry-after"]) >= 1);
      // A valid token not verified yet waits too; the one verified before still passes.
      assertError(
        await rawRequest(b, "GET", "/v1/exports", bearer(await token(ec, claims))),
        429,
        "rate_limited",
      );
      assert.equal((await rawRequest(b, "GET", "/v1/exports", bearer(good))).status, 200);
    } finally {
      await limited.dispose();
    }
  });
});

describe("PEM and HS256 modes", () => {
  test("PEM (ES256), tenant from a dotted path: ES256 passes; RS256 and HS256-with-the-PEM are refused", async () => {
    const pem = await startTestService(
      { EXPORTD_JWT_PUBLIC_KEY: ec.publicPem.replaceAll("\n", "\\n"), EXPORTD_JWT_TENANT_CLAIM: "org.id" },
      clock,
    );
    try {
      const b = await listen(pem);
      const claims = { [TENANT_CLAIM]: undefined, org: { id: "dotted-co" } };
      assert.equal((await rawRequest(b, "GET", "/v1/exports", bearer(await token(ec, claims)))).status, 200);
      assert.ok(await pem.store.findTenantByName("dotted-co"));
      assertRefused(await rawRequest(b, "GET", "/v1/exports", bearer(await token(rsa, claims))));
      const forged = await token(
        { alg: "HS256", privateKey: new TextEncoder().encode(ec.publicPem) },
        claims,
      );
      assertRefused(await rawRequest(b, "GET", "/v1/exports", bearer(forged)));
      // `org.__proto__` and the like read nothing.
      const proto = await token(ec, {
        [TENANT_CLAIM]: undefined,
        org: JSON.parse('{"__proto__": {"id": "x"}}'),
      });
      assertRefused(await rawRequest(b, "GET", "/v1/exports", bearer(proto)));
    } finally {
      await pem.dispose();
    }
  });

  test("HS256 secret with a scope map and an array claim; tenants must exist when creation is off", async () => {
    const secret = "0123456789abcdef0123456789abcdef-secret";
    const hs = await startTestService(
      {
        EXPORTD_JWT_HS256_SECRET: secret,
        EXPORTD_JWT_SCOPE_CLAIM: "permissions",
        EXPORTD_JWT_SCOPE_MAP: "export:read=exports:read datasets:read,export:write=exports:write",
        EXPORTD_JWT_CREATE_TENANTS: "false",
        EXPORTD_JWT_TENANT_CLAIM: "tenant",
      },
      clock,
    );
    try {
      const b = await listen(hs);
      const key = { alg: "HS256", privateKey: new TextEncoder().encode(secret) };
      const reader = await token(key, { tenant: "known", permissions: ["export:read", "exports:write"] });
      assertRefused(await rawRequest(b, "GET", "/v1/exports", bearer(reader)));
      assert.equal(await hs.store.findTenantByName("known"), null, "no tenant created");
      await hs.store.ensureTenant("known", now);
      now += 2_000; // past the tenant cache
      assert.equal((await rawRequest(b, "GET", "/v1/datasets", bearer(reader))).status, 200);
      // exports:write is no name of the map: ignored.
      assertError(
        await rawRequest(b, "POST", "/v1/exports", json(reader), createBody),
        403,
        "insufficient_scope",
      );
      const writer = await token(key, { tenant: "known", permissions: ["export:write", "export:read"] });
      assert.equal((await rawRequest(b, "POST", "/v1/exports", json(writer), createBody)).status, 202);
      // An RS256 token is refused by an HS256-only server.
      assertRefused(await rawRequest(b, "GET", "/v1/exports", bearer(await token(rsa, { tenant: "known" }))));
    } finally {
      await hs.dispose();
    }
  });
});

describe("CORS", () => {
  const origin = "https://app.example.com";

  test("a preflight from an allowed origin is answered without credentials", async () => {
    const res = await rawRequest(base, "OPTIONS", "/v1/exports", {
      origin,
      "access-control-request-method": "POST",
      "access-control-request-headers": "authorization, content-type, idempotency-key",
    });
    assert.equal(res.status, 204, res.body);
    assert.equal(res.headers["access-control-allow-origin"], origin);
    assert.match(String(res.headers["access-control-allow-headers"]), /Authorization/);
    assert.match(String(res.headers["access-control-allow-headers"]), /Idempotency-Key/);
    assert.match(String(res.headers["access-control-allow-methods"]), /POST/);
    assert.equal(res.headers["access-control-allow-credentials"], undefined);
  });

  test("answers to an allowed origin expose the headers a browser client reads, refusals included", async () => {
    const t = await token(ec);
    const res = await rawRequest(
      base,
      "POST",
      "/v1/exports",
      { ...json(t), origin, "idempotency-key": "cors-1" },
      createBody,
    );
    assert.equal(res.status, 202);
    assert.equal(res.headers["access-control-allow-origin"], origin);
    const exposed = String(res.headers["access-control-expose-headers"]);
    for (const h of [
      "Retry-After",
      "Idempotent-Replayed",
      "Location",
      "ETag",
      "Content-Range",
      "Accept-Ranges",
      "X-Request-Id",
    ])
      assert.match(exposed, new RegExp(h));
    const refused = await rawRequest(base, "GET", "/v1/exports", { origin });
    assert.equal(refused.status, 401);
    assert.equal(refused.headers["access-control-allow-origin"], origin);
  });

  /**
   * What a browser does with a preflight's answer: the request goes out only when the origin is
   * allowed and every header it asked for is in Access-Control-Allow-Headers (case-insensitive).
   */
  async function browserAllows(method: string, path: string, headers: string[]): Promise<string[]> {
    const res = await rawRequest(base, "OPTIONS", path, {
      origin,
      "access-control-request-method": method,
      "access-control-request-headers": headers.join(", "),
    });
    assert.equal(res.status, 204, res.body);
    assert.equal(res.headers["access-control-allow-origin"], origin);
    assert.match(String(res.headers["access-control-allow-methods"]), new RegExp(method));
    const allowed = new Set(
      String(res.headers["access-control-allow-headers"] ?? "")
        .split(",")
        .map((h) => h.trim().toLowerCase()),
    );
    return headers.filter((h) => !allowed.has(h));
  }

  test("preflights for what the console and the typed client send pass: creates, progress streams, resumed downloads", async () => {
    // A create (console and client): JSON body, the credential, an Idempotency-Key.
    assert.deepEqual(
      await browserAllows("POST", "/v1/exports", ["authorization", "content-type", "idempotency-key"]),
      [],
    );
    // A progress stream reconnecting (console/src/api.ts, client events()): Last-Event-ID.
    assert.deepEqual(
      await browserAllows("GET", "/v1/exports/0192f3a0-0000-7000-8000-000000000000/events", [
        "authorization",
        "last-event-id",
      ]),
      [],
    );
    // A download resumed from a page: Range with a validator, so only the same file is resumed;
    // revalidation; both on a signed link and on the API.
    const conditional = [
      "range",
      "if-range",
      "if-match",
      "if-none-match",
      "if-modified-since",
      "if-unmodified-since",
    ];
    assert.deepEqual(await browserAllows("GET", "/files/exports/a/b/part-000.csv", conditional), []);
    assert.deepEqual(
      await browserAllows("GET", "/v1/exports/0192f3a0-0000-7000-8000-000000000000", [
        "authorization",
        "if-none-match",
      ]),
      [],
    );
    // Not everything passes: a header no client sends is not allowed.
    assert.deepEqual(await browserAllows("GET", "/v1/exports", ["x-exportd-tenant"]), ["x-exportd-tenant"]);
  });

  test("preflights allow the methods the public routes use: a page may change and delete its webhook endpoints", async () => {
    const endpoint = "/v1/webhook_endpoints/0192f3a0-0000-7000-8000-000000000000";
    for (const method of ["PATCH", "DELETE"])
      assert.deepEqual(await browserAllows(method, endpoint, ["authorization", "content-type"]), [], method);
    const res = await rawRequest(base, "OPTIONS", endpoint, {
      origin,
      "access-control-request-method": "PATCH",
    });
    // Exactly the methods of the registered routes outside /admin (no route answers PUT).
    const allowed = String(res.headers["access-control-allow-methods"])
      .split(",")
      .map((m) => m.trim());
    assert.deepEqual(allowed, ["DELETE", "GET", "HEAD", "PATCH", "POST"]);
  });

  test("the headers a page reads are exposed: rate limits, downloads, retries", async () => {
    const t = await token(ec);
    const res = await rawRequest(base, "GET", "/v1/exports", { ...bearer(t), origin });
    assert.equal(res.status, 200);
    const exposed = new Set(
      String(res.headers["access-control-expose-headers"])
        .split(",")
        .map((h) => h.trim().toLowerCase()),
    );
    for (const h of [
      "retry-after",
      "location",
      "etag",
      "last-modified",
      "content-range",
      "accept-ranges",
      "content-length",
      "content-disposition",
      "x-request-id",
      "ratelimit-limit",
      "ratelimit-remaining",
      "ratelimit-reset",
      "idempotent-replayed",
    ])
      assert.ok(exposed.has(h), h);
    // Every header the answer carries that a page could want is exposed (or CORS-safelisted).
    const safelisted = new Set(["cache-control", "content-language", "content-type", "expires", "pragma"]);
    for (const name of Object.keys(res.headers)) {
      if (/^ratelimit|^x-request-id$/.test(name)) assert.ok(exposed.has(name) || safelisted.has(name), name);
    }
  });

  test("another origin gets no CORS headers; /admin gets no CORS; an OPTIONS that is no preflight is 404", async () => {
    const denied = await rawRequest(base, "OPTIONS", "/v1/exports", {
      origin: "https://evil.example.com",
      "access-control-request-method": "POST",
    });
    assert.equal(denied.headers["access-control-allow-origin"], undefined);
    const get = await rawRequest(base, "GET", "/healthz", { origin: "https://evil.example.com" });
    assert.equal(get.headers["access-control-allow-origin"], undefined);
    const admin = await rawRequest(base, "OPTIONS", "/admin/v1/tenants", {
      origin,
      "access-control-request-method": "GET",
    });
    assert.equal(admin.headers["access-control-allow-origin"], undefined);
    assertError(admin, 404, "not_found");
    assertError(await rawRequest(base, "OPTIONS", "/v1/exports", {}), 404, "not_found");
  });

  test("/admin percent-encoded (routed to the operator API all the same) gets no CORS either", async () => {
    for (const path of ["/%61dmin/v1/tenants", "/%61%64min/v1/tenants", "/admin/v1/%74enants"]) {
      const pre = await rawRequest(base, "OPTIONS", path, { origin, "access-control-request-method": "GET" });
      assert.equal(pre.headers["access-control-allow-origin"], undefined, `preflight ${path}: ${pre.status}`);
      const get = await rawRequest(base, "GET", path, { origin });
      assert.equal(
        get.headers["access-control-allow-origin"],
        undefined,
        `GET ${path}: ${get.status} ${get.body}`,
      );
    }
  });

  test("without EXPORTD_CORS_ORIGINS there is no CORS", async () => {
    const plain = await startTestService({}, clock);
    try {
      const b = await listen(plain);
      const res = await rawRequest(b, "OPTIONS", "/v1/exports", {
        origin,
        "access-control-request-method": "GET",
      });
      assert.equal(res.headers["access-control-allow-origin"], undefined);
      assertError(res, 404, "not_found");
    } finally {
      await plain.dispose();
    }
  });
});
