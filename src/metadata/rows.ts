/**
 * Rows as both engines return them — arrays in the order of the column lists below, which every
 * SELECT uses — and their mapping to domain records, written once.
 */
import type { ExportError, ExportPart, ExportRecord, ExportRequest, ExportStatus } from "../domain/export.js";
import type { OperatorScope } from "../domain/operator-scopes.js";
import type { Scope } from "../domain/scopes.js";
import { effectiveLimits, type Plan, type Tenant, type TenantLimits } from "../domain/tenant.js";
import {
  type DeliveryState,
  type DisabledReason,
  decodeEventTypes,
  type EventType,
  type WebhookAttempt,
  type WebhookDelivery,
  type WebhookEndpoint,
  type WebhookEvent,
} from "../domain/webhooks.js";
import type { Row } from "./sql.js";
import type { ApiKeyRecord, AuditEntry, OperatorKeyRecord } from "./types.js";

/** The columns an export is read with, in this order (toExport reads them by position). */
export const EXPORT_COLUMNS = `id, tenant_id, dataset, status, request, created_at, started_at, finished_at, expires_at,
  progress_percent, progress_rows, progress_parts, estimated_rows, error_code, error_message, error_retryable,
  attempts, takeovers, runs, cursor, run_after, created_by, progress_dataset`;
/** Where progress_parts sits in an export row. */
const PROGRESS_PARTS = 11;

export const PART_COLUMNS =
  "export_id, idx, object_key, rows, bytes, sha256, dataset_idx, last_of_dataset, crc32";
export const KEY_COLUMNS = "id, tenant_id, prefix, hash, last4, scopes, created_at, last_used_at, revoked_at";
export const OPERATOR_KEY_COLUMNS =
  "id, prefix, hash, last4, name, scopes, created_at, last_used_at, revoked_at";
export const AUDIT_COLUMNS = "id, at, actor, action, tenant, target, before_json, after_json";
export const PLAN_COLUMNS = "name, max_running, max_queued, requests_per_minute";
export const TENANT_SELECT = `SELECT t.id, t.name, t.created_at, t.plan, t.max_running, t.max_queued, t.requests_per_minute,
       p.max_running, p.max_queued, p.requests_per_minute, t.disabled_at
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
    disabledAt,
  ] = row as [string, string, number, string, Num, Num, Num, Num, Num, Num, Num];
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
  return {
    id,
    name,
    plan,
    createdAt,
    limits: effectiveLimits(planLimits, overrides),
    overrides,
    disabledAt: disabledAt === null ? null : Number(disabledAt),
  };
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
  const [, index, objectKey, rows, bytes, sha256, dataset, last, crc] = row as [
    string,
    number,
    string,
    number,
    number,
    string,
    number,
    number,
    Num,
  ];
  // The archive fields only where they say something (a part of dataset 0, not its last, without
  // a CRC reads as parts always did).
  return {
    index,
    objectKey,
    rows,
    bytes,
    sha256,
    ...(Number(dataset) > 0 ? { dataset: Number(dataset) } : {}),
    ...(Number(last) === 1 ? { lastOfDataset: true } : {}),
    ...(crc === null ? {} : { crc32: Number(crc) }),
  };
}

export function toKey(r: Row): ApiKeyRecord {
  return {
    id: r[0] as string,
    tenantId: r[1] as string,
    prefix: r[2] as string,
    hash: r[3] as string,
    last4: r[4] as string,
    scopes: JSON.parse(r[5] as string) as Scope[],
    createdAt: r[6] as number,
    lastUsedAt: r[7] as Num,
    revokedAt: r[8] as Num,
  };
}

export function toExport(r: Row, parts: ExportPart[]): ExportRecord {
  const error: ExportError | null =
    r[13] === null
      ? null
      : {
          code: r[13] as ExportError["code"],
          message: (r[14] as string | null) ?? "",
          retryable: r[15] === 1,
        };
  return {
    id: r[0] as string,
    tenantId: r[1] as string,
    dataset: r[2] as string,
    status: r[3] as ExportStatus,
    request: JSON.parse(r[4] as string) as ExportRequest,
    createdAt: r[5] as number,
    startedAt: r[6] as Num,
    finishedAt: r[7] as Num,
    expiresAt: r[8] as Num,
    progress: {
      percent: r[9] as number,
      rows: r[10] as number,
      parts: r[11] as number,
      // Absent while 0, like a single-dataset export's (domain/export.ts advanceProgress).
      ...(Number(r[22] ?? 0) > 0 ? { dataset: Number(r[22]) } : {}),
    },
    estimatedRows: r[12] as Num,
    error,
    parts,
    attempts: r[16] as number,
    takeovers: r[17] as number,
    runs: r[18] as number,
    cursor: r[19] as string | null,
    runAfter: r[20] as number,
    createdBy: (r[21] as string | null) ?? null,
  };
}

export function toOperatorKey(r: Row): OperatorKeyRecord {
  return {
    id: r[0] as string,
    prefix: r[1] as string,
    hash: r[2] as string,
    last4: r[3] as string,
    name: r[4] as string,
    scopes: JSON.parse(r[5] as string) as OperatorScope[],
    createdAt: Number(r[6]),
    lastUsedAt: r[7] === null ? null : Number(r[7]),
    revokedAt: r[8] === null ? null : Number(r[8]),
  };
}

const json = (text: unknown): unknown => (text === null ? null : JSON.parse(text as string));

export function toAudit(r: Row): AuditEntry {
  return {
    id: r[0] as string,
    at: Number(r[1]),
    actor: r[2] as string,
    action: r[3] as string,
    tenant: r[4] as string | null,
    target: r[5] as string,
    before: json(r[6]),
    after: json(r[7]),
  };
}

// Webhooks

/** The columns an endpoint is read with (never its secrets), in this order (toEndpoint). */
export const ENDPOINT_COLUMNS = `id, tenant_id, url, description, events, enabled, disabled_reason, disabled_at,
  failing_since, source, created_at, updated_at, previous_secret_expires_at`;
export const EVENT_COLUMNS = "id, type, tenant_id, export_id, created_at, data";
export const ATTEMPT_COLUMNS =
  "id, delivery_id, event_id, endpoint_id, attempted_at, status, duration_ms, error, response";
/** A delivery with its event's type (toDelivery); queries add their WHERE. */
export const DELIVERY_SELECT = `SELECT d.id, d.event_id, d.endpoint_id, ev.type, d.state, d.attempts,
    d.next_attempt_at, d.created_at, d.delivered_at, d.last_status, d.last_error
  FROM webhook_deliveries d JOIN webhook_events ev ON ev.id = d.event_id`;

export function toEndpoint(row: Row): WebhookEndpoint {
  const [
    id,
    tenantId,
    url,
    description,
    events,
    enabled,
    disabledReason,
    disabledAt,
    failingSince,
    source,
    createdAt,
    updatedAt,
    previousSecretExpiresAt,
  ] = row as [
    string,
    string | null,
    string,
    string,
    string,
    number,
    DisabledReason | null,
    Num,
    Num,
    WebhookEndpoint["source"],
    number,
    number,
    Num,
  ];
  return {
    id,
    tenantId,
    url,
    description,
    events: decodeEventTypes(events),
    enabled: Number(enabled) === 1,
    disabledReason,
    disabledAt,
    failingSince,
    source,
    createdAt,
    updatedAt,
    previousSecretExpiresAt,
  };
}

export function toEvent(row: Row): WebhookEvent {
  const [id, type, tenantId, exportId, createdAt, data] = row as [
    string,
    EventType,
    string,
    string | null,
    number,
    string,
  ];
  return { id, type, tenantId, exportId, createdAt, data };
}

export function toDelivery(row: Row): WebhookDelivery {
  const [
    id,
    eventId,
    endpointId,
    eventType,
    state,
    attempts,
    nextAttemptAt,
    createdAt,
    deliveredAt,
    lastStatus,
    lastError,
  ] = row as [string, string, string, EventType, DeliveryState, number, Num, number, Num, Num, string | null];
  return {
    id,
    eventId,
    endpointId,
    eventType,
    state,
    attempts: Number(attempts),
    nextAttemptAt,
    createdAt,
    deliveredAt,
    lastStatus: lastStatus === null ? null : Number(lastStatus),
    lastError,
  };
}

export function toAttempt(row: Row): WebhookAttempt {
  const [id, deliveryId, eventId, endpointId, attemptedAt, status, durationMs, error, response] = row as [
    string,
    string,
    string,
    string,
    number,
    Num,
    number,
    string | null,
    string | null,
  ];
  return {
    id,
    deliveryId,
    eventId,
    endpointId,
    attemptedAt,
    status: status === null ? null : Number(status),
    durationMs: Number(durationMs),
    error,
    response,
  };
}
