/**
 * The operator's support views across tenants: list exports of any tenant (with filters), read one,
 * cancel one (through the cancel use case, then audited).
 */
import type { Logger } from "pino";
import { AppError } from "../domain/errors.js";
import type { ExportRecord, ExportStatus } from "../domain/export.js";
import { isUuid } from "../domain/ids.js";
import type { AuditStamp, ExportsPort, OperatorPort, TenancyPort } from "../metadata/types.js";
import type { ObjectStore } from "../object-store/types.js";
import { decodeIdCursor, encodeCursor, recordAudit } from "./audit.js";
import { cancelExport } from "./cancel-export.js";

export interface SupportDeps {
  operator: Pick<OperatorPort, "listAllExports" | "findExport" | "appendAudit"> &
    Pick<TenancyPort, "findTenantByName" | "getTenant">;
  exports: ExportsPort;
  storage: ObjectStore;
  clock: () => number;
}

/** An export with the name of its tenant (null when the tenant row is gone). */
export interface TenantExport {
  tenantName: string | null;
  record: ExportRecord;
}

async function withTenant(deps: SupportDeps, records: ExportRecord[]): Promise<TenantExport[]> {
  const names = new Map<string, string | null>();
  for (const r of records) {
    if (!names.has(r.tenantId))
      names.set(r.tenantId, (await deps.operator.getTenant(r.tenantId))?.name ?? null);
  }
  return records.map((record) => ({ tenantName: names.get(record.tenantId) ?? null, record }));
}

/**
 * Exports of every tenant, or of the tenant named, newest first, and the next page's cursor. An
 * unknown tenant name gives an empty page.
 */
export async function listAnyExports(
  deps: SupportDeps,
  query: { tenant?: string; status?: ExportStatus; dataset?: string; cursor?: string; limit: number },
): Promise<{ exports: TenantExport[]; nextCursor: string | null }> {
  let tenantId: string | undefined;
  if (query.tenant !== undefined) {
    const tenant = await deps.operator.findTenantByName(query.tenant);
    if (!tenant) return { exports: [], nextCursor: null };
    tenantId = tenant.id;
  }
  const rows = await deps.operator.listAllExports({
    tenantId,
    status: query.status,
    dataset: query.dataset,
    before: query.cursor === undefined ? undefined : decodeIdCursor(query.cursor),
    limit: query.limit + 1,
  });
  const page = rows.slice(0, query.limit);
  const last = page[page.length - 1];
  return {
    exports: await withTenant(deps, page),
    nextCursor: rows.length > query.limit && last ? encodeCursor(last.id) : null,
  };
}

/** One export of any tenant. Throws AppError `not_found`. */
export async function getAnyExport(deps: SupportDeps, id: string): Promise<TenantExport> {
  const record = isUuid(id) ? await deps.operator.findExport(id) : null;
  if (!record) throw new AppError("not_found", "No export with this id.");
  const [found] = await withTenant(deps, [record]);
  return found as TenantExport;
}

/** Cancels an export of any tenant. Throws AppError `not_found`, `not_cancellable`. */
export async function cancelAnyExport(
  deps: SupportDeps,
  id: string,
  stamp: AuditStamp,
  log: Pick<Logger, "info" | "warn">,
): Promise<TenantExport> {
  const { tenantName, record: before } = await getAnyExport(deps, id);
  const record = await cancelExport(deps, before.tenantId, id, log);
  await recordAudit(deps.operator, stamp, {
    action: "export.cancel",
    tenant: tenantName,
    target: `export:${id}`,
    before: { status: before.status },
    after: { status: record.status },
  });
  return { tenantName, record };
}
