/** API keys: issuing, listing, revoking and rotating them (the CLI and the tests). */
import { generateKey } from "../domain/api-keys.js";
import { newId } from "../domain/ids.js";
import type { Scope } from "../domain/scopes.js";
import type { ApiKeyRecord, TenancyPort, Tenant } from "../metadata/types.js";

export interface IssuedKey {
  /** The key itself: shown once, stored only as a hash. */
  key: string;
  prefix: string;
  tenant: Tenant;
}

/** Creates the tenant if needed and a new key for it. */
export async function issueApiKey(
  tenancy: TenancyPort,
  tenantName: string,
  scopes: Scope[],
  now: number,
): Promise<IssuedKey> {
  const tenant = await tenancy.ensureTenant(tenantName, now);
  const generated = generateKey();
  await tenancy.insertApiKey({
    id: newId(),
    tenantId: tenant.id,
    prefix: generated.prefix,
    hash: generated.hash,
    last4: generated.last4,
    scopes,
    createdAt: now,
    lastUsedAt: null,
    revokedAt: null,
  });
  return { key: generated.key, prefix: generated.prefix, tenant };
}

/** A tenant's keys (revoked ones included); null when there is no tenant of that name. */
export async function listApiKeys(tenancy: TenancyPort, tenantName: string): Promise<ApiKeyRecord[] | null> {
  const tenant = await tenancy.findTenantByName(tenantName);
  return tenant ? tenancy.listApiKeys(tenant.id) : null;
}

/** Revokes the active key with this prefix; false when there is none. */
export function revokeApiKey(tenancy: TenancyPort, prefix: string, now: number): Promise<boolean> {
  return tenancy.revokeApiKey(prefix, now);
}

/** Issues a new key with the same tenant and scopes and revokes the old one at once. */
export async function rotateApiKey(
  tenancy: TenancyPort,
  prefix: string,
  now: number,
): Promise<IssuedKey | null> {
  const old = await tenancy.findApiKeyByPrefix(prefix);
  if (!old || old.revokedAt !== null) return null;
  const tenant = await tenancy.getTenant(old.tenantId);
  if (!tenant) return null;
  const issued = await issueApiKey(tenancy, tenant.name, old.scopes, now);
  await tenancy.revokeApiKey(prefix, now);
  return issued;
}
