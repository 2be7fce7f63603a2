/**
 * Bearer-key authentication and per-route scopes. A route declares `config: { scope }`; routes
 * without one (health, docs, signed files) are public. The caller's tenant lands on `request.auth`
 * and every handler scopes its queries with it. A bearer JWT, when tokens are configured, is
 * verified by token-auth.ts instead and ends in the same AuthContext.
 */
import { createHash } from "node:crypto";
import type { FastifyInstance, FastifyRequest } from "fastify";
import type { Logger } from "pino";
import type { TokenSettings } from "../config/tokens.js";
import { hashesMatch, hashKey, keyPrefix } from "../domain/api-keys.js";
import { AppError, invalidRequest } from "../domain/errors.js";
import type { Scope } from "../domain/scopes.js";
import type { TenantLimits } from "../domain/tenant.js";
import type { ApiKeyRecord, OperatorPort, TenancyPort } from "../metadata/types.js";
import { TtlCache } from "../usecases/ttl-cache.js";
import { TENANT_HEADER, type TenantActing } from "./acting.js";
import { boundToOwnTenant } from "./own-tenant.js";
import type { TenantsById } from "./tenants-by-id.js";
import { TokenAuthenticator } from "./token-auth.js";

export interface AuthContext {
  tenantId: string;
  tenantName: string;
  plan: string;
  limits: TenantLimits;
  keyId: string;
  scopes: readonly Scope[];
  /**
   * Who acts, as recorded on exports (`created_by`) and in the logs: `key:<prefix>` for a tenant
   * key, `token:<sub>` for a product token, `operator:<prefix>` for an operator key acting for a
   * tenant (http/acting.ts).
   */
  actor: string;
  /**
   * When the credential stops being valid by itself (ms): a sign-in token's `exp`. Absent for keys,
   * which stay valid until revoked.
   */
  expiresAt?: number;
}

/** The credential as a request presents it: what is needed to authenticate it again. */
interface PresentedCredential {
  authorization: string | undefined;
  /** X-Exportd-Tenant (an array: several header lines, refused). */
  tenant: string | string[] | undefined;
}

/**
 * A request's credential, to be checked again while a long-lived response (a progress stream)
 * runs: every other request authenticates on its own, a stream only when it opens.
 */
export interface CredentialCheck {
  /** The same for the same credential and scope (a digest, never the credential): one check serves every stream of it. */
  id: string;
  /** When the credential stops being valid by itself (a token's `exp`, ms), or null. */
  expiresAt: number | null;
  /**
   * Authenticates the credential again as a new request would (the same one-second caches, but no
   * failed-attempt count, no tenant created, nothing written): the caller now, or the AppError the
   * request would get (`unauthorized`, `tenant_disabled`, `insufficient_scope`, `unknown_tenant`…).
   * `fresh`: the key and the tenant are read from the store, not the caches (a stream's last event,
   * so that a tenant disabled a moment ago ends it with the reason, not with its canceled export).
   */
  check(now: number, options?: { fresh?: boolean }): Promise<AuthContext>;
}

/** A registered route and the scope it needs (null: public). */
export interface RouteScope {
  method: string;
  url: string;
  scope: Scope | null;
}

declare module "fastify" {
  interface FastifyRequest {
    auth: AuthContext | null;
  }
  interface FastifyInstance {
    /** Every route registered after installAuth, with its scope: what the scope tests walk. */
    routeScopes: readonly RouteScope[];
    /** The credential of an authenticated request, to check again later (routes with a scope only). */
    credentialCheck(request: FastifyRequest): CredentialCheck;
  }
  interface FastifyContextConfig {
    /** The scope a key needs for this route; absent → no authentication. */
    scope?: Scope;
  }
}

/** last_used_at is written at most this often per key, so reads stay reads. */
const TOUCH_EVERY_MS = 60_000;
/**
 * A verified key is trusted this long per process without reading it again: a revoked or
 * rotated-out key stops working within this on every API process. Only valid keys are kept, by
 * the SHA-256 of the key (never the key itself).
 */
export const KEY_CACHE_MS = 1_000;

/**
 * Failed authentications (missing or invalid key) per client address, in fixed one-minute windows,
 * so a flood of bad keys costs one key lookup per allowed attempt, not one per request. Kept in the
 * process: each API process grants an address its own budget. At most MAX_ADDRESSES addresses are
 * counted per window (memory stays bounded); later ones in the same window go uncounted.
 */
export class FailedAuthLimiter {
  static readonly WINDOW_MS = 60_000;
  private static readonly MAX_ADDRESSES = 100_000;
  private readonly failures = new Map<string, number>();
  private windowStart = 0;

  constructor(private readonly maxPerWindow: number) {}

  private roll(now: number): void {
    if (now - this.windowStart < FailedAuthLimiter.WINDOW_MS) return;
    this.failures.clear();
    this.windowStart = now - (now % FailedAuthLimiter.WINDOW_MS);
  }

  /** Seconds until the address may try again, or null while it is within its budget. */
  retryAfterSeconds(address: string, now: number): number | null {
    this.roll(now);
    if ((this.failures.get(address) ?? 0) < this.maxPerWindow) return null;
    return Math.max(1, Math.ceil((this.windowStart + FailedAuthLimiter.WINDOW_MS - now) / 1000));
  }

  fail(address: string, now: number): void {
    this.roll(now);
    const count = this.failures.get(address);
    if (count !== undefined) this.failures.set(address, count + 1);
    else if (this.failures.size < FailedAuthLimiter.MAX_ADDRESSES) this.failures.set(address, 1);
  }
}

/**
 * How many Authorization field lines the request has. Node keeps only the first one in
 * `headers.authorization`; a second one would silently lose, so exportd refuses the request instead
 * (RFC 9110 §5.3: Authorization is no list, it may appear once).
 */
function authorizationLines(rawHeaders: readonly string[]): number {
  return headerValues(rawHeaders, "authorization").length;
}

/** Every value of the header `name` (lower case), one per field line, as sent. */
function headerValues(rawHeaders: readonly string[], name: string): string[] {
  const values: string[] = [];
  for (let i = 0; i < rawHeaders.length; i += 2) {
    if (rawHeaders[i]?.toLowerCase() === name) values.push(rawHeaders[i + 1] ?? "");
  }
  return values;
}

function unauthorized(message: string): AppError {
  return new AppError("unauthorized", message, [], { "www-authenticate": 'Bearer realm="exportd"' });
}

/**
 * Adds the authentication hook. `unauthenticatedPerMinute`: requests with a missing or invalid key
 * one client address may send per minute before it gets 429 rate_limited without a key lookup.
 * `tenants`: a key's tenant, read through the cache the /files route shares (tenants-by-id.ts).
 * `acting`: operators acting for a tenant (X-Exportd-Tenant), tried before the tenant-key path.
 * `tokenSettings`: the product's sign-in tokens (JWT) accepted beside keys; null: keys only.
 */
export function installAuth(
  app: FastifyInstance,
  store: TenancyPort & Pick<OperatorPort, "createTenant">,
  tenants: TenantsById,
  clock: () => number,
  unauthenticatedPerMinute: number,
  acting: TenantActing,
  tokenSettings: TokenSettings | null = null,
): void {
  const failedAuth = new FailedAuthLimiter(unauthenticatedPerMinute);
  const tokens = tokenSettings && new TokenAuthenticator(tokenSettings, store, failedAuth, app.log);
  const lastTouched = new Map<string, number>();
  const keys = new TtlCache<ApiKeyRecord>(KEY_CACHE_MS);
  app.decorateRequest("auth", null);
  const routeScopes: RouteScope[] = [];
  app.decorate("routeScopes", routeScopes);
  app.addHook("onRoute", (route) => {
    // Operator routes authenticate on their own (http/admin/auth.ts) and are listed there.
    if (route.config?.adminScope) return;
    const scope = route.config?.scope ?? null;
    // The API is private by default: a /v1 route that forgot its scope must not start public.
    if (scope === null && route.url.startsWith("/v1/")) {
      throw new Error(`route ${route.url} under /v1 declares no scope`);
    }
    for (const method of [route.method].flat()) routeScopes.push({ method, url: route.url, scope });
  });
  /**
   * Authenticates `credential` for a route needing `scope`. `request`: the request that presents it
   * (failed attempts count against its address, its log gets the caller, tokens may create their
   * tenant, the key's last use is recorded); null when a long-lived response checks its credential
   * again (credentialCheck): then nothing is counted, written or created, only read — through the
   * same one-second caches a request reads.
   */
  const authenticate = async (
    credential: PresentedCredential,
    scope: Scope,
    now: number,
    request: FastifyRequest | null,
    fresh = false,
  ): Promise<AuthContext> => {
    const header = credential.authorization;
    const match = header ? /^Bearer[ ]+(\S+)\s*$/i.exec(header) : null;
    const key = match?.[1];
    const headers = { [TENANT_HEADER]: credential.tenant };
    if (key !== undefined && tokens?.handles(key)) {
      return tokens.authenticate(
        key,
        request ?? { ip: "", log: app.log, params: {}, headers, recheck: fresh ? "fresh" : "cached" },
        now,
        scope,
      );
    }
    const digest = key === undefined ? null : hashKey(key);
    let record = digest === null || fresh ? undefined : keys.get(digest, now);
    if (!record) {
      // Only a key verified within the last second passes an address that is over its budget.
      const retryAfter = request && failedAuth.retryAfterSeconds(request.ip, now);
      if (retryAfter) {
        throw new AppError(
          "rate_limited",
          "Too many requests with a missing or invalid API key from this address. Retry later.",
          [],
          { "retry-after": String(retryAfter) },
        );
      }
      if (key !== undefined && acting.applies(key, digest as string, credential.tenant)) {
        const operator = await acting.authenticate(key, credential.tenant, now, fresh);
        if (operator) {
          const id = (request?.params as { id?: unknown } | undefined)?.id;
          (request?.log as Logger | undefined)?.setBindings({
            tenant_id: operator.tenantId,
            actor: operator.actor,
            ...(typeof id === "string" ? { export_id: id } : {}),
          });
          return operator;
        }
      }
      const prefix = key === undefined ? null : keyPrefix(key);
      const found = prefix ? await store.findApiKeyByPrefix(prefix) : null;
      if (!found || !hashesMatch(digest as string, found.hash) || found.revokedAt !== null) {
        if (request) failedAuth.fail(request.ip, now);
        throw unauthorized(
          key === undefined
            ? "Send an API key as `Authorization: Bearer <key>`."
            : "The API key is not valid.",
        );
      }
      record = found;
      keys.set(digest as string, found, now);
    }
    const tenant = await tenants.get(record.tenantId, now, fresh);
    if (!tenant) throw unauthorized("The API key is not valid.");
    // The tenant is read through TenantsById's second: a disable shows within it.
    const auth = boundToOwnTenant(headers, tenant, {
      keyId: record.id,
      scopes: record.scopes,
      actor: `key:${record.prefix}`,
      expiresAt: undefined,
    });
    if (!record.scopes.includes(scope)) {
      throw new AppError(
        "insufficient_scope",
        `This route needs the "${scope}" scope, which the key lacks.`,
        [{ field: "authorization", code: "missing_scope", message: scope }],
      );
    }
    if (!request) return auth;
    const exportId = (request.params as { id?: unknown } | undefined)?.id;
    // Fastify makes each request's logger a pino child of its own: binding in place spares a
    // second child per request.
    (request.log as Logger).setBindings({
      tenant_id: record.tenantId,
      key_prefix: record.prefix,
      actor: auth.actor,
      ...(typeof exportId === "string" ? { export_id: exportId } : {}),
    });
    if (now - (lastTouched.get(record.id) ?? 0) >= TOUCH_EVERY_MS) {
      lastTouched.set(record.id, now);
      await store.touchApiKey(record.id, now);
    }
    return auth;
  };
  const presented = (request: FastifyRequest): PresentedCredential => {
    // Several lines of the header reach acting as a list (refused there), not joined as "a, b".
    const tenantLines = headerValues(request.raw.rawHeaders, TENANT_HEADER);
    return {
      authorization: request.headers.authorization,
      tenant: tenantLines.length > 1 ? tenantLines : request.headers[TENANT_HEADER],
    };
  };
  app.decorate("credentialCheck", (request: FastifyRequest): CredentialCheck => {
    const scope = request.routeOptions.config.scope;
    const auth = request.auth;
    if (!scope || !auth) throw new Error("route has no scope but checks the caller's credential");
    const credential = presented(request);
    return {
      id: createHash("sha256")
        .update(JSON.stringify([scope, credential.authorization ?? null, credential.tenant ?? null]))
        .digest("hex"),
      expiresAt: auth.expiresAt ?? null,
      check: (now, options) => authenticate(credential, scope, now, null, options?.fresh === true),
    };
  });
  app.addHook("onRequest", async (request: FastifyRequest) => {
    const scope = request.routeOptions.config.scope;
    if (!scope) return;
    if (authorizationLines(request.raw.rawHeaders) > 1) {
      throw invalidRequest(
        [{ field: "authorization", code: "invalid", message: "Send one Authorization header." }],
        "The request carries several Authorization headers: which key is meant is ambiguous.",
      );
    }
    request.auth = await authenticate(presented(request), scope, clock(), request);
  });
}

/** The authenticated caller; only for routes that declare a scope. */
export function callerOf(request: FastifyRequest): AuthContext {
  if (!request.auth) throw new Error("route has no scope but reads the caller");
  return request.auth;
}
