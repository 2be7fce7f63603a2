/**
 * API keys: issuing, listing, revoking and rotating them (the CLI, the operator API and the tests);
 * the operator's versions (issueTenantKey, revokeTenantKey, rotateTenantKey) also audit the write.
 */
import { generateKey } from "../domain/api-keys.js";
import { newId } from "../domain/ids.js";
import type { Scope } from "../domain/scopes.js";
import type { ApiKeyRecord, AuditStamp, OperatorPort, TenancyPort, Tenant } from "../metadata/types.js";
import { recordAudit } from "./audit.js";

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

/** What the operator's key operations use: the tenancy port and the audit log. */
export type AuditedKeysPort = TenancyPort & Pick<OperatorPort, "appendAudit">;

function keyShown(key: Pick<ApiKeyRecord, "prefix" | "scopes">): { prefix: string; scopes: Scope[] } {
  return { prefix: key.prefix, scopes: key.scopes };
}

/**
 * Issues a key for an existing tenant (the operator API; the CLI's `keys create` also creates the
 * tenant) and audits it. Null when there is no tenant of that name.
 */
export async function issueTenantKey(
  port: AuditedKeysPort,
  tenantName: string,
  scopes: Scope[],
  stamp: AuditStamp,
  createTenant = false,
): Promise<IssuedKey | null> {
  if (!createTenant && !(await port.findTenantByName(tenantName))) return null;
  const issued = await issueApiKey(port, tenantName, scopes, stamp.at);
  await recordAudit(port, stamp, {
    action: "api_key.create",
    tenant: tenantName,
    target: `api_key:${issued.prefix}`,
    before: null,
    after: { prefix: issued.prefix, scopes },
  });
  return issued;
}

/**
 * The active key with this prefix, if it belongs to the tenant named (any tenant when null), so
 * an operator route scoped to a tenant never reaches another tenant's key.
 */
async function keyOf(
  port: TenancyPort,
  tenantName: string | null,
  prefix: string,
): Promise<ApiKeyRecord | null> {
  const key = await port.findApiKeyByPrefix(prefix);
  if (!key || key.revokedAt !== null) return null;
  if (tenantName === null) return key;
  const tenant = await port.findTenantByName(tenantName);
  return tenant && tenant.id === key.tenantId ? key : null;
}

/** Revokes a tenant's active key and audits it; false when there is no such key. */
export async function revokeTenantKey(
  port: AuditedKeysPort,
  tenantName: string | null,
  prefix: string,
  stamp: AuditStamp,
): Promise<boolean> {
  const key = await keyOf(port, tenantName, prefix);
  if (!key || !(await port.revokeApiKey(prefix, stamp.at))) return false;
  const tenant = await port.getTenant(key.tenantId);
  await recordAudit(port, stamp, {
    action: "api_key.revoke",
    tenant: tenant?.name ?? null,
    target: `api_key:${prefix}`,
    before: { ...keyShown(key), revoked: false },
    after: { ...keyShown(key), revoked: true },
  });
  return true;
}

/** Rotates a tenant's active key (rotateApiKey) and audits it; null when there is no such key. */
export async function rotateTenantKey(
  port: AuditedKeysPort,
  tenantName: string | null,
  prefix: string,
  stamp: AuditStamp,
): Promise<IssuedKey | null> {
  const key = await keyOf(port, tenantName, prefix);
  if (!key) return null;
  const issued = await rotateApiKey(port, prefix, stamp.at);
  if (!issued) return null;
  await recordAudit(port, stamp, {
    action: "api_key.rotate",
    tenant: issued.tenant.name,
    target: `api_key:${prefix}`,
    before: keyShown(key),
    after: { prefix: issued.prefix, scopes: key.scopes, replaces: prefix },
  });
  return issued;
}
