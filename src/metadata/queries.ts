/**
 * Every statement of the metadata store, written once; `queries(dialect)` fills in what the engines
 * spell differently. Statuses come from the domain's table (STATUS, statusIn), never spelled here.
 */
import { DISCARDED_STATUSES, fromStatesFor } from "../domain/export.js";
import { DELIVERY } from "../domain/webhooks.js";
import {
  ATTEMPT_COLUMNS,
  AUDIT_COLUMNS,
  DELIVERY_SELECT,
  ENDPOINT_COLUMNS,
  EVENT_COLUMNS,
  EXPORT_COLUMNS,
  KEY_COLUMNS,
  OPERATOR_KEY_COLUMNS,
  PART_COLUMNS,
  PLAN_COLUMNS,
  TENANT_SELECT,
} from "./rows.js";
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

const pending = `'${DELIVERY.pending}'`;
const delivered = `'${DELIVERY.delivered}'`;
const abandoned = `'${DELIVERY.abandoned}'`;
/**
 * An endpoint's owner as one comparable value: the tenant id, or '' for a product-wide endpoint
 * (tenant_id NULL), so one text serves both with `@owner`.
 */
const OWNER = "COALESCE(w.tenant_id, '')";
/** The endpoints that receive events of tenant @tenantId of type @pattern (LIKE on `,a,b,`). */
const SUBSCRIBED =
  "w.enabled = 1 AND (w.tenant_id IS NULL OR w.tenant_id = @tenantId) AND w.events LIKE @pattern";

/** Progress only moves forward, whichever write lands last. */
const progress = (d: Dialect) =>
  `progress_percent = ${d.greatest}(progress_percent, @percent), progress_rows = ${d.greatest}(progress_rows, @rows),
   progress_parts = ${d.greatest}(progress_parts, @parts),
   progress_dataset = ${d.greatest}(progress_dataset, @progressDataset)`;

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

    // The operator's side: tenants' life cycle, plans, operator keys, audit log
    /** A page of tenants by name; the first page passes '' (every name sorts after it). */
    tenantsAfter: `${TENANT_SELECT} WHERE t.name > @after ORDER BY t.name LIMIT @limit`,
    disableTenant: "UPDATE tenants SET disabled_at = COALESCE(disabled_at, @now) WHERE name = @name",
    enableTenant: "UPDATE tenants SET disabled_at = NULL WHERE name = @name",
    activeExports: `SELECT id FROM exports WHERE tenant_id = @tenantId AND ${statusIn(fromStatesFor(NAMED.canceled))}
      ORDER BY id`,
    countTenantExports: "SELECT count(*) FROM exports WHERE tenant_id = @tenantId",
    deleteTenantParts:
      "DELETE FROM export_parts WHERE export_id IN (SELECT id FROM exports WHERE tenant_id = @tenantId)",
    deleteTenantIdempotencyKeys: "DELETE FROM idempotency_keys WHERE tenant_id = @tenantId",
    deleteTenantExports: "DELETE FROM exports WHERE tenant_id = @tenantId",
    deleteTenantKeys: "DELETE FROM api_keys WHERE tenant_id = @tenantId",
    /**
     * A deleted tenant's webhooks: its own endpoints, every event about its exports (also those
     * queued for product-wide endpoints: the event carries the export's request), their deliveries
     * and attempt log. Children first, so neither engine relies on cascades.
     */
    deleteTenantWebhookAttempts: `DELETE FROM webhook_attempts
      WHERE event_id IN (SELECT id FROM webhook_events WHERE tenant_id = @tenantId)
         OR endpoint_id IN (SELECT id FROM webhook_endpoints WHERE tenant_id = @tenantId)`,
    deleteTenantWebhookDeliveries: `DELETE FROM webhook_deliveries
      WHERE event_id IN (SELECT id FROM webhook_events WHERE tenant_id = @tenantId)
         OR endpoint_id IN (SELECT id FROM webhook_endpoints WHERE tenant_id = @tenantId)`,
    deleteTenantWebhookEvents: "DELETE FROM webhook_events WHERE tenant_id = @tenantId",
    deleteTenantWebhookEndpoints: "DELETE FROM webhook_endpoints WHERE tenant_id = @tenantId",
    deleteTenant: "DELETE FROM tenants WHERE id = @tenantId",
    insertPlan: `INSERT INTO plans (name, max_running, max_queued, requests_per_minute, created_at)
      VALUES (@name, @maxRunning, @maxQueued, @requestsPerMinute, @now) ON CONFLICT (name) DO NOTHING`,
    insertOperatorKey: `INSERT INTO operator_keys (${OPERATOR_KEY_COLUMNS})
      VALUES (@id, @prefix, @hash, @last4, @name, @scopes, @createdAt, @lastUsedAt, @revokedAt)`,
    operatorKeyByPrefix: `SELECT ${OPERATOR_KEY_COLUMNS} FROM operator_keys WHERE prefix = @prefix`,
    operatorKeys: `SELECT ${OPERATOR_KEY_COLUMNS} FROM operator_keys ORDER BY created_at, id`,
    revokeOperatorKey:
      "UPDATE operator_keys SET revoked_at = @now WHERE prefix = @prefix AND revoked_at IS NULL",
    touchOperatorKey: "UPDATE operator_keys SET last_used_at = @now WHERE id = @id",
    insertAudit: `INSERT INTO audit_log (${AUDIT_COLUMNS})
      VALUES (@id, @at, @actor, @action, @tenant, @target, @beforeJson, @afterJson)`,

    // Exports
    insertExport: `INSERT INTO exports (id, tenant_id, dataset, status, request, created_at, estimated_rows, run_after, created_by)
      VALUES (@id, @tenantId, @dataset, @status, @request, @createdAt, @estimatedRows, @runAfter, @createdBy)`,
    /**
     * Inserts a queued export only while its tenant's queue has room, in one statement: the tenant
     * row carries the queued count (a trigger keeps it) and is locked for the insert, so concurrent
     * creates of one tenant take turns on it and each sees the count the one before left.
     */
    createUnderCap: `INSERT INTO exports (id, tenant_id, dataset, status, request, created_at, estimated_rows, run_after, created_by)
      SELECT @id, id, @dataset, ${queued}, @request, CAST(@createdAt AS ${d.bigint}),
        CAST(@estimatedRows AS ${d.bigint}), CAST(@runAfter AS ${d.bigint}), CAST(@createdBy AS TEXT)
      FROM tenants WHERE id = @tenantId AND queued < @maxQueued AND disabled_at IS NULL ${d.forUpdate}`,
    /** Why createUnderCap inserted nothing: the queue is full, or the tenant is disabled (or gone: no row). */
    queuedCount: "SELECT queued, disabled_at FROM tenants WHERE id = @tenantId",
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
    insertPart: `INSERT INTO export_parts (${PART_COLUMNS}) VALUES (@id, @index, @objectKey, @partRows, @bytes, @sha256, @partDataset, @lastOfDataset, @crc32)`,
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

    // Webhooks: the outbox (written inside the status change's transaction)
    /** Whether any enabled endpoint takes this event of this export's tenant: no endpoint, no event row. */
    subscriberOf: `SELECT 1 FROM webhook_endpoints w
      WHERE ${SUBSCRIBED.replaceAll("@tenantId", "(SELECT tenant_id FROM exports WHERE id = @id)")} LIMIT 1`,
    insertEvent: `INSERT INTO webhook_events (${EVENT_COLUMNS})
      VALUES (@eventId, @type, @tenantId, @exportId, @now, @data)`,
    /**
     * Fan-out at write time: one delivery per subscribed endpoint, in the event's transaction, so an
     * endpoint created later never gets older events and tenant isolation is this one WHERE. The
     * delivery id is the event id and the endpoint id (unique together, no id generated in SQL).
     */
    fanOut: `INSERT INTO webhook_deliveries (id, event_id, endpoint_id, state, attempts, next_attempt_at, created_at)
      SELECT CAST(@eventId AS TEXT) || ':' || w.id, @eventId, w.id, ${pending}, 0,
        CAST(@now AS ${d.bigint}), CAST(@now AS ${d.bigint})
      FROM webhook_endpoints w WHERE ${SUBSCRIBED}`,
    insertDelivery: `INSERT INTO webhook_deliveries (id, event_id, endpoint_id, state, attempts, next_attempt_at, created_at)
      VALUES (@id, @eventId, @endpointId, ${pending}, 0, @now, @now)`,

    // Webhooks: endpoints (every read and write scoped by @owner: the tenant id, or '' for product-wide)
    insertEndpoint: `INSERT INTO webhook_endpoints (${ENDPOINT_COLUMNS}, secret, previous_secret)
      VALUES (@id, @tenantId, @url, @description, @events, @enabled, @disabledReason, @disabledAt, @failingSince,
        @source, @createdAt, @updatedAt, @previousSecretExpiresAt, @secret, NULL)`,
    endpoint: `SELECT ${ENDPOINT_COLUMNS} FROM webhook_endpoints w WHERE w.id = @id AND ${OWNER} = @owner`,
    endpointsOf: `SELECT ${ENDPOINT_COLUMNS} FROM webhook_endpoints w WHERE ${OWNER} = @owner ORDER BY w.id`,
    /** Endpoints the operator should look at: disabled by a 410 or by failing, or failing now. */
    troubledEndpoints: `SELECT ${ENDPOINT_COLUMNS} FROM webhook_endpoints w
      WHERE w.failing_since IS NOT NULL OR (w.enabled = 0 AND w.disabled_reason <> 'manual') ORDER BY w.id`,
    deleteEndpoint: `DELETE FROM webhook_endpoints WHERE id IN (
      SELECT w.id FROM webhook_endpoints w WHERE w.id = @id AND ${OWNER} = @owner)`,
    rotateSecret: `UPDATE webhook_endpoints SET previous_secret = secret, previous_secret_expires_at = @until,
        secret = @secret, updated_at = @now
      WHERE id IN (SELECT w.id FROM webhook_endpoints w WHERE w.id = @id AND ${OWNER} = @owner)`,
    setEnabled: `UPDATE webhook_endpoints SET enabled = @enabled, disabled_reason = @reason, disabled_at = @disabledAt,
        failing_since = NULL, updated_at = @now
      WHERE id IN (SELECT w.id FROM webhook_endpoints w WHERE w.id = @id AND ${OWNER} = @owner)`,
    /** A disabled endpoint's deliveries will not be tried: they end abandoned (a redelivery revives one). */
    abandonPending: `UPDATE webhook_deliveries SET state = ${abandoned}, next_attempt_at = NULL,
        lease_owner = NULL, lease_expires_at = NULL
      WHERE endpoint_id = @id AND state = ${pending}`,
    /** Config-declared endpoints: the file's url, events and secret win; enabled and failing state stay. */
    upsertConfigEndpoint: `INSERT INTO webhook_endpoints (${ENDPOINT_COLUMNS}, secret, previous_secret)
      VALUES (@id, NULL, @url, @description, @events, 1, NULL, NULL, NULL, 'config', @now, @now, NULL, @secret, NULL)
      ON CONFLICT (id) DO UPDATE SET url = excluded.url, description = excluded.description,
        events = excluded.events, secret = excluded.secret, updated_at = excluded.updated_at`,
    configEndpointIds: "SELECT id FROM webhook_endpoints WHERE source = 'config'",

    // Webhooks: delivery (claimed under a lease like exports; SKIP LOCKED on PostgreSQL)
    /**
     * Takes up to @limit due deliveries under a lease: pending and due, and not leased by a live
     * deliverer (one that died leaves its lease to lapse, then anyone takes it).
     */
    claimDeliveries: `UPDATE webhook_deliveries SET lease_owner = @owner, lease_expires_at = @until
      WHERE id IN (SELECT e.id FROM webhook_deliveries e
        WHERE e.state = ${pending} AND e.next_attempt_at <= @now
          AND (e.lease_expires_at IS NULL OR e.lease_expires_at < @now)
        ORDER BY e.next_attempt_at LIMIT @limit ${d.skipLocked})
      RETURNING id`,
    /**
     * What a claimed delivery needs to be sent: event, endpoint and its sealed secrets. The join
     * checks the tenant once more: an endpoint of tenant A is never sent tenant B's event.
     */
    deliveriesToSend: `SELECT d.id, d.event_id, d.endpoint_id, d.attempts, ev.type, ev.tenant_id, ev.export_id,
        ev.created_at, ev.data, w.url, w.secret, w.previous_secret, w.previous_secret_expires_at, w.tenant_id
      FROM webhook_deliveries d JOIN webhook_events ev ON ev.id = d.event_id
        JOIN webhook_endpoints w ON w.id = d.endpoint_id
      WHERE ${d.inList("d.id", "ids")} AND d.lease_owner = @owner AND w.enabled = 1
        AND (w.tenant_id IS NULL OR w.tenant_id = ev.tenant_id)`,
    /**
     * Claimed deliveries of an endpoint disabled meanwhile (an attempt in flight when it was
     * disabled scheduled a retry) end abandoned instead of being claimed again and again.
     */
    abandonDisabled: `UPDATE webhook_deliveries SET state = ${abandoned}, next_attempt_at = NULL,
        lease_owner = NULL, lease_expires_at = NULL
      WHERE ${d.inList("id", "ids")} AND lease_owner = @owner
        AND endpoint_id IN (SELECT id FROM webhook_endpoints WHERE enabled = 0)`,
    /** Ends one attempt, only while this deliverer still holds the delivery's lease. */
    finishAttempt: `UPDATE webhook_deliveries SET state = @state, attempts = attempts + 1, next_attempt_at = @next,
        lease_owner = NULL, lease_expires_at = NULL, delivered_at = @deliveredAt, last_status = @status,
        last_error = @error
      WHERE id = @id AND lease_owner = @owner`,
    insertAttempt: `INSERT INTO webhook_attempts (${ATTEMPT_COLUMNS})
      VALUES (@attemptId, @id, @eventId, @endpointId, @now, @status, @durationMs, @error, @response)`,
    endpointSucceeded: "UPDATE webhook_endpoints SET failing_since = NULL WHERE id = @endpointId",
    endpointFailed: `UPDATE webhook_endpoints SET failing_since = COALESCE(failing_since, @now) WHERE id = @endpointId
      RETURNING failing_since`,
    /** Sends a delivery again now (by hand): whatever its state, with a fresh schedule. */
    redeliver: `UPDATE webhook_deliveries SET state = ${pending}, attempts = 0, next_attempt_at = @now,
        lease_owner = NULL, lease_expires_at = NULL
      WHERE event_id = @eventId AND endpoint_id = @endpointId`,
    outboxDepth: `SELECT count(*) FROM webhook_deliveries WHERE state = ${pending}`,

    // Webhooks: the delivery log
    event: `SELECT ${EVENT_COLUMNS} FROM webhook_events WHERE id = @id`,
    deliveriesOfEndpoint: `${DELIVERY_SELECT} WHERE d.endpoint_id = @endpointId
        AND (CAST(@before AS TEXT) IS NULL OR d.id < @before)
      ORDER BY d.id DESC LIMIT @limit`,
    /** An event's deliveries to the endpoints of @owner only: a tenant never sees the operator's. */
    deliveriesOfEvent: `${DELIVERY_SELECT} JOIN webhook_endpoints w ON w.id = d.endpoint_id
      WHERE d.event_id = @eventId AND ${OWNER} = @owner ORDER BY d.id`,
    attemptsOf: `SELECT ${ATTEMPT_COLUMNS} FROM webhook_attempts WHERE ${d.inList("delivery_id", "ids")}
      ORDER BY delivery_id, attempted_at, id`,
    /** Delivered (or abandoned) deliveries and their log are kept this long; events with them. */
    forgetDeliveries: `DELETE FROM webhook_deliveries WHERE created_at < @before AND state <> ${pending}`,
    forgetEvents: `DELETE FROM webhook_events WHERE created_at < @before
      AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.event_id = webhook_events.id)`,
    countDelivered: `SELECT count(*) FROM webhook_deliveries WHERE state = ${delivered}`,
  };
}

export type Queries = ReturnType<typeof queries>;
