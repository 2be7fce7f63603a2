/** Administrative operations shared by the CLI and the tests: issuing API keys. */
import { generateKey } from "./domain/api-keys.js";
import { newId } from "./domain/ids.js";
import type { Scope } from "./domain/scopes.js";
import type { MetadataStore, Tenant } from "./metadata/types.js";

export interface IssuedKey {
  /** The key itself: shown once, stored only as a hash. */
  key: string;
  prefix: string;
  tenant: Tenant;
}

/** Issues a new key with the same tenant and scopes and revokes the old one at once. */
export async function rotateApiKey(
  store: MetadataStore,
  prefix: string,
  now: number,
): Promise<IssuedKey | null> {
  const old = await store.findApiKeyByPrefix(prefix);
  if (!old || old.revokedAt !== null) return null;
  const tenant = await store.getTenant(old.tenantId);
  if (!tenant) return null;
  const issued = await issueApiKey(store, tenant.name, old.scopes, now);
  await store.revokeApiKey(prefix, now);
  return issued;
}

/** Creates the tenant if needed and a new key for it. */
export async function issueApiKey(
  store: MetadataStore,
  tenantName: string,
  scopes: Scope[],
  now: number,
): Promise<IssuedKey> {
  const tenant = await store.ensureTenant(tenantName, now);
  const generated = generateKey();
  await store.insertApiKey({
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
