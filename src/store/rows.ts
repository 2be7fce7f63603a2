/**
 * Rows as both SQL stores return them (the schemas use the same column names) and their mapping
 * to domain records, written once.
 */
import {
  type ExportError,
  type ExportPart,
  type ExportRecord,
  type ExportRequest,
  type ExportStatus,
  fromStatesFor,
} from "../domain/export.js";
import type { Scope } from "../domain/scopes.js";
import { effectiveLimits, type Plan, type Tenant, type TenantLimits } from "../domain/tenant.js";
import type { ApiKeyRecord } from "./types.js";

export interface ExportRow {
  id: string;
  tenant_id: string;
  dataset: string;
  status: ExportStatus;
  request: string;
  created_at: number;
  started_at: number | null;
  finished_at: number | null;
  expires_at: number | null;
  progress_percent: number;
  progress_rows: number;
  progress_parts: number;
  estimated_rows: number | null;
  error_code: string | null;
  error_message: string | null;
  error_retryable: number | null;
  attempts: number;
  takeovers: number;
  runs: number;
  cursor: string | null;
  run_after: number;
}

/**
 * The counters a claim moves (SET clause, both engines): a claim of a queued export starts an
 * attempt; a claim of a running one under an expired lease is a takeover (its worker died), which
 * is no failed attempt of the export. Every claim is a new run.
 */
export const CLAIM_COUNTS = `attempts = attempts + CASE WHEN status = 'running' THEN 0 ELSE 1 END,
  takeovers = takeovers + CASE WHEN status = 'running' THEN 1 ELSE 0 END, runs = runs + 1`;

export interface PartRow {
  export_id: string;
  idx: number;
  object_key: string;
  rows: number;
  bytes: number;
  sha256: string;
}

export interface KeyRow {
  id: string;
  tenant_id: string;
  prefix: string;
  hash: string;
  last4: string;
  scopes: string;
  created_at: number;
  last_used_at: number | null;
  revoked_at: number | null;
}

export interface TenantRow {
  id: string;
  name: string;
  created_at: number;
  plan: string;
  max_running: number | null;
  max_queued: number | null;
  requests_per_minute: number | null;
  plan_max_running: number | null;
  plan_max_queued: number | null;
  plan_requests_per_minute: number | null;
}

export interface PlanRow {
  name: string;
  max_running: number;
  max_queued: number;
  requests_per_minute: number;
}

export const LIMIT_COLUMNS = [
  ["maxRunning", "max_running"],
  ["maxQueued", "max_queued"],
  ["requestsPerMinute", "requests_per_minute"],
] as const;

/** Limits of a tenant whose plan row is missing: the most conservative that still works. */
const FALLBACK_LIMITS: TenantLimits = { maxRunning: 1, maxQueued: 1, requestsPerMinute: 60 };

export function toTenant(row: TenantRow): Tenant {
  const overrides: Partial<TenantLimits> = {};
  if (row.max_running !== null) overrides.maxRunning = row.max_running;
  if (row.max_queued !== null) overrides.maxQueued = row.max_queued;
  if (row.requests_per_minute !== null) overrides.requestsPerMinute = row.requests_per_minute;
  const plan: TenantLimits =
    row.plan_max_running === null
      ? FALLBACK_LIMITS
      : {
          maxRunning: row.plan_max_running,
          maxQueued: row.plan_max_queued ?? FALLBACK_LIMITS.maxQueued,
          requestsPerMinute: row.plan_requests_per_minute ?? FALLBACK_LIMITS.requestsPerMinute,
        };
  return {
    id: row.id,
    name: row.name,
    plan: row.plan,
    createdAt: row.created_at,
    limits: effectiveLimits(plan, overrides),
    overrides,
  };
}

export function toPlan(row: PlanRow): Plan {
  return {
    name: row.name,
    limits: {
      maxRunning: row.max_running,
      maxQueued: row.max_queued,
      requestsPerMinute: row.requests_per_minute,
    },
  };
}

/** `status IN (...)` for the statuses from which `to` may be reached — the domain decides, not SQL. */
export function statusFrom(to: ExportStatus): string {
  return `status IN (${fromStatesFor(to)
    .map((s) => `'${s}'`)
    .join(", ")})`;
}

/**
 * Ids of the exports whose parts need reading: progress_parts grows in the transaction that inserts
 * a part, so 0 means there is none.
 */
export function idsWithParts(rows: ExportRow[]): string[] {
  return rows.filter((r) => r.progress_parts > 0).map((r) => r.id);
}

export function toPart(row: PartRow): ExportPart {
  return { index: row.idx, objectKey: row.object_key, rows: row.rows, bytes: row.bytes, sha256: row.sha256 };
}

export function toKey(row: KeyRow): ApiKeyRecord {
  return {
    id: row.id,
    tenantId: row.tenant_id,
    prefix: row.prefix,
    hash: row.hash,
    last4: row.last4,
    scopes: JSON.parse(row.scopes) as Scope[],
    createdAt: row.created_at,
    lastUsedAt: row.last_used_at,
    revokedAt: row.revoked_at,
  };
}

export function toExport(row: ExportRow, parts: ExportPart[]): ExportRecord {
  const error: ExportError | null =
    row.error_code === null
      ? null
      : {
          code: row.error_code as ExportError["code"],
          message: row.error_message ?? "",
          retryable: row.error_retryable === 1,
        };
  return {
    id: row.id,
    tenantId: row.tenant_id,
    dataset: row.dataset,
    status: row.status,
    request: JSON.parse(row.request) as ExportRequest,
    createdAt: row.created_at,
    startedAt: row.started_at,
    finishedAt: row.finished_at,
    expiresAt: row.expires_at,
    progress: { percent: row.progress_percent, rows: row.progress_rows, parts: row.progress_parts },
    estimatedRows: row.estimated_rows,
    error,
    parts,
    attempts: row.attempts,
    takeovers: row.takeovers,
    runs: row.runs,
    cursor: row.cursor,
    runAfter: row.run_after,
  };
}
