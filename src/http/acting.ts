/**
 * Acting for a tenant: on the public API an operator credential with the `admin:act` scope plus
 * `X-Exportd-Tenant: NAME` acts as that tenant — the product's backend calling on a customer's
 * behalf. It gets every tenant scope (an operator acting for a tenant may do what the tenant's
 * fullest key may), the tenant's plan and limits, a rate-limit budget of its own per tenant
 * (operator key × tenant), and the actor `operator:<prefix>` in the request log and on what it
 * creates. Called by http/auth.ts before the tenant-key path.
 */
import { AppError, invalidRequest, tenantDisabled } from "../domain/errors.js";
import { SCOPES } from "../domain/scopes.js";
import type { Tenant } from "../domain/tenant.js";
import type { TenancyPort } from "../metadata/types.js";
import { OperatorAuthenticator } from "../usecases/operator-keys.js";
import { TtlCache } from "../usecases/ttl-cache.js";
import type { AuthContext } from "./auth.js";

/** The header that names the tenant an operator acts for. */
export const TENANT_HEADER = "x-exportd-tenant";
/** The longest tenant name there can be (a sign-in token's tenant claim, token-verifier.ts). */
const MAX_ACTED_TENANT_LENGTH = 200;
/** A tenant named in the header is read at most this often per process (as a key's tenant is). */
const TENANT_CACHE_MS = 1_000;

/** 400 `tenant_header_not_allowed`: the header came with a credential that is no operator's. */
export function tenantHeaderNotAllowed(): AppError {
  return new AppError(
    "tenant_header_not_allowed",
    "X-Exportd-Tenant may only be sent with an operator key that has the admin:act scope; a tenant key acts for its own tenant.",
    [
      {
        field: TENANT_HEADER,
        code: "header_not_allowed",
        message: "Drop the header, or use an operator key.",
      },
    ],
  );
}

export class TenantActing {
  private readonly tenants = new TtlCache<Tenant>(TENANT_CACHE_MS);

  constructor(
    private readonly operators: OperatorAuthenticator,
    private readonly store: Pick<TenancyPort, "findTenantByName">,
  ) {}

  /**
   * Whether the request must go this way: it names a tenant, or its credential is an operator's —
   * an operator key by its shape, or the bootstrap token by `digest` (its SHA-256), so both get the
   * same answer without the header (400), not the tenant-key path's 401.
   */
  applies(token: string, digest: string, header: string | string[] | undefined): boolean {
    return (
      header !== undefined ||
      OperatorAuthenticator.looksLikeOperatorKey(token) ||
      this.operators.isBootstrap(digest)
    );
  }

  /**
   * The caller acting for the tenant of the header (an array: the request has several header
   * lines), or null when the token is no operator credential (the tenant-key path then answers).
   * Throws AppError: `invalid_request` (operator key without the header, or with several), `insufficient_scope` (no `admin:act`), `unknown_tenant` (also for a name
   * longer than any tenant's, not echoed), `tenant_disabled`. `fresh`: the tenant is read from the
   * store, not the cache.
   */
  async authenticate(
    token: string,
    header: string | string[] | undefined,
    now: number,
    fresh = false,
  ): Promise<AuthContext | null> {
    const operator = await this.operators.verify(token, now);
    if (!operator) return null;
    // Several header lines (Node would join them as "a, b"): which tenant is meant is ambiguous.
    if (Array.isArray(header)) {
      throw invalidRequest(
        [{ field: TENANT_HEADER, code: "invalid", message: "Send one X-Exportd-Tenant header." }],
        "The request carries several X-Exportd-Tenant headers: which tenant is meant is ambiguous.",
      );
    }
    if (typeof header !== "string" || header.length === 0) {
      throw invalidRequest(
        [{ field: TENANT_HEADER, code: "required", message: "Name the tenant to act for." }],
        "An operator key acts on the public API only for a tenant named in X-Exportd-Tenant.",
      );
    }
    if (!operator.scopes.includes("admin:act")) {
      throw new AppError(
        "insufficient_scope",
        'Acting for a tenant needs the "admin:act" scope, which the operator key lacks.',
        [{ field: "authorization", code: "missing_scope", message: "admin:act" }],
      );
    }
    // No tenant has a longer name (operator API: 100, sign-in tokens: 200): such a header is
    // neither looked up nor echoed back in the answer.
    if (header.length > MAX_ACTED_TENANT_LENGTH)
      throw new AppError("unknown_tenant", "No tenant of that name to act for.");
    let tenant = fresh ? undefined : this.tenants.get(header, now);
    if (!tenant) {
      tenant = (await this.store.findTenantByName(header)) ?? undefined;
      if (!tenant) throw new AppError("unknown_tenant", `No tenant "${header}" to act for.`);
      this.tenants.set(header, tenant, now);
    }
    if (tenant.disabledAt !== null) throw tenantDisabled();
    return {
      tenantId: tenant.id,
      tenantName: tenant.name,
      plan: tenant.plan,
      limits: tenant.limits,
      keyId: `${operator.keyId}:${tenant.id}`,
      scopes: SCOPES,
      actor: operator.actor === "bootstrap" ? "operator:bootstrap" : operator.actor,
    };
  }
}
