/**
 * Verifies the product's own sign-in tokens (JWS-signed JWTs) with `jose`: the signature against
 * the configured key source (a JWKS URL, a PEM public key or an HS256 secret), the algorithm
 * against the allow-list, `exp` (required) and `nbf` with the clock tolerance, `iss` and `aud` when
 * configured; then reads the tenant, the subject and the scopes from the claims. No crypto of its
 * own: jose does every check on the token itself.
 *
 * JWKS keys are kept in the process. A token whose `kid` the cached set lacks triggers a refetch
 * (at most one per `jwksCooldownMs`, one at a time); a set older than `jwksMaxAgeMs` is refreshed in
 * the background. A failed fetch keeps the cached keys, so tokens signed by them keep working while
 * the JWKS server is down. The `kid` only selects among fetched keys: it never names a URL or a
 * file, and the `jku`/`x5u`/`jwk` headers are ignored.
 */
import { createPublicKey, type KeyObject } from "node:crypto";
import { createLocalJWKSet, errors, type JWTPayload, type JWTVerifyGetKey, jwtVerify } from "jose";
import type { TokenSettings } from "../config/tokens.js";
import { isScope, type Scope } from "../domain/scopes.js";

/** A compact JWS: three base64url parts. exportd's own keys (`exd_…`) have no dot. */
const COMPACT_JWS = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;
/** A JWKS document larger than this is refused (a set of a few dozen keys is a few KiB). */
const MAX_JWKS_BYTES = 1024 * 1024;
/** A JWKS fetch that takes longer than this fails (the cached keys stay). */
const JWKS_TIMEOUT_MS = 5_000;
/** Longest `sub` and tenant name accepted (they are stored on exports and written to logs). */
const MAX_SUBJECT_LENGTH = 255;
const MAX_TENANT_LENGTH = 200;
/**
 * A name that ends up in logs, listings and the tenant's identity: no control characters, and none
 * that are invisible or change the layout (format characters such as zero-width spaces and bidi
 * overrides, line and paragraph separators, surrogates, private-use and unassigned code points),
 * and no blank at either end — each of those let a claim name a tenant that reads as another one.
 */
const PRINTABLE = /^(?![\s])(?!.*[\s]$)[^\p{Cc}\p{Cf}\p{Zl}\p{Zp}\p{Cs}\p{Co}\p{Cn}]+$/su;

/** Whether a bearer credential is a JWT rather than an exportd key. */
export function looksLikeJwt(credential: string): boolean {
  return COMPACT_JWS.test(credential);
}

/** What a valid token says. */
export interface VerifiedToken {
  tenant: string;
  subject: string;
  scopes: Scope[];
  /** `exp` in epoch milliseconds. */
  expiresAt: number;
}

/**
 * Why a token was refused. `reason` is for the server's log only (it names the failed check);
 * whether the token expired may be told to the client; `unavailable`: no key could be loaded at all (JWKS down
 * since start).
 */
export interface TokenRejection {
  reason: string;
  expired: boolean;
  unavailable: boolean;
}

export type TokenVerdict = { ok: true; token: VerifiedToken } | ({ ok: false } & TokenRejection);

const reject = (reason: string, extra: Partial<TokenRejection> = {}): TokenVerdict => ({
  ok: false,
  reason,
  expired: false,
  unavailable: false,
  ...extra,
});

/**
 * A claim by name, or by dotted path when no top-level claim has the whole name (so namespaced
 * names like `https://example.com/tenant` work as they are, and `org.id` reads `{org: {id}}`).
 * Own properties only: `__proto__` or `constructor` in a path reads nothing.
 */
export function claimAt(payload: JWTPayload, path: string): unknown {
  if (Object.hasOwn(payload, path)) return payload[path];
  let value: unknown = payload;
  for (const part of path.split(".")) {
    if (typeof value !== "object" || value === null || !Object.hasOwn(value, part)) return undefined;
    value = (value as Record<string, unknown>)[part];
  }
  return value;
}

/** The JWKS of a URL, kept in the process (see the module comment). */
class JwksKeys {
  private keys: JWTVerifyGetKey | null = null;
  private fetchedAt = 0;
  private lastAttempt: number | null = null;
  private inFlight: Promise<void> | null = null;

  constructor(
    private readonly url: string,
    private readonly maxAgeMs: number,
    private readonly cooldownMs: number,
    private readonly onFetchFailed: (err: unknown) => void,
  ) {}

  get loaded(): boolean {
    return this.keys !== null;
  }

  private mayFetch(now: number): boolean {
    return this.lastAttempt === null || now - this.lastAttempt >= this.cooldownMs;
  }

  /** One fetch at a time; a failure is reported and leaves the cached keys in place. */
  refresh(now: number): Promise<void> {
    if (this.inFlight) return this.inFlight;
    if (!this.mayFetch(now)) return Promise.resolve();
    this.lastAttempt = now;
    this.inFlight = this.fetchSet()
      .then((keys) => {
        this.keys = keys;
        this.fetchedAt = now;
      })
      .catch(this.onFetchFailed)
      .finally(() => {
        this.inFlight = null;
      });
    return this.inFlight;
  }

  private async fetchSet(): Promise<JWTVerifyGetKey> {
    const res = await fetch(this.url, {
      headers: { accept: "application/jwk-set+json, application/json" },
      redirect: "error",
      signal: AbortSignal.timeout(JWKS_TIMEOUT_MS),
    });
    if (!res.ok) {
      await res.body?.cancel();
      throw new Error(`JWKS answered ${res.status}`);
    }
    // Read at most MAX_JWKS_BYTES, whatever the server declares (or does not).
    const chunks: Uint8Array[] = [];
    let size = 0;
    if (res.body) {
      for await (const chunk of res.body) {
        size += chunk.byteLength;
        if (size > MAX_JWKS_BYTES) throw new Error(`JWKS is larger than ${MAX_JWKS_BYTES} bytes`);
        chunks.push(chunk);
      }
    }
    return createLocalJWKSet(JSON.parse(Buffer.concat(chunks).toString("utf8")));
  }

  /** The key getter for jose: refetches once on an unknown `kid` when the cooldown allows. */
  async getter(now: number): Promise<JWTVerifyGetKey | null> {
    if (!this.keys) await this.refresh(now);
    else if (now - this.fetchedAt >= this.maxAgeMs) void this.refresh(now);
    return this.keys;
  }

  /** After an unknown `kid`: refetch (rate-limited) and say whether the set changed. */
  async refetchForUnknownKid(now: number): Promise<JWTVerifyGetKey | null> {
    const before = this.keys;
    await this.refresh(now);
    return this.keys !== before ? this.keys : null;
  }
}

/** Verifies tokens for one configuration. Construct once per process (the JWKS cache lives here). */
export class TokenVerifier {
  private readonly staticKey: KeyObject | Uint8Array | null;
  private readonly jwks: JwksKeys | null;

  /** Throws when the PEM key cannot be read (a start-up error). */
  constructor(
    private readonly settings: TokenSettings,
    onJwksFetchFailed: (err: unknown) => void,
  ) {
    const source = settings.keys;
    this.jwks =
      source.kind === "jwks"
        ? new JwksKeys(source.url, settings.jwksMaxAgeMs, settings.jwksCooldownMs, onJwksFetchFailed)
        : null;
    this.staticKey =
      source.kind === "pem"
        ? createPublicKey(source.pem)
        : source.kind === "secret"
          ? new TextEncoder().encode(source.secret)
          : null;
  }

  /** Checks a bearer token at `now` (epoch ms). Never throws: a refusal says why. */
  async verify(token: string, now: number): Promise<TokenVerdict> {
    if (Buffer.byteLength(token) > this.settings.maxBytes) return reject("token larger than the size cap");
    let payload: JWTPayload;
    try {
      payload = await this.verifySignedClaims(token, now);
    } catch (err) {
      if (err instanceof NoKeysLoaded) return reject("no JWKS could be fetched yet", { unavailable: true });
      if (err instanceof errors.JWTExpired) return reject(`${err.code}: ${err.message}`, { expired: true });
      if (err instanceof errors.JOSEError) return reject(`${err.code}: ${err.message}`);
      // Anything else jose throws on a malformed token (a TypeError on a bad key type, say) is a refusal too.
      return reject(`invalid token: ${(err as Error).message}`);
    }
    return this.readClaims(payload);
  }

  private async verifySignedClaims(token: string, now: number): Promise<JWTPayload> {
    const s = this.settings;
    const options = {
      algorithms: s.algorithms,
      clockTolerance: s.clockToleranceSeconds,
      currentDate: new Date(now),
      requiredClaims: ["exp"],
      ...(s.issuer ? { issuer: s.issuer } : {}),
      ...(s.audience ? { audience: s.audience } : {}),
    };
    if (this.staticKey) return (await jwtVerify(token, this.staticKey, options)).payload;
    const jwks = this.jwks as JwksKeys;
    const keys = await jwks.getter(now);
    if (!keys) throw new NoKeysLoaded();
    try {
      return (await jwtVerify(token, keys, options)).payload;
    } catch (err) {
      if (!(err instanceof errors.JWKSNoMatchingKey)) throw err;
      // A kid the cached set lacks: the provider may have rotated. Refetch (rate-limited) and retry.
      const fresh = await jwks.refetchForUnknownKid(now);
      if (!fresh) throw err;
      return (await jwtVerify(token, fresh, options)).payload;
    }
  }

  private readClaims(payload: JWTPayload): TokenVerdict {
    const s = this.settings;
    const subject = payload.sub;
    if (
      typeof subject !== "string" ||
      subject === "" ||
      subject.length > MAX_SUBJECT_LENGTH ||
      !PRINTABLE.test(subject)
    )
      return reject("sub missing, not a string, or not a printable name of at most 255 characters");
    const tenant = claimAt(payload, s.tenantClaim);
    if (
      typeof tenant !== "string" ||
      tenant === "" ||
      tenant.length > MAX_TENANT_LENGTH ||
      !PRINTABLE.test(tenant)
    )
      return reject(
        `tenant claim "${s.tenantClaim}" missing, not a string, or not a printable name of at most 200 characters`,
      );
    const raw = claimAt(payload, s.scopeClaim);
    const names =
      typeof raw === "string"
        ? raw.split(/\s+/).filter(Boolean)
        : Array.isArray(raw)
          ? raw.filter((n): n is string => typeof n === "string")
          : [];
    const map = s.scopeMap;
    const mapped = map
      ? names.flatMap((n) => (Object.hasOwn(map, n) ? (map[n] as Scope[]) : []))
      : names.filter(isScope);
    return {
      ok: true,
      token: {
        tenant,
        subject,
        scopes: [...new Set(mapped)],
        expiresAt: (payload.exp as number) * 1000,
      },
    };
  }
}

class NoKeysLoaded extends Error {}
