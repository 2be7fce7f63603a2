/**
 * Bearer-key authentication and per-route scopes. A route declares `config: { scope }`; routes
 * without one (health, docs, signed files) are public. The caller's tenant lands on `request.auth`
 * and every handler scopes its queries with it.
 */
import type { FastifyInstance, FastifyRequest } from "fastify";
import type { Logger } from "pino";
import { hashesMatch, hashKey, keyPrefix } from "../domain/api-keys.js";
import { AppError } from "../domain/errors.js";
import type { Scope } from "../domain/scopes.js";
import type { Tenant, TenantLimits } from "../domain/tenant.js";
import type { ApiKeyRecord, MetadataStore } from "../store/types.js";
import { TtlCache } from "./ttl-cache.js";

export interface AuthContext {
  tenantId: string;
  tenantName: string;
  plan: string;
  limits: TenantLimits;
  keyId: string;
  scopes: readonly Scope[];
}

declare module "fastify" {
  interface FastifyRequest {
    auth: AuthContext | null;
  }
  interface FastifyContextConfig {
    /** The scope a key needs for this route; absent → no authentication. */
    scope?: Scope;
  }
}

/** last_used_at is written at most this often per key, so reads stay reads. */
const TOUCH_EVERY_MS = 60_000;
/** A tenant's plan and limits are read at most this often per process: a plan change takes effect within this. */
const TENANT_CACHE_MS = 1_000;
/**
 * A verified key is trusted this long per process without reading it again: a revoked or
 * rotated-out key stops working within this on every API process. Only valid keys are kept, by
 * the SHA-256 of the key (never the key itself).
 */
export const KEY_CACHE_MS = 1_000;

function unauthorized(message: string): AppError {
  return new AppError("unauthorized", message, [], { "www-authenticate": 'Bearer realm="exportd"' });
}

export function installAuth(app: FastifyInstance, store: MetadataStore, clock: () => number): void {
  const lastTouched = new Map<string, number>();
  const keys = new TtlCache<ApiKeyRecord>(KEY_CACHE_MS);
  const tenants = new TtlCache<Tenant>(TENANT_CACHE_MS);
  const tenantOf = async (id: string, now: number): Promise<Tenant | null> => {
    const cached = tenants.get(id, now);
    if (cached) return cached;
    const tenant = await store.getTenant(id);
    if (tenant) tenants.set(id, tenant, now);
    return tenant;
  };
  app.decorateRequest("auth", null);
  app.addHook("onRequest", async (request: FastifyRequest) => {
    const scope = request.routeOptions.config.scope;
    if (!scope) return;
    const header = request.headers.authorization;
    const match = header ? /^Bearer[ ]+(\S+)\s*$/i.exec(header) : null;
    if (!match) throw unauthorized("Send an API key as `Authorization: Bearer <key>`.");
    const key = match[1] as string;
    const now = clock();
    const digest = hashKey(key);
    let record = keys.get(digest, now);
    if (!record) {
      const prefix = keyPrefix(key);
      const found = prefix ? await store.findApiKeyByPrefix(prefix) : null;
      if (!found || !hashesMatch(digest, found.hash) || found.revokedAt !== null) {
        throw unauthorized("The API key is not valid.");
      }
      record = found;
      keys.set(digest, found, now);
    }
    if (!record.scopes.includes(scope)) {
      throw new AppError(
        "insufficient_scope",
        `This route needs the "${scope}" scope, which the key lacks.`,
        [{ field: "authorization", code: "missing_scope", message: scope }],
      );
    }
    const tenant = await tenantOf(record.tenantId, now);
    if (!tenant) throw unauthorized("The API key is not valid.");
    request.auth = {
      tenantId: tenant.id,
      tenantName: tenant.name,
      plan: tenant.plan,
      limits: tenant.limits,
      keyId: record.id,
      scopes: record.scopes,
    };
    const exportId = (request.params as { id?: unknown } | undefined)?.id;
    // Fastify makes each request's logger a pino child of its own: binding in place spares a
    // second child per request.
    (request.log as Logger).setBindings({
      tenant_id: record.tenantId,
      key_prefix: record.prefix,
      ...(typeof exportId === "string" ? { export_id: exportId } : {}),
    });
    if (now - (lastTouched.get(record.id) ?? 0) >= TOUCH_EVERY_MS) {
      lastTouched.set(record.id, now);
      await store.touchApiKey(record.id, now);
    }
  });
}

/** The authenticated caller; only for routes that declare a scope. */
export function callerOf(request: FastifyRequest): AuthContext {
  if (!request.auth) throw new Error("route has no scope but reads the caller");
  return request.auth;
}
