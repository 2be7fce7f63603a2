/**
 * A tenant's life cycle for the operator (the operator API and the CLI): create, list, read, change
 * plan and limits, disable (its keys, tokens and signed download links are refused — http/auth.ts,
 * http/token-auth.ts and the /files route read `disabledAt` through one-second tenant caches — and
 * its queued and running exports are canceled through the cancel use case), enable, and delete (everything it owns: files first, through the purge use case, then its
 * rows in one transaction). Plans are created and changed here too. Every write is audited.
 */
import type { Logger } from "pino";
import { AppError, invalidRequest, serviceUnavailable } from "../domain/errors.js";
import type { Plan, Tenant, TenantLimits } from "../domain/tenant.js";
import type { AuditStamp, ExportsPort, OperatorPort, TenancyPort, TenantChange } from "../metadata/types.js";
import type { ObjectStore } from "../object-store/types.js";
import { decodeCursor, encodeCursor } from "./audit.js";
import { cancelExport } from "./cancel-export.js";
import { purgeTenantFiles } from "./purge-export.js";

/** What the tenant operations use. */
export interface TenantAdminDeps {
  operator: OperatorPort & Pick<TenancyPort, "findTenantByName" | "getPlan" | "listPlans">;
  exports: ExportsPort;
  storage: ObjectStore;
  clock: () => number;
  log: Pick<Logger, "info" | "warn">;
}

function noTenant(name: string): AppError {
  return new AppError("not_found", `No tenant "${name}".`);
}

/** Throws AppError `invalid_request` (detail `unknown_plan`) unless the plan exists. */
async function requirePlan(port: Pick<TenancyPort, "getPlan">, plan: string | undefined): Promise<void> {
  if (plan !== undefined && !(await port.getPlan(plan)))
    throw invalidRequest([{ field: "plan", code: "unknown_plan", message: `No plan "${plan}".` }]);
}

/** Creates a tenant. Throws AppError `already_exists`, `invalid_request` (unknown plan). */
export async function createTenant(
  deps: Pick<TenantAdminDeps, "operator">,
  name: string,
  change: TenantChange,
  stamp: AuditStamp,
): Promise<Tenant> {
  await requirePlan(deps.operator, change.plan);
  const tenant = await deps.operator.createTenant(name, change, stamp);
  if (!tenant) throw new AppError("already_exists", `A tenant named "${name}" exists.`);
  return tenant;
}

/** A page of tenants by name and the next page's cursor (null on the last). */
export async function listTenants(
  deps: Pick<TenantAdminDeps, "operator">,
  cursor: string | undefined,
  limit: number,
): Promise<{ tenants: Tenant[]; nextCursor: string | null }> {
  const after = cursor === undefined ? undefined : decodeCursor(cursor);
  const rows = await deps.operator.listTenantsPage(after, limit + 1);
  const tenants = rows.slice(0, limit);
  const last = tenants[tenants.length - 1];
  return { tenants, nextCursor: rows.length > limit && last ? encodeCursor(last.name) : null };
}

/** The tenant of this name. Throws AppError `not_found`. */
export async function getTenant(deps: Pick<TenantAdminDeps, "operator">, name: string): Promise<Tenant> {
  const tenant = await deps.operator.findTenantByName(name);
  if (!tenant) throw noTenant(name);
  return tenant;
}

/** Changes plan and limit overrides. Throws AppError `not_found`, `invalid_request` (unknown plan). */
export async function changeTenant(
  deps: Pick<TenantAdminDeps, "operator">,
  name: string,
  change: TenantChange,
  stamp: AuditStamp,
): Promise<Tenant> {
  await requirePlan(deps.operator, change.plan);
  const tenant = await deps.operator.changeTenant(name, change, stamp);
  if (!tenant) throw noTenant(name);
  return tenant;
}

/** Cancels every queued and running export of the tenant; returns their ids. */
async function cancelActive(deps: TenantAdminDeps, tenant: Tenant): Promise<string[]> {
  const ids = await deps.operator.activeExportIds(tenant.id);
  const canceled: string[] = [];
  for (const id of ids) {
    try {
      await cancelExport(deps, tenant.id, id, deps.log);
      canceled.push(id);
    } catch (err) {
      // Finished between the listing and the cancel: nothing left to stop.
      if (!(err instanceof AppError && err.code === "not_cancellable")) throw err;
    }
  }
  return canceled;
}

/**
 * Disables a tenant: every key, token and signed /files link of it is refused (403
 * tenant_disabled) within the API's one-second tenant caches (S3's presigned part links run to
 * their expiry), no export of it is created from then on (the create checks the row), and its
 * queued and running exports are canceled. Throws AppError `not_found`.
 */
export async function disableTenant(
  deps: TenantAdminDeps,
  name: string,
  stamp: AuditStamp,
): Promise<{ tenant: Tenant; canceled: string[] }> {
  const tenant = await deps.operator.setTenantDisabled(name, true, stamp);
  if (!tenant) throw noTenant(name);
  const canceled = await cancelActive(deps, tenant);
  deps.log.info({ tenant: name, canceled: canceled.length }, "tenant disabled");
  return { tenant, canceled };
}

/** Enables a disabled tenant again. Throws AppError `not_found`. */
export async function enableTenant(
  deps: Pick<TenantAdminDeps, "operator">,
  name: string,
  stamp: AuditStamp,
): Promise<Tenant> {
  const tenant = await deps.operator.setTenantDisabled(name, false, stamp);
  if (!tenant) throw noTenant(name);
  return tenant;
}

/**
 * Deletes a tenant and everything it owns, as a data-protection request needs: it is disabled
 * first (no new exports), its active exports canceled, every object under its prefix deleted, then
 * its exports, parts, idempotency keys, API keys and the tenant row go in one transaction. A
 * failing object store leaves the rows in place (503; the delete can be repeated). A part a
 * running worker was writing at that moment is deleted by that worker when its write is refused.
 * Throws AppError `not_found`.
 */
export async function deleteTenant(
  deps: TenantAdminDeps,
  name: string,
  stamp: AuditStamp,
): Promise<{ exports: number; keys: number }> {
  const { tenant } = await disableTenant(deps, name, stamp);
  await purgeTenantFiles(deps.storage, tenant.id).catch((err: unknown) => {
    deps.log.warn({ err, tenant: name }, "deleting the tenant's files failed; nothing else was deleted");
    throw serviceUnavailable("The object store could not delete the tenant's files. Retry the delete.");
  });
  const deleted = await deps.operator.deleteTenant(name, { ...stamp, at: deps.clock() });
  if (!deleted) throw noTenant(name);
  deps.log.info({ tenant: name, ...deleted }, "tenant deleted");
  return deleted;
}

export function listPlans(deps: Pick<TenantAdminDeps, "operator">): Promise<Plan[]> {
  return deps.operator.listPlans();
}

/** Creates a plan. Throws AppError `already_exists`. */
export async function createPlan(
  deps: Pick<TenantAdminDeps, "operator">,
  plan: Plan,
  stamp: AuditStamp,
): Promise<Plan> {
  if (!(await deps.operator.createPlan(plan, stamp)))
    throw new AppError("already_exists", `A plan named "${plan.name}" exists.`);
  return plan;
}

/** Changes some limits of a plan (every tenant on it within a second). Throws AppError `not_found`. */
export async function changePlan(
  deps: Pick<TenantAdminDeps, "operator">,
  name: string,
  limits: Partial<TenantLimits>,
  stamp: AuditStamp,
): Promise<Plan> {
  const plan = await deps.operator.changePlan(name, limits, stamp);
  if (!plan) throw new AppError("not_found", `No plan "${name}".`);
  return plan;
}
