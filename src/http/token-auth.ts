/**
 * Authentication by the product's own sign-in tokens (JWT), beside exportd's API keys: a verified
 * token becomes the same AuthContext a key does, with the tenant its claim names (created on first
 * sight with the default plan, or required to exist), the scopes its claims map to, and the actor
 * `token:<sub>`. Refusals answer 401 `unauthorized` in the one envelope, saying only that the token
 * is not valid (or has expired); the failed check goes to the server's log.
 */
import { createHash } from "node:crypto";
import type { FastifyBaseLogger } from "fastify";
import type { Logger } from "pino";
import type { TokenSettings } from "../config/tokens.js";
import { AppError, serviceUnavailable } from "../domain/errors.js";
import type { Scope } from "../domain/scopes.js";
import type { OperatorPort, TenancyPort, Tenant } from "../metadata/types.js";
import { actors, stampOf } from "../usecases/audit.js";
import { TtlCache } from "../usecases/ttl-cache.js";
import type { AuthContext, FailedAuthLimiter } from "./auth.js";
import { boundToOwnTenant } from "./own-tenant.js";
import { looksLikeJwt, TokenVerifier, type VerifiedToken } from "./token-verifier.js";

/** A tenant named by tokens is looked up at most this often per process (a plan change shows within it). */
const TENANT_CACHE_MS = 1_000;

function tokenRefused(message: string): AppError {
  return new AppError("unauthorized", message, [], {
    "www-authenticate": 'Bearer realm="exportd", error="invalid_token"',
  });
}

/** The request's parts token authentication reads and writes. */
export interface TokenRequest {
  ip: string;
  log: FastifyBaseLogger;
  params: unknown;
  headers: Readonly<Record<string, string | string[] | undefined>>;
  /**
   * A long-lived response checks its credential again (auth.ts's credentialCheck): no failed
   * attempt is counted, no tenant created, nothing logged; `fresh`: the tenant is read from the
   * store, not the cache.
   */
  recheck?: "cached" | "fresh";
}

/** Turns bearer JWTs into AuthContexts; one per process. */
export class TokenAuthenticator {
  private readonly verifier: TokenVerifier;
  /**
   * Verified tokens by the SHA-256 of the token (never the token), each until its `exp` or
   * `cacheMs`, whichever comes first: a repeated token costs a hash, not a signature check.
   */
  private readonly verified: TtlCache<VerifiedToken>;
  private readonly tenants = new TtlCache<Tenant>(TENANT_CACHE_MS);

  constructor(
    private readonly settings: TokenSettings,
    private readonly store: TenancyPort & Pick<OperatorPort, "createTenant">,
    private readonly failedAuth: FailedAuthLimiter,
    log: FastifyBaseLogger,
  ) {
    this.verifier = new TokenVerifier(settings, (err) =>
      log.warn(
        { err, jwks_url: settings.keys.kind === "jwks" ? settings.keys.url : null },
        "JWKS fetch failed",
      ),
    );
    this.verified = new TtlCache<VerifiedToken>(settings.cacheMs);
  }

  /** Whether this bearer credential is a token this authenticator handles (else: an API key). */
  handles(credential: string): boolean {
    return looksLikeJwt(credential);
  }

  /**
   * The caller of a request bearing `token`, for a route needing `scope`. Throws AppError:
   * `rate_limited` (the address sent too many invalid credentials), `unauthorized`,
   * `insufficient_scope`, `service_unavailable` (no JWKS could be fetched since start).
   */
  async authenticate(token: string, request: TokenRequest, now: number, scope: Scope): Promise<AuthContext> {
    const digest = createHash("sha256").update(token).digest("hex");
    let verified = this.verified.get(digest, now);
    const recheck = request.recheck !== undefined;
    if (!verified) {
      const retryAfter = recheck ? null : this.failedAuth.retryAfterSeconds(request.ip, now);
      if (retryAfter !== null) {
        throw new AppError(
          "rate_limited",
          "Too many requests with a missing or invalid credential from this address. Retry later.",
          [],
          { "retry-after": String(retryAfter) },
        );
      }
      const verdict = await this.verifier.verify(token, now);
      if (!verdict.ok) {
        request.log.info({ reason: verdict.reason }, "bearer token refused");
        if (verdict.unavailable)
          throw serviceUnavailable("The keys that verify sign-in tokens cannot be fetched right now.");
        if (!recheck) this.failedAuth.fail(request.ip, now);
        throw tokenRefused(verdict.expired ? "The token has expired." : "The bearer token is not valid.");
      }
      verified = verdict.token;
      const ttl = Math.min(this.settings.cacheMs, verified.expiresAt - now);
      if (ttl > 0) this.verified.set(digest, verified, now, ttl);
    }
    const tenant = await this.tenantNamed(
      verified.tenant,
      verified.subject,
      now,
      !recheck,
      request.recheck === "fresh",
    );
    if (!tenant) {
      request.log.info({ tenant: verified.tenant }, "bearer token refused: no such tenant");
      if (!recheck) this.failedAuth.fail(request.ip, now);
      throw tokenRefused("The bearer token is not valid.");
    }
    // A token acts for the tenant its claim names, as a key does; a disable shows within the
    // tenant cache's second.
    const actor = actors.token(verified.subject);
    const auth = boundToOwnTenant(request.headers, tenant, {
      // The rate limit counts per subject of a tenant, as it counts per key.
      keyId: `token:${tenant.id}:${verified.subject}`,
      scopes: verified.scopes,
      actor,
      expiresAt: verified.expiresAt,
    });
    if (!verified.scopes.includes(scope)) {
      throw new AppError(
        "insufficient_scope",
        `This route needs the "${scope}" scope, which the token does not grant.`,
        [{ field: "authorization", code: "missing_scope", message: scope }],
      );
    }
    if (!recheck) {
      const exportId = (request.params as { id?: unknown } | undefined)?.id;
      (request.log as Logger).setBindings({
        tenant_id: tenant.id,
        actor,
        ...(typeof exportId === "string" ? { export_id: exportId } : {}),
      });
    }
    return auth;
  }

  /**
   * The tenant of this name; created with the default plan on first sight when the settings say
   * so and `mayCreate` (not when a stream checks its token again: a tenant deleted meanwhile ends it;
   * `fresh`: read from the store, not the cache),
   * audited as `tenant.create` by `token:<subject>` in the same transaction (as an operator's
   * create is).
   */
  private async tenantNamed(
    name: string,
    subject: string,
    now: number,
    mayCreate: boolean,
    fresh: boolean,
  ): Promise<Tenant | null> {
    const cached = fresh ? undefined : this.tenants.get(name, now);
    if (cached) return cached;
    // Read first: creating is a write, and only the first sight of a tenant needs it.
    let tenant = await this.store.findTenantByName(name);
    if (!tenant && mayCreate && this.settings.createTenants) {
      tenant =
        (await this.store.createTenant(name, {}, stampOf(actors.token(subject), now))) ??
        // Another request (or process) created it first, and audited it.
        (await this.store.findTenantByName(name));
    }
    if (tenant) this.tenants.set(name, tenant, now);
    return tenant;
  }
}
