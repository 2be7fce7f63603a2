/**
 * Every statement of the metadata store, written once; `queries(dialect)` fills in what the engines
 * spell differently. Statuses come from the domain's table (STATUS, statusIn), never spelled here.
 */
import { DISCARDED_STATUSES, fromStatesFor } from "../domain/export.js";
import { EXPORT_COLUMNS, KEY_COLUMNS, PART_COLUMNS, PLAN_COLUMNS, TENANT_SELECT } from "./rows.js";
import { type Dialect, NAMED, STATUS, statusIn } from "./sql.js";

const queued = STATUS.queued;
const running = STATUS.running;

/** 1-based place of export `e` among its tenant's queued exports, in claim order. */
const POSITION = `(SELECT count(*) FROM exports q
  WHERE q.tenant_id = e.tenant_id AND q.status = ${queued} AND (q.run_after, q.id) < (e.run_after, e.id)) + 1`;

/**
 * Queue positions of the queued exports of the tenants in @tenantIds, ranked in claim order in one
 * pass (a count per export would cost the queue's length for each of them).
 */
const WATCHED_POSITIONS = (d: Dialect) => `WITH positions AS (
  SELECT id, ROW_NUMBER() OVER (PARTITION BY tenant_id ORDER BY run_after, id) AS position
  FROM exports WHERE status = ${queued} AND ${d.inList("tenant_id", "tenantIds")})`;

/** A worker-side update that only happens while the worker still holds the running export's lease. */
const leased = (set: string) =>
  `UPDATE exports SET ${set} WHERE id = @id AND status = ${running} AND lease_owner = @owner`;

/** Progress only moves forward, whichever write lands last. */
const progress = (d: Dialect) =>
  `progress_percent = ${d.greatest}(progress_percent, @percent), progress_rows = ${d.greatest}(progress_rows, @rows),
   progress_parts = ${d.greatest}(progress_parts, @parts)`;

export function queries(d: Dialect) {
  return {
    // Tenants, plans, settings, API keys
    ensureTenant:
      "INSERT INTO tenants (id, name, created_at, plan) VALUES (@id, @name, @now, @plan) ON CONFLICT (name) DO NOTHING",
    tenantByName: `${TENANT_SELECT} WHERE t.name = @name`,
    tenantById: `${TENANT_SELECT} WHERE t.id = @id`,
    tenants: `${TENANT_SELECT} ORDER BY t.name`,
    plans: `SELECT ${PLAN_COLUMNS} FROM plans ORDER BY name`,
    plan: `SELECT ${PLAN_COLUMNS} FROM plans WHERE name = @name`,
    upsertPlan: `INSERT INTO plans (name, max_running, max_queued, requests_per_minute, created_at)
      VALUES (@name, @maxRunning, @maxQueued, @requestsPerMinute, @now)
      ON CONFLICT (name) DO UPDATE SET max_running = excluded.max_running, max_queued = excluded.max_queued,
        requests_per_minute = excluded.requests_per_minute`,
    setting: "SELECT value FROM settings WHERE name = @name",
    deleteSetting: "DELETE FROM settings WHERE name = @name",
    putSetting:
      "INSERT INTO settings (name, value) VALUES (@name, @value) ON CONFLICT (name) DO UPDATE SET value = excluded.value",
    insertKey: `INSERT INTO api_keys (${KEY_COLUMNS})
      VALUES (@id, @tenantId, @prefix, @hash, @last4, @scopes, @createdAt, @lastUsedAt, @revokedAt)`,
    keyByPrefix: `SELECT ${KEY_COLUMNS} FROM api_keys WHERE prefix = @prefix`,
    keysOf: `SELECT ${KEY_COLUMNS} FROM api_keys WHERE tenant_id = @tenantId ORDER BY created_at`,
    revokeKey: "UPDATE api_keys SET revoked_at = @now WHERE prefix = @prefix AND revoked_at IS NULL",
    touchKey: "UPDATE api_keys SET last_used_at = @now WHERE id = @id",

    // Exports
    insertExport: `INSERT INTO exports (id, tenant_id, dataset, status, request, created_at, estimated_rows, run_after)
      VALUES (@id, @tenantId, @dataset, @status, @request, @createdAt, @estimatedRows, @runAfter)`,
    /**
     * Inserts a queued export only while its tenant's queue has room, in one statement: the tenant
     * row carries the queued count (a trigger keeps it) and is locked for the insert, so concurrent
     * creates of one tenant take turns on it and each sees the count the one before left.
     */
    createUnderCap: `INSERT INTO exports (id, tenant_id, dataset, status, request, created_at, estimated_rows, run_after)
      SELECT @id, id, @dataset, ${queued}, @request, CAST(@createdAt AS ${d.bigint}),
        CAST(@estimatedRows AS ${d.bigint}), CAST(@runAfter AS ${d.bigint})
      FROM tenants WHERE id = @tenantId AND queued < @maxQueued ${d.forUpdate}`,
    queuedCount: "SELECT queued FROM tenants WHERE id = @tenantId",
    /** Takes the tenant's turn among creates with an idempotency key (the row lock; SQLite: the write lock). */
    lockTenant: `SELECT queued FROM tenants WHERE id = @tenantId ${d.forUpdate}`,
    // A key older than its TTL is free again, even before the sweeper removes it.
    dropStaleKey:
      "DELETE FROM idempotency_keys WHERE tenant_id = @tenantId AND key = @key AND created_at < @staleBefore",
    idempotencyKey:
      "SELECT request_hash, export_id FROM idempotency_keys WHERE tenant_id = @tenantId AND key = @key",
    insertIdempotencyKey: `INSERT INTO idempotency_keys (tenant_id, key, request_hash, export_id, created_at)
      VALUES (@tenantId, @key, @requestHash, @id, @createdAt)`,
    exportById: `SELECT ${EXPORT_COLUMNS} FROM exports WHERE id = @id`,
    exportOfTenant: `SELECT ${EXPORT_COLUMNS} FROM exports WHERE id = @id AND tenant_id = @tenantId`,
    /**
     * The status read: the export and, when queued, its 1-based place among its tenant's queued
     * exports (claim order), in one query.
     */
    exportWithPosition: `SELECT ${EXPORT_COLUMNS}, CASE WHEN status = ${queued} THEN ${POSITION} END
      FROM exports e WHERE id = @id AND tenant_id = @tenantId`,
    /**
     * The status read of many exports at once (progress streams: one query per tick for all of
     * them), each scoped by its tenant: the id list and the tenant list are both in the WHERE, and
     * the store keeps only the rows whose (tenant, id) pair was asked for. Queue positions come from
     * one ranking of the named tenants' queued exports (claim order), not a count per export, so
     * a thousand watched exports of one tenant cost one pass over its queue.
     */
    exportsWithPosition: `${WATCHED_POSITIONS(d)}
      SELECT ${EXPORT_COLUMNS.split(",")
        .map((c) => `e.${c.trim()}`)
        .join(", ")}, p.position
      FROM exports e LEFT JOIN positions p ON p.id = e.id
      WHERE ${d.inList("e.id", "ids")} AND ${d.inList("e.tenant_id", "tenantIds")}`,
    /**
     * What changes while exports wait and run (ExportState), of many exports at once, scoped as
     * exportsWithPosition: the progress streams' tick reads only this, and whole records only for
     * the exports whose state moved.
     */
    exportStates: `${WATCHED_POSITIONS(d)}
      SELECT e.id, e.tenant_id, e.status, e.progress_percent, e.progress_rows, e.progress_parts,
        e.estimated_rows, e.attempts, e.error_code, p.position
      FROM exports e LEFT JOIN positions p ON p.id = e.id
      WHERE ${d.inList("e.id", "ids")} AND ${d.inList("e.tenant_id", "tenantIds")}`,
    queuePosition: `SELECT ${POSITION} FROM exports e WHERE id = @id AND tenant_id = @tenantId AND status = ${queued}`,
    partsOf: `SELECT ${PART_COLUMNS} FROM export_parts WHERE ${d.inList("export_id", "ids")} ORDER BY export_id, idx`,
    countByStatus: "SELECT status, count(*) FROM exports GROUP BY status",
    cancel: `UPDATE exports SET status = ${STATUS.canceled}, finished_at = @now, lease_owner = NULL, lease_expires_at = NULL
      WHERE id = @id AND tenant_id = @tenantId AND ${statusIn(fromStatesFor(NAMED.canceled))}`,

    // Jobs: claiming, leases, results
    /**
     * The oldest runnable export: queued and due while its tenant runs fewer than its max_running
     * under live leases, or running under a lease nobody renewed (its worker died).
     */
    nextRunnable: `SELECT e.id, e.status = ${running} FROM exports e
      WHERE (e.status = ${running} AND e.lease_expires_at < @now)
         OR (e.status = ${queued} AND e.run_after <= @now
             AND (SELECT count(*) FROM exports r
                  WHERE r.tenant_id = e.tenant_id AND r.status = ${running} AND r.lease_expires_at >= @now)
                 < (SELECT COALESCE(t.max_running, p.max_running, 1)
                    FROM tenants t LEFT JOIN plans p ON p.name = t.plan WHERE t.id = e.tenant_id))
      ORDER BY e.run_after, e.id LIMIT 1 ${d.skipLocked}`,
    /**
     * A claim of a queued export starts an attempt; a claim of a running one under an expired lease
     * is a takeover (its worker died), which is no failed attempt of the export. Every claim is a run.
     */
    claim: `UPDATE exports SET status = ${running}, lease_owner = @owner, lease_expires_at = @until,
        attempts = attempts + CASE WHEN status = ${running} THEN 0 ELSE 1 END,
        takeovers = takeovers + CASE WHEN status = ${running} THEN 1 ELSE 0 END, runs = runs + 1,
        started_at = COALESCE(started_at, @now)
      WHERE id = @id RETURNING ${EXPORT_COLUMNS}`,
    leaseOwners: `SELECT DISTINCT lease_owner FROM exports WHERE status = ${running} AND lease_owner IS NOT NULL`,
    expireLeases: `UPDATE exports SET lease_expires_at = @before
      WHERE status = ${running} AND ${d.inList("lease_owner", "owners")}`,
    heartbeat: leased("lease_expires_at = @until"),
    recordPartLease: leased(`cursor = @cursor, lease_expires_at = @until, takeovers = 0, ${progress(d)}`),
    insertPart: `INSERT INTO export_parts (${PART_COLUMNS}) VALUES (@id, @index, @objectKey, @partRows, @bytes, @sha256)`,
    updateProgress: leased(
      `lease_expires_at = @until, estimated_rows = COALESCE(CAST(@estimated AS ${d.bigint}), estimated_rows), ${progress(d)}`,
    ),
    complete:
      leased(`status = ${STATUS.succeeded}, finished_at = @now, expires_at = @expiresAt, progress_percent = 100,
      lease_owner = NULL, lease_expires_at = NULL, error_code = NULL, error_message = NULL, error_retryable = NULL`),
    fail: leased(`status = ${STATUS.failed}, finished_at = @now, lease_owner = NULL, lease_expires_at = NULL,
      error_code = @code, error_message = @message, error_retryable = @retryable`),
    requeue: leased(`status = ${queued}, run_after = @runAfter, lease_owner = NULL, lease_expires_at = NULL,
      attempts = attempts - @giveBack, error_code = CAST(@code AS TEXT), error_message = CAST(@message AS TEXT),
      error_retryable = CAST(@retryable AS INTEGER)`),

    // Retention
    toPurge: `SELECT ${EXPORT_COLUMNS} FROM exports WHERE purged_at IS NULL
        AND ((status = ${STATUS.succeeded} AND expires_at <= @now) OR ${statusIn(DISCARDED_STATUSES)})
      ORDER BY id LIMIT @limit`,
    expire: `UPDATE exports SET status = ${STATUS.expired}, purged_at = @now
      WHERE id = @id AND ${statusIn(fromStatesFor(NAMED.expired))} AND expires_at <= @now`,
    markPurged: "UPDATE exports SET purged_at = @now WHERE id = @id AND purged_at IS NULL",
    // Failed or canceled: the files are gone, so are their parts.
    dropDiscardedParts: `DELETE FROM export_parts WHERE export_id = @id
      AND (SELECT ${statusIn(DISCARDED_STATUSES)} FROM exports WHERE id = @id)`,
    forgetExports: `DELETE FROM exports WHERE id IN (
      SELECT id FROM exports WHERE created_at < @before AND purged_at IS NOT NULL LIMIT @limit)`,
    forgetKeys: "DELETE FROM idempotency_keys WHERE created_at < @before",
  };
}

export type Queries = ReturnType<typeof queries>;
