/** Token and CORS settings: what EXPORTD_JWT_*, the config file's `tokens:` and EXPORTD_CORS_ORIGINS accept. */
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { test } from "node:test";
import { ConfigError, loadConfig } from "../../src/config/index.js";
import { ASYMMETRIC_ALGORITHMS } from "../../src/config/tokens.js";
import { claimAt } from "../../src/http/token-verifier.js";
import { tempDir } from "../helpers/service.js";

const SECRET = "0123456789abcdef0123456789abcdef";
const PEM = "-----BEGIN PUBLIC KEY-----\nMFkw\n-----END PUBLIC KEY-----";

test("no token setting: keys only; defaults with a JWKS URL", () => {
  assert.equal(loadConfig({}).tokens, null);
  const t = loadConfig({ EXPORTD_JWT_JWKS_URL: "https://idp.example.com/.well-known/jwks.json" }).tokens;
  assert.deepEqual(t?.keys, { kind: "jwks", url: "https://idp.example.com/.well-known/jwks.json" });
  assert.deepEqual(t?.algorithms, [...ASYMMETRIC_ALGORITHMS]);
  assert.equal(t?.clockToleranceSeconds, 30);
  assert.equal(t?.maxBytes, 8192);
  assert.equal(t?.tenantClaim, "tenant");
  assert.equal(t?.createTenants, true);
  assert.equal(t?.jwksCooldownMs, 30_000);
});

test("exactly one key source", () => {
  assert.throws(() => loadConfig({ EXPORTD_JWT_ISSUER: "https://idp" }), /exactly one of/);
  assert.throws(
    () => loadConfig({ EXPORTD_JWT_JWKS_URL: "https://idp/jwks", EXPORTD_JWT_HS256_SECRET: SECRET }),
    /exactly one of/,
  );
});

test("algorithms: never none, HS only with a secret, RS/ES/EdDSA only with public keys", () => {
  const jwks = { EXPORTD_JWT_JWKS_URL: "https://idp/jwks" };
  assert.throws(() => loadConfig({ ...jwks, EXPORTD_JWT_ALGORITHMS: "none" }), /none is not allowed/);
  assert.throws(() => loadConfig({ ...jwks, EXPORTD_JWT_ALGORITHMS: "RS256,HS256" }), /HS256 is not allowed/);
  assert.throws(() => loadConfig({ EXPORTD_JWT_PUBLIC_KEY: PEM, EXPORTD_JWT_ALGORITHMS: "HS256" }), /HS256/);
  assert.throws(
    () => loadConfig({ EXPORTD_JWT_HS256_SECRET: SECRET, EXPORTD_JWT_ALGORITHMS: "RS256" }),
    /RS256 is not allowed with a shared secret/,
  );
  assert.deepEqual(loadConfig({ EXPORTD_JWT_HS256_SECRET: SECRET }).tokens?.algorithms, ["HS256"]);
  assert.throws(() => loadConfig({ EXPORTD_JWT_HS256_SECRET: "short" }), /at least 32 bytes/);
  assert.throws(() => loadConfig({ EXPORTD_JWT_PUBLIC_KEY: "not a pem" }), /PEM public key/);
  assert.throws(() => loadConfig({ EXPORTD_JWT_PUBLIC_KEY: PEM }), /cannot be read as a public key/);
});

test("scope map and numbers from the environment", () => {
  const t = loadConfig({
    EXPORTD_JWT_HS256_SECRET: SECRET,
    EXPORTD_JWT_SCOPE_MAP: "read=exports:read datasets:read, write=exports:write",
    EXPORTD_JWT_CLOCK_TOLERANCE_SECONDS: "5",
    EXPORTD_JWT_CREATE_TENANTS: "false",
  }).tokens;
  assert.deepEqual(t?.scopeMap, { read: ["exports:read", "datasets:read"], write: ["exports:write"] });
  assert.equal(t?.clockToleranceSeconds, 5);
  assert.equal(t?.createTenants, false);
  assert.throws(
    () => loadConfig({ EXPORTD_JWT_HS256_SECRET: SECRET, EXPORTD_JWT_SCOPE_MAP: "read=admin:all" }),
    /no exportd scope/,
  );
  assert.throws(
    () => loadConfig({ EXPORTD_JWT_HS256_SECRET: SECRET, EXPORTD_JWT_CLOCK_TOLERANCE_SECONDS: "3600" }),
    ConfigError,
  );
});

test("the config file's tokens section; a setting in both places is refused", () => {
  const dir = tempDir();
  const file = path.join(dir, "exportd.yaml");
  fs.writeFileSync(
    file,
    [
      "tokens:",
      "  jwks_url: https://idp.example.com/jwks",
      "  issuer: https://idp.example.com/",
      "  tenant_claim: org.id",
      "  scope_map:",
      "    export:read: exports:read",
      "    export:all: [exports:read, exports:write]",
    ].join("\n"),
  );
  const t = loadConfig({ EXPORTD_CONFIG: file }, dir).tokens;
  assert.equal(t?.issuer, "https://idp.example.com/");
  assert.equal(t?.tenantClaim, "org.id");
  assert.deepEqual(t?.scopeMap, {
    "export:read": ["exports:read"],
    "export:all": ["exports:read", "exports:write"],
  });
  // Audience from the environment beside the file: fine; the issuer in both: refused.
  assert.equal(
    loadConfig({ EXPORTD_CONFIG: file, EXPORTD_JWT_AUDIENCE: "exportd" }, dir).tokens?.audience,
    "exportd",
  );
  assert.throws(
    () => loadConfig({ EXPORTD_CONFIG: file, EXPORTD_JWT_ISSUER: "https://x/" }, dir),
    /EXPORTD_JWT_ISSUER and EXPORTD_CONFIG tokens.issuer are both set/,
  );
  fs.writeFileSync(file, "tokens:\n  jwks_url: https://idp/jwks\n  max_bytes: big\n  leeway: 3\n");
  assert.throws(() => loadConfig({ EXPORTD_CONFIG: file }, dir), /tokens.max_bytes: must be a number/);
  assert.throws(() => loadConfig({ EXPORTD_CONFIG: file }, dir), /tokens.leeway: unknown key/);
  fs.rmSync(dir, { recursive: true, force: true });
});

test("CORS origins: off by default, exact origins or *", () => {
  assert.equal(loadConfig({}).corsOrigins, null);
  assert.deepEqual(
    loadConfig({ EXPORTD_CORS_ORIGINS: "https://a.example.com, http://localhost:3000" }).corsOrigins,
    ["https://a.example.com", "http://localhost:3000"],
  );
  assert.deepEqual(loadConfig({ EXPORTD_CORS_ORIGINS: "*" }).corsOrigins, ["*"]);
  assert.throws(() => loadConfig({ EXPORTD_CORS_ORIGINS: "https://a.example.com/" }), /no origin/);
  assert.throws(() => loadConfig({ EXPORTD_CORS_ORIGINS: "https://a.example.com/app" }), /no origin/);
  assert.throws(() => loadConfig({ EXPORTD_CORS_ORIGINS: "*,https://a.example.com" }), /either/);
});

test("claims by top-level name first, then by dotted path, own properties only", () => {
  const payload = { "https://example.com/tenant": "ns", org: { id: "dotted" }, "org.id": "flat" };
  assert.equal(claimAt(payload, "https://example.com/tenant"), "ns");
  assert.equal(claimAt(payload, "org.id"), "flat");
  assert.equal(claimAt({ org: { id: "dotted" } }, "org.id"), "dotted");
  assert.equal(claimAt({ org: {} }, "org.constructor"), undefined);
  assert.equal(claimAt({}, "__proto__"), undefined);
  assert.equal(claimAt({ org: "x" }, "org.length"), undefined);
});
