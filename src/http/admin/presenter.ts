/** The operator API's resources as it answers them — never a raw store record. */
import type { Plan, Tenant, TenantLimits } from "../../domain/tenant.js";
import type { ApiKeyRecord, AuditEntry } from "../../metadata/types.js";
import type { MaintenanceState } from "../../usecases/maintenance.js";
import type { TenantExport } from "../../usecases/support-exports.js";
import { presentExport } from "../exports/presenter.js";

const iso = (ms: number | null): string | null => (ms === null ? null : new Date(ms).toISOString());

function limits(l: Partial<TenantLimits>) {
  return {
    max_running: l.maxRunning ?? null,
    max_queued: l.maxQueued ?? null,
    requests_per_minute: l.requestsPerMinute ?? null,
  };
}

export function presentTenant(t: Tenant) {
  return {
    object: "tenant" as const,
    id: t.id,
    name: t.name,
    plan: t.plan,
    status: t.disabledAt === null ? ("active" as const) : ("disabled" as const),
    created_at: iso(t.createdAt) as string,
    disabled_at: iso(t.disabledAt),
    limits: limits(t.limits) as { max_running: number; max_queued: number; requests_per_minute: number },
    overrides: limits(t.overrides),
  };
}

export function presentPlan(p: Plan) {
  return {
    object: "plan" as const,
    name: p.name,
    limits: limits(p.limits) as { max_running: number; max_queued: number; requests_per_minute: number },
  };
}

export function presentApiKey(
  k: Pick<ApiKeyRecord, "prefix" | "last4" | "scopes" | "createdAt" | "lastUsedAt" | "revokedAt">,
) {
  return {
    object: "api_key" as const,
    prefix: k.prefix,
    last4: k.last4,
    scopes: k.scopes,
    created_at: iso(k.createdAt) as string,
    last_used_at: iso(k.lastUsedAt),
    revoked_at: iso(k.revokedAt),
  };
}

export function presentMaintenance(s: MaintenanceState) {
  return {
    object: "maintenance" as const,
    enabled: s.enabled,
    retry_after_seconds: s.retryAfterSeconds,
    message: s.message,
  };
}

/** An export of any tenant, without links (the support view never hands out a download). */
export async function presentTenantExport(e: TenantExport) {
  return { tenant: e.tenantName, export: await presentExport(e.record, null, null) };
}

export function presentAudit(e: AuditEntry) {
  return {
    object: "audit_entry" as const,
    id: e.id,
    at: iso(e.at) as string,
    actor: e.actor,
    action: e.action,
    tenant: e.tenant,
    target: e.target,
    before: e.before,
    after: e.after,
  };
}
