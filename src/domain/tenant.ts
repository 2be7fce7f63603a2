/** Tenants, plans and the limits a plan sets (a tenant may override each one). */

export interface TenantLimits {
  /** Exports of the tenant running at once; more wait in the queue. */
  maxRunning: number;
  /** Exports waiting in the queue at once; past it, creates answer 429 too_many_exports. */
  maxQueued: number;
  /** API requests per minute, per key. */
  requestsPerMinute: number;
}

export interface Plan {
  name: string;
  limits: TenantLimits;
}

export interface Tenant {
  id: string;
  name: string;
  plan: string;
  createdAt: number;
  /** The plan's limits with the tenant's overrides applied. */
  limits: TenantLimits;
  overrides: Partial<TenantLimits>;
  /** When an operator disabled the tenant (epoch ms): its keys are refused, its exports canceled; null: active. */
  disabledAt: number | null;
}

export const DEFAULT_PLAN = "default";

export function effectiveLimits(plan: TenantLimits, overrides: Partial<TenantLimits>): TenantLimits {
  return {
    maxRunning: overrides.maxRunning ?? plan.maxRunning,
    maxQueued: overrides.maxQueued ?? plan.maxQueued,
    requestsPerMinute: overrides.requestsPerMinute ?? plan.requestsPerMinute,
  };
}

/** In a dataset's plan list: every plan. */
export const ALL_PLANS = "*";

/** Whether a dataset offered to `plans` (null or ALL_PLANS: every plan) may be used on `plan`. */
export function planAllows(plans: readonly string[] | null, plan: string): boolean {
  return plans === null || plans.includes(ALL_PLANS) || plans.includes(plan);
}
