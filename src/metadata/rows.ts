/**
 * Rows as both engines return them — arrays in the order of the column lists below, which every
 * SELECT uses — and their mapping to domain records, written once.
 */
import type { ExportError, ExportPart, ExportRecord, ExportRequest, ExportStatus } from "../domain/export.js";
import type { Scope } from "../domain/scopes.js";
import { effectiveLimits, type Plan, type Tenant, type TenantLimits } from "../domain/tenant.js";
import type { Row } from "./sql.js";
import type { ApiKeyRecord } from "./types.js";

/** The columns an export is read with, in this order (toExport reads them by position). */
export const EXPORT_COLUMNS = `id, tenant_id, dataset, status, request, created_at, started_at, finished_at, expires_at,
  progress_percent, progress_rows, progress_parts, estimated_rows, error_code, error_message, error_retryable,
  attempts, takeovers, runs, cursor, run_after`;
/** Where progress_parts sits in an export row. */
const PROGRESS_PARTS = 11;

export const PART_COLUMNS = "export_id, idx, object_key, rows, bytes, sha256";
export const KEY_COLUMNS = "id, tenant_id, prefix, hash, last4, scopes, created_at, last_used_at, revoked_at";
export const PLAN_COLUMNS = "name, max_running, max_queued, requests_per_minute";
export const TENANT_SELECT = `SELECT t.id, t.name, t.created_at, t.plan, t.max_running, t.max_queued, t.requests_per_minute,
       p.max_running, p.max_queued, p.requests_per_minute
  FROM tenants t LEFT JOIN plans p ON p.name = t.plan`;

export const LIMIT_COLUMNS = [
  ["maxRunning", "max_running"],
  ["maxQueued", "max_queued"],
  ["requestsPerMinute", "requests_per_minute"],
] as const;

/** Limits of a tenant whose plan row is missing: the most conservative that still works. */
const FALLBACK_LIMITS: TenantLimits = { maxRunning: 1, maxQueued: 1, requestsPerMinute: 60 };

type Num = number | null;

export function toTenant(row: Row): Tenant {
  const [
    id,
    name,
    createdAt,
    plan,
    maxRunning,
    maxQueued,
    perMinute,
    planRunning,
    planQueued,
    planPerMinute,
  ] = row as [string, string, number, string, Num, Num, Num, Num, Num, Num];
  const overrides: Partial<TenantLimits> = {};
  if (maxRunning !== null) overrides.maxRunning = maxRunning;
  if (maxQueued !== null) overrides.maxQueued = maxQueued;
  if (perMinute !== null) overrides.requestsPerMinute = perMinute;
  const planLimits: TenantLimits =
    planRunning === null
      ? FALLBACK_LIMITS
      : {
          maxRunning: planRunning,
          maxQueued: planQueued ?? FALLBACK_LIMITS.maxQueued,
          requestsPerMinute: planPerMinute ?? FALLBACK_LIMITS.requestsPerMinute,
        };
  return { id, name, plan, createdAt, limits: effectiveLimits(planLimits, overrides), overrides };
}

export function toPlan(row: Row): Plan {
  const [name, maxRunning, maxQueued, requestsPerMinute] = row as [string, number, number, number];
  return { name, limits: { maxRunning, maxQueued, requestsPerMinute } };
}

/**
 * Ids of the exports whose parts need reading: progress_parts grows in the transaction that inserts
 * a part, so 0 means there is none.
 */
export function idsWithParts(rows: readonly Row[]): string[] {
  return rows.filter((r) => (r[PROGRESS_PARTS] as number) > 0).map((r) => r[0] as string);
}

/** A part row, with the id of its export first. */
export function toPart(row: Row): ExportPart {
  const [, index, objectKey, rows, bytes, sha256] = row as [string, number, string, number, number, string];
  return { index, objectKey, rows, bytes, sha256 };
}

export function toKey(row: Row): ApiKeyRecord {
  const [id, tenantId, prefix, hash, last4, scopes, createdAt, lastUsedAt, revokedAt] = row as [
    string,
    string,
    string,
    string,
    string,
    string,
    number,
    Num,
    Num,
  ];
  return {
    id,
    tenantId,
    prefix,
    hash,
    last4,
    scopes: JSON.parse(scopes) as Scope[],
    createdAt,
    lastUsedAt,
    revokedAt,
  };
}

export function toExport(row: Row, parts: ExportPart[]): ExportRecord {
  const r = row as [
    string,
    string,
    string,
    ExportStatus,
    string,
    number,
    Num,
    Num,
    Num,
    number,
    number,
    number,
    Num,
    string | null,
    string | null,
    Num,
    number,
    number,
    number,
    string | null,
    number,
  ];
  const error: ExportError | null =
    r[13] === null
      ? null
      : { code: r[13] as ExportError["code"], message: r[14] ?? "", retryable: r[15] === 1 };
  return {
    id: r[0],
    tenantId: r[1],
    dataset: r[2],
    status: r[3],
    request: JSON.parse(r[4]) as ExportRequest,
    createdAt: r[5],
    startedAt: r[6],
    finishedAt: r[7],
    expiresAt: r[8],
    progress: { percent: r[9], rows: r[10], parts: r[11] },
    estimatedRows: r[12],
    error,
    parts,
    attempts: r[16],
    takeovers: r[17],
    runs: r[18],
    cursor: r[19],
    runAfter: r[20],
  };
}
