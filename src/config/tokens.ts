/**
 * Settings for the product's own sign-in tokens (JWTs beside exportd's API keys): where the
 * verification keys come from, which claims are checked, and how the tenant and scopes are read.
 * Given either by `EXPORTD_JWT_*` variables or by the config file's `tokens:` section (never both),
 * checked here once at start. Absent: exportd accepts its own API keys only.
 */
import { createPublicKey } from "node:crypto";
import { isScope, type Scope } from "../domain/scopes.js";

/** Signature algorithms of public keys (JWKS or PEM): the default allow-list. */
export const ASYMMETRIC_ALGORITHMS = [
  "RS256",
  "RS384",
  "RS512",
  "PS256",
  "PS384",
  "PS512",
  "ES256",
  "ES384",
  "ES512",
  "EdDSA",
  "Ed25519",
] as const;
/** HMAC algorithms: only with a shared secret, never with a public key (no HS/RS confusion). */
export const SYMMETRIC_ALGORITHMS = ["HS256", "HS384", "HS512"] as const;

/** Where the keys that verify a token's signature come from. */
export type TokenKeySource =
  | { kind: "jwks"; url: string }
  | { kind: "pem"; pem: string }
  | { kind: "secret"; secret: string };

export interface TokenSettings {
  keys: TokenKeySource;
  /** Required `iss` when set. */
  issuer: string | null;
  /** Required `aud` (one of the token's audiences) when set. */
  audience: string | null;
  /** Accepted `alg` values: a subset of the set the key source allows; `none` is never accepted. */
  algorithms: string[];
  /** Leeway for `exp` and `nbf`, seconds. */
  clockToleranceSeconds: number;
  /** A longer Authorization token is refused (401) before any parsing. Bytes. */
  maxBytes: number;
  /** The claim naming the tenant: a top-level name (namespaced URLs included) or a dotted path. */
  tenantClaim: string;
  /** The claim with the scopes: a space-separated string (`scope`) or an array of strings. */
  scopeClaim: string;
  /**
   * The token's scope names → exportd scopes. Null: exportd's own scope names are taken as they are.
   * Names neither maps nor knows are ignored.
   */
  scopeMap: Record<string, Scope[]> | null;
  /** Whether a tenant named by a valid token is created (default plan) on first sight. */
  createTenants: boolean;
  /** How long a verified token is trusted without verifying it again (never past its `exp`). Ms; 0: never. */
  cacheMs: number;
  /** A JWKS fetched longer ago than this is refreshed (in the background; cached keys keep working). Ms. */
  jwksMaxAgeMs: number;
  /** At most one JWKS fetch per this interval, whatever the tokens' `kid`s ask for. Ms. */
  jwksCooldownMs: number;
}

/** The settings as a source gives them (strings, numbers, a map), before defaults and checks. */
export interface TokenSettingsInput {
  jwksUrl?: string;
  publicKey?: string;
  hs256Secret?: string;
  issuer?: string;
  audience?: string;
  algorithms?: string[];
  clockToleranceSeconds?: number;
  maxBytes?: number;
  tenantClaim?: string;
  scopeClaim?: string;
  scopeMap?: Record<string, string[]>;
  createTenants?: boolean;
  cacheSeconds?: number;
  jwksMaxAgeSeconds?: number;
  jwksCooldownSeconds?: number;
}

export const TOKEN_DEFAULTS = {
  clockToleranceSeconds: 30,
  maxBytes: 8192,
  tenantClaim: "tenant",
  scopeClaim: "scope",
  createTenants: true,
  cacheSeconds: 30,
  jwksMaxAgeSeconds: 600,
  jwksCooldownSeconds: 30,
} as const;

/** Checks the input; returns the settings or the list of problems (each names its setting). */
export function checkTokenSettings(
  input: TokenSettingsInput,
  name: (key: keyof TokenSettingsInput) => string,
): TokenSettings | string[] {
  const problems: string[] = [];
  const sources = (["jwksUrl", "publicKey", "hs256Secret"] as const).filter((k) => input[k] !== undefined);
  if (sources.length !== 1) {
    return [
      `set exactly one of ${name("jwksUrl")}, ${name("publicKey")}, ${name("hs256Secret")}${sources.length ? ` (got ${sources.map(name).join(", ")})` : ""}`,
    ];
  }
  let keys: TokenKeySource;
  if (input.jwksUrl !== undefined) {
    let parsed: URL | null = null;
    try {
      parsed = new URL(input.jwksUrl);
    } catch {
      problems.push(`${name("jwksUrl")} must be a URL`);
    }
    if (parsed && parsed.protocol !== "https:" && parsed.protocol !== "http:")
      problems.push(`${name("jwksUrl")} must start with https:// (or http:// on a private network)`);
    keys = { kind: "jwks", url: input.jwksUrl };
  } else if (input.publicKey !== undefined) {
    if (!/-----BEGIN PUBLIC KEY-----/.test(input.publicKey))
      problems.push(`${name("publicKey")} must be a PEM public key (-----BEGIN PUBLIC KEY-----)`);
    else {
      try {
        createPublicKey(input.publicKey);
      } catch (err) {
        problems.push(`${name("publicKey")} cannot be read as a public key: ${(err as Error).message}`);
      }
    }
    keys = { kind: "pem", pem: input.publicKey };
  } else {
    const secret = input.hs256Secret ?? "";
    // RFC 7518 §3.2: an HMAC key at least as long as the hash (256 bits).
    if (Buffer.byteLength(secret) < 32) problems.push(`${name("hs256Secret")} must be at least 32 bytes`);
    keys = { kind: "secret", secret };
  }
  const allowed: readonly string[] = keys.kind === "secret" ? SYMMETRIC_ALGORITHMS : ASYMMETRIC_ALGORITHMS;
  const algorithms = input.algorithms ?? (keys.kind === "secret" ? ["HS256"] : [...ASYMMETRIC_ALGORITHMS]);
  for (const alg of algorithms) {
    if (!allowed.includes(alg))
      problems.push(
        `${name("algorithms")}: ${alg} is not allowed with ${keys.kind === "secret" ? "a shared secret" : "public keys"} (allowed: ${allowed.join(", ")})`,
      );
  }
  if (algorithms.length === 0) problems.push(`${name("algorithms")} must name at least one algorithm`);
  const scopeMap = input.scopeMap === undefined ? null : checkScopeMap(input.scopeMap, name, problems);
  const seconds = (key: keyof TokenSettingsInput, value: number, min: number, max: number) => {
    if (!Number.isFinite(value) || value < min || value > max)
      problems.push(`${name(key)} must be a number between ${min} and ${max}`);
    return Math.round(value * 1000);
  };
  const claim = (key: "tenantClaim" | "scopeClaim", fallback: string) => {
    const value = input[key] ?? fallback;
    if (value === "" || value.length > 200) problems.push(`${name(key)} must be a claim name`);
    return value;
  };
  const maxBytes = input.maxBytes ?? TOKEN_DEFAULTS.maxBytes;
  if (!Number.isInteger(maxBytes) || maxBytes < 512 || maxBytes > 65_536)
    problems.push(`${name("maxBytes")} must be an integer between 512 and 65536`);
  const settings: TokenSettings = {
    keys,
    issuer: input.issuer || null,
    audience: input.audience || null,
    algorithms,
    clockToleranceSeconds:
      seconds(
        "clockToleranceSeconds",
        input.clockToleranceSeconds ?? TOKEN_DEFAULTS.clockToleranceSeconds,
        0,
        300,
      ) / 1000,
    maxBytes,
    tenantClaim: claim("tenantClaim", TOKEN_DEFAULTS.tenantClaim),
    scopeClaim: claim("scopeClaim", TOKEN_DEFAULTS.scopeClaim),
    scopeMap,
    createTenants: input.createTenants ?? TOKEN_DEFAULTS.createTenants,
    cacheMs: seconds("cacheSeconds", input.cacheSeconds ?? TOKEN_DEFAULTS.cacheSeconds, 0, 300),
    jwksMaxAgeMs: seconds(
      "jwksMaxAgeSeconds",
      input.jwksMaxAgeSeconds ?? TOKEN_DEFAULTS.jwksMaxAgeSeconds,
      1,
      86_400,
    ),
    jwksCooldownMs: seconds(
      "jwksCooldownSeconds",
      input.jwksCooldownSeconds ?? TOKEN_DEFAULTS.jwksCooldownSeconds,
      0,
      3600,
    ),
  };
  return problems.length ? problems : settings;
}

function checkScopeMap(
  map: Record<string, string[]>,
  name: (key: keyof TokenSettingsInput) => string,
  problems: string[],
): Record<string, Scope[]> {
  const out: Record<string, Scope[]> = {};
  for (const [theirs, ours] of Object.entries(map)) {
    const scopes: Scope[] = [];
    for (const scope of ours) {
      if (isScope(scope)) scopes.push(scope);
      else problems.push(`${name("scopeMap")}: ${theirs} → "${scope}" is no exportd scope`);
    }
    out[theirs] = scopes;
  }
  return out;
}

type Env = Record<string, string | undefined>;

/** The environment variable of each setting. */
export const TOKEN_ENV: Record<keyof TokenSettingsInput, string> = {
  jwksUrl: "EXPORTD_JWT_JWKS_URL",
  publicKey: "EXPORTD_JWT_PUBLIC_KEY",
  hs256Secret: "EXPORTD_JWT_HS256_SECRET",
  issuer: "EXPORTD_JWT_ISSUER",
  audience: "EXPORTD_JWT_AUDIENCE",
  algorithms: "EXPORTD_JWT_ALGORITHMS",
  clockToleranceSeconds: "EXPORTD_JWT_CLOCK_TOLERANCE_SECONDS",
  maxBytes: "EXPORTD_JWT_MAX_BYTES",
  tenantClaim: "EXPORTD_JWT_TENANT_CLAIM",
  scopeClaim: "EXPORTD_JWT_SCOPE_CLAIM",
  scopeMap: "EXPORTD_JWT_SCOPE_MAP",
  createTenants: "EXPORTD_JWT_CREATE_TENANTS",
  cacheSeconds: "EXPORTD_JWT_CACHE_SECONDS",
  jwksMaxAgeSeconds: "EXPORTD_JWT_JWKS_MAX_AGE_SECONDS",
  jwksCooldownSeconds: "EXPORTD_JWT_JWKS_COOLDOWN_SECONDS",
};

/**
 * Reads `EXPORTD_JWT_*`: null when none is set. Lists are comma-separated; the scope map reads
 * `theirs=ours ours,theirs2=ours` (several exportd scopes separated by spaces). Returns the input
 * and the problems of values that are not numbers or booleans.
 */
export function tokenInputFromEnv(env: Env): { input: TokenSettingsInput; problems: string[] } | null {
  const raw = (key: keyof TokenSettingsInput) => {
    const value = env[TOKEN_ENV[key]];
    return value === undefined || value === "" ? undefined : value;
  };
  if (!Object.keys(TOKEN_ENV).some((k) => raw(k as keyof TokenSettingsInput) !== undefined)) return null;
  const problems: string[] = [];
  const number = (key: keyof TokenSettingsInput) => {
    const value = raw(key);
    if (value === undefined) return undefined;
    const n = Number(value);
    if (!Number.isFinite(n)) problems.push(`${TOKEN_ENV[key]} must be a number, got "${value}"`);
    return n;
  };
  const list = (value: string | undefined) =>
    value
      ?.split(",")
      .map((s) => s.trim())
      .filter(Boolean);
  let createTenants: boolean | undefined;
  const create = raw("createTenants")?.toLowerCase();
  if (create !== undefined) {
    if (["1", "true", "yes", "on"].includes(create)) createTenants = true;
    else if (["0", "false", "no", "off"].includes(create)) createTenants = false;
    else problems.push(`${TOKEN_ENV.createTenants} must be true or false`);
  }
  let scopeMap: Record<string, string[]> | undefined;
  const mapText = raw("scopeMap");
  if (mapText !== undefined) {
    scopeMap = {};
    for (const entry of list(mapText) ?? []) {
      const [theirs, ours] = entry.split("=");
      if (!theirs || ours === undefined) {
        problems.push(`${TOKEN_ENV.scopeMap}: "${entry}" is not theirs=ours`);
        continue;
      }
      scopeMap[theirs.trim()] = ours.trim().split(/\s+/).filter(Boolean);
    }
  }
  const input: TokenSettingsInput = {
    jwksUrl: raw("jwksUrl"),
    // A PEM in one line of an environment file may carry its line breaks as "\n".
    publicKey: raw("publicKey")?.replaceAll("\\n", "\n"),
    hs256Secret: raw("hs256Secret"),
    issuer: raw("issuer"),
    audience: raw("audience"),
    algorithms: list(raw("algorithms")),
    clockToleranceSeconds: number("clockToleranceSeconds"),
    maxBytes: number("maxBytes"),
    tenantClaim: raw("tenantClaim"),
    scopeClaim: raw("scopeClaim"),
    scopeMap,
    createTenants,
    cacheSeconds: number("cacheSeconds"),
    jwksMaxAgeSeconds: number("jwksMaxAgeSeconds"),
    jwksCooldownSeconds: number("jwksCooldownSeconds"),
  };
  for (const key of Object.keys(input) as (keyof TokenSettingsInput)[])
    if (input[key] === undefined) delete input[key];
  return { input, problems };
}

/**
 * The token settings from the environment and the config file's section together (each setting from
 * one of them, never both): null when neither sets any; else the settings or the problems, each
 * naming its variable or key.
 */
export function resolveTokenSettings(
  env: Env,
  fromFile: TokenSettingsInput | null,
  fileKeys: Record<string, keyof TokenSettingsInput>,
): TokenSettings | string[] | null {
  const fromEnv = tokenInputFromEnv(env);
  if (!fromEnv && !fromFile) return null;
  const fileKeyOf = (key: keyof TokenSettingsInput) =>
    `EXPORTD_CONFIG tokens.${Object.entries(fileKeys).find(([, k]) => k === key)?.[0] ?? key}`;
  const problems = [...(fromEnv?.problems ?? [])];
  const envInput = fromEnv?.input ?? {};
  for (const key of Object.keys(envInput) as (keyof TokenSettingsInput)[]) {
    if (fromFile?.[key] !== undefined) problems.push(`${TOKEN_ENV[key]} and ${fileKeyOf(key)} are both set`);
  }
  if (problems.length) return problems;
  const input = { ...fromFile, ...envInput };
  return checkTokenSettings(input, (key) => (key in envInput ? TOKEN_ENV[key] : fileKeyOf(key)));
}
