/**
 * A credential bound to its own tenant — a tenant API key or a product sign-in token — as opposed to
 * an operator key acting for a tenant it names (acting.ts). Both paths (auth.ts, token-auth.ts)
 * end here once they know the credential's tenant, so a check every such credential needs is
 * written once: today that it names no other tenant and that its tenant is not disabled.
 */
import { tenantDisabled } from "../domain/errors.js";
import type { Tenant } from "../domain/tenant.js";
import { TENANT_HEADER, tenantHeaderNotAllowed } from "./acting.js";
import type { AuthContext } from "./auth.js";

/** What the credential itself says of the caller; the rest of the AuthContext is its tenant's. */
export type CredentialFields = Pick<AuthContext, "keyId" | "scopes" | "actor" | "expiresAt">;

/**
 * The caller for a credential bound to `tenant`. Throws AppError `tenant_header_not_allowed` (the
 * request carries X-Exportd-Tenant, even naming its own tenant: acting for a tenant is an
 * operator's act) and `tenant_disabled` (seen through the caller's tenant cache, so within its
 * second of a disable).
 */
export function boundToOwnTenant(
  headers: Readonly<Record<string, string | string[] | undefined>>,
  tenant: Tenant,
  credential: CredentialFields,
): AuthContext {
  if (headers[TENANT_HEADER] !== undefined) throw tenantHeaderNotAllowed();
  if (tenant.disabledAt !== null) throw tenantDisabled();
  // One literal of one shape for keys and tokens, on every authenticated request: building it by
  // spreading a partial context cost a quarter of a status read's CPU (V8 clones a spread source
  // through a slow path, then adds the rest one property at a time).
  return {
    tenantId: tenant.id,
    tenantName: tenant.name,
    plan: tenant.plan,
    limits: tenant.limits,
    keyId: credential.keyId,
    scopes: credential.scopes,
    actor: credential.actor,
    expiresAt: credential.expiresAt,
  };
}
