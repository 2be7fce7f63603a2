/**
 * Tenants by id as the API reads them on its hot paths: authentication (a key's tenant) and the
 * /files route (a signed link's tenant). One per-process cache of a second serves both, so a
 * disable shows on both within the same second and a tenant costs at most one primary-key read per
 * second and process, not one per reader.
 */
import type { TenancyPort, Tenant } from "../metadata/types.js";
import { TtlCache } from "../usecases/ttl-cache.js";

/** How long a tenant read is kept (ms): a disable, delete or plan change shows within it. */
export const TENANT_CACHE_MS = 1_000;

export class TenantsById {
  /** Found tenants and absent ones (null: deleted or never there; ids are never reused). */
  private readonly cache = new TtlCache<Tenant | null>(TENANT_CACHE_MS);

  constructor(private readonly store: Pick<TenancyPort, "getTenant">) {}

  /**
   * The tenant with `id`, or null. `fresh`: read from the store, not the cache (which it then
   * refreshes). Throws what the store throws (StoreUnavailableError while it is down).
   */
  async get(id: string, now: number, fresh = false): Promise<Tenant | null> {
    if (!fresh) {
      const cached = this.cache.get(id, now);
      if (cached !== undefined) return cached;
    }
    const tenant = await this.store.getTenant(id);
    this.cache.set(id, tenant, now);
    return tenant;
  }
}
