/**
 * The one schema history of the metadata store, for both engines: the same tables and column names
 * (rows.ts reads them), with the dialect's type names (times are epoch milliseconds in BIGINT,
 * read back as numbers). Append a migration; never edit an applied one.
 *
 * Versions 1–3 were kept per engine before this history (SQLite recorded 1, 2 and 3; PostgreSQL 1
 * and 3) and ended in the same schema, which version 3 here creates in one step. A database that
 * records version 3 has it; one that records only older versions predates the takeover counters
 * and was never released, so `migrate` refuses it instead of guessing.
 */
import { EXPORT_CHANGED_CHANNEL, QUEUE_CHANNEL, WEBHOOK_CHANNEL } from "./dialect/postgres.js";
import { changes, type Dialect, type Plan, rows, STATUS, script } from "./sql.js";

export interface Migration {
  version: number;
  sql(d: Dialect): string;
}

/** The first version of this history: the schema the per-engine versions 1–3 made. */
const BASELINE = 3;

export const MIGRATIONS: readonly Migration[] = [
  {
    version: BASELINE,
    sql: (d) => `
      CREATE TABLE plans (
        name TEXT PRIMARY KEY,
        max_running INTEGER NOT NULL,
        max_queued INTEGER NOT NULL,
        requests_per_minute INTEGER NOT NULL,
        created_at ${d.bigint} NOT NULL
      );
      INSERT INTO plans (name, max_running, max_queued, requests_per_minute, created_at)
        VALUES ('default', 2, 20, 600, 0);
      CREATE TABLE tenants (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        created_at ${d.bigint} NOT NULL,
        plan TEXT NOT NULL DEFAULT 'default',
        -- Per-tenant overrides of the plan's limits; NULL means "as the plan says".
        max_running INTEGER,
        max_queued INTEGER,
        requests_per_minute INTEGER
      );
      CREATE TABLE api_keys (
        id TEXT PRIMARY KEY,
        tenant_id TEXT NOT NULL REFERENCES tenants(id),
        prefix TEXT NOT NULL UNIQUE,
        hash TEXT NOT NULL,
        last4 TEXT NOT NULL,
        scopes TEXT NOT NULL,
        created_at ${d.bigint} NOT NULL,
        last_used_at ${d.bigint},
        revoked_at ${d.bigint}
      );
      CREATE TABLE exports (
        id TEXT PRIMARY KEY,
        tenant_id TEXT NOT NULL REFERENCES tenants(id),
        dataset TEXT NOT NULL,
        status TEXT NOT NULL,
        request TEXT NOT NULL,
        created_at ${d.bigint} NOT NULL,
        started_at ${d.bigint},
        finished_at ${d.bigint},
        expires_at ${d.bigint},
        progress_percent ${d.double} NOT NULL DEFAULT 0,
        progress_rows ${d.bigint} NOT NULL DEFAULT 0,
        progress_parts INTEGER NOT NULL DEFAULT 0,
        estimated_rows ${d.bigint},
        error_code TEXT,
        error_message TEXT,
        error_retryable INTEGER,
        attempts INTEGER NOT NULL DEFAULT 0,
        cursor TEXT,
        run_after ${d.bigint} NOT NULL,
        lease_owner TEXT,
        lease_expires_at ${d.bigint},
        purged_at ${d.bigint},
        -- A worker's crash is no failed attempt: claims under an expired lease are takeovers
        -- (since the last published part), and every claim is a run that part keys carry.
        takeovers INTEGER NOT NULL DEFAULT 0,
        runs INTEGER NOT NULL DEFAULT 0
      );
      CREATE INDEX exports_by_tenant ON exports (tenant_id, id);
      CREATE INDEX exports_by_claim ON exports (status, run_after);
      CREATE INDEX exports_by_created ON exports (created_at);
      CREATE TABLE export_parts (
        export_id TEXT NOT NULL REFERENCES exports(id) ON DELETE CASCADE,
        idx INTEGER NOT NULL,
        object_key TEXT NOT NULL,
        rows ${d.bigint} NOT NULL,
        bytes ${d.bigint} NOT NULL,
        sha256 TEXT NOT NULL,
        PRIMARY KEY (export_id, idx)
      );
      CREATE TABLE idempotency_keys (
        tenant_id TEXT NOT NULL REFERENCES tenants(id),
        key TEXT NOT NULL,
        request_hash TEXT NOT NULL,
        export_id TEXT NOT NULL,
        created_at ${d.bigint} NOT NULL,
        PRIMARY KEY (tenant_id, key)
      );
      CREATE INDEX idempotency_keys_by_created ON idempotency_keys (created_at);
      CREATE TABLE settings (
        name TEXT PRIMARY KEY,
        value TEXT NOT NULL
      );
    `,
  },
  {
    // Each tenant's count of queued exports, kept by a trigger on every insert, status change and
    // delete of an export: the queue cap is checked against one row (which a create locks, so the
    // cap stays exact under concurrency) instead of counting the queue. PostgreSQL's trigger also
    // sends the NOTIFY that wakes workers whenever an export becomes queued.
    version: 4,
    sql: (d) => {
      const queued = STATUS.queued;
      const backfill = `ALTER TABLE tenants ADD COLUMN queued INTEGER NOT NULL DEFAULT 0;
        UPDATE tenants SET queued = (SELECT count(*) FROM exports e WHERE e.tenant_id = tenants.id AND e.status = ${queued});`;
      if (d.name === "sqlite")
        return `${backfill}
          CREATE TRIGGER exports_queued_insert AFTER INSERT ON exports WHEN NEW.status = ${queued}
          BEGIN UPDATE tenants SET queued = queued + 1 WHERE id = NEW.tenant_id; END;
          CREATE TRIGGER exports_queued_update AFTER UPDATE OF status ON exports
            WHEN (OLD.status = ${queued}) <> (NEW.status = ${queued})
          BEGIN
            UPDATE tenants SET queued = queued + (NEW.status = ${queued}) - (OLD.status = ${queued})
              WHERE id = NEW.tenant_id;
          END;
          CREATE TRIGGER exports_queued_delete AFTER DELETE ON exports WHEN OLD.status = ${queued}
          BEGIN UPDATE tenants SET queued = queued - 1 WHERE id = OLD.tenant_id; END;`;
      return `${backfill}
        CREATE FUNCTION exports_queued() RETURNS trigger LANGUAGE plpgsql AS $$
        DECLARE
          now_queued boolean := TG_OP <> 'DELETE' AND NEW.status = ${queued};
          was_queued boolean := TG_OP <> 'INSERT' AND OLD.status = ${queued};
        BEGIN
          IF now_queued AND NOT was_queued THEN
            UPDATE tenants SET queued = queued + 1 WHERE id = NEW.tenant_id;
            PERFORM pg_notify('${QUEUE_CHANNEL}', '');
          ELSIF was_queued AND NOT now_queued THEN
            UPDATE tenants SET queued = queued - 1 WHERE id = OLD.tenant_id;
          END IF;
          RETURN NULL;
        END $$;
        CREATE TRIGGER exports_queued AFTER INSERT OR UPDATE OF status OR DELETE ON exports
          FOR EACH ROW EXECUTE FUNCTION exports_queued();`;
    },
  },
  {
    // The operator API: tenants an operator disabled, operator keys (hashed like tenant keys, with
    // operator scopes, no tenant), and the audit log of every operator write (before/after as JSON
    // text, the tenant by name so an entry outlives a deleted tenant).
    version: 5,
    sql: (d) => `
      ALTER TABLE tenants ADD COLUMN disabled_at ${d.bigint};
      CREATE TABLE operator_keys (
        id TEXT PRIMARY KEY,
        prefix TEXT NOT NULL UNIQUE,
        hash TEXT NOT NULL,
        last4 TEXT NOT NULL,
        name TEXT NOT NULL,
        scopes TEXT NOT NULL,
        created_at ${d.bigint} NOT NULL,
        last_used_at ${d.bigint},
        revoked_at ${d.bigint}
      );
      CREATE TABLE audit_log (
        id TEXT PRIMARY KEY,
        at ${d.bigint} NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        tenant TEXT,
        target TEXT NOT NULL,
        before_json TEXT,
        after_json TEXT
      );
      CREATE INDEX audit_log_by_tenant ON audit_log (tenant, id);
    `,
  },
  {
    // Who created each export (the AuthContext's actor: key:<prefix>, token:<sub>,
    // operator:<prefix>); NULL for exports created before it was kept.
    version: 6,
    sql: () => "ALTER TABLE exports ADD COLUMN created_by TEXT;",
  },
  {
    // Webhooks (issue 14): endpoints (tenant_id NULL = product-wide, the operator's), the outbox of
    // events (written in the transaction of the status change they report, with the export as it
    // was then), one delivery per event and endpoint (fanned out in that same transaction, claimed
    // under a lease like exports), and the log of every attempt. Secrets are sealed
    // (webhooks/secret-box.ts). PostgreSQL's trigger sends the NOTIFY that wakes deliverers
    // whenever a delivery becomes due now (a new one, or one sent again by hand).
    version: 7,
    sql: (d) => {
      const tables = `
        CREATE TABLE webhook_endpoints (
          id TEXT PRIMARY KEY,
          tenant_id TEXT REFERENCES tenants(id),
          url TEXT NOT NULL,
          description TEXT NOT NULL,
          events TEXT NOT NULL,
          enabled INTEGER NOT NULL,
          disabled_reason TEXT,
          disabled_at ${d.bigint},
          failing_since ${d.bigint},
          source TEXT NOT NULL,
          secret TEXT NOT NULL,
          previous_secret TEXT,
          previous_secret_expires_at ${d.bigint},
          created_at ${d.bigint} NOT NULL,
          updated_at ${d.bigint} NOT NULL
        );
        CREATE INDEX webhook_endpoints_by_tenant ON webhook_endpoints (tenant_id, id);
        CREATE TABLE webhook_events (
          id TEXT PRIMARY KEY,
          type TEXT NOT NULL,
          tenant_id TEXT NOT NULL,
          export_id TEXT,
          created_at ${d.bigint} NOT NULL,
          data TEXT NOT NULL
        );
        CREATE INDEX webhook_events_by_tenant ON webhook_events (tenant_id, id);
        CREATE INDEX webhook_events_by_created ON webhook_events (created_at);
        CREATE TABLE webhook_deliveries (
          id TEXT PRIMARY KEY,
          event_id TEXT NOT NULL REFERENCES webhook_events(id) ON DELETE CASCADE,
          endpoint_id TEXT NOT NULL REFERENCES webhook_endpoints(id) ON DELETE CASCADE,
          state TEXT NOT NULL,
          attempts INTEGER NOT NULL DEFAULT 0,
          next_attempt_at ${d.bigint},
          lease_owner TEXT,
          lease_expires_at ${d.bigint},
          created_at ${d.bigint} NOT NULL,
          delivered_at ${d.bigint},
          last_status INTEGER,
          last_error TEXT,
          UNIQUE (event_id, endpoint_id)
        );
        CREATE INDEX webhook_deliveries_due ON webhook_deliveries (state, next_attempt_at);
        CREATE INDEX webhook_deliveries_by_endpoint ON webhook_deliveries (endpoint_id, id);
        CREATE TABLE webhook_attempts (
          id TEXT PRIMARY KEY,
          delivery_id TEXT NOT NULL REFERENCES webhook_deliveries(id) ON DELETE CASCADE,
          event_id TEXT NOT NULL,
          endpoint_id TEXT NOT NULL,
          attempted_at ${d.bigint} NOT NULL,
          status INTEGER,
          duration_ms INTEGER NOT NULL,
          error TEXT,
          response TEXT
        );
        CREATE INDEX webhook_attempts_by_delivery ON webhook_attempts (delivery_id, id);`;
      if (d.name === "sqlite") return tables;
      return `${tables}
        CREATE FUNCTION webhook_due() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          IF NEW.state = 'pending' AND NEW.lease_owner IS NULL THEN
            PERFORM pg_notify('${WEBHOOK_CHANNEL}', '');
          END IF;
          RETURN NULL;
        END $$;
        CREATE TRIGGER webhook_due AFTER INSERT OR UPDATE OF state, next_attempt_at ON webhook_deliveries
          FOR EACH ROW EXECUTE FUNCTION webhook_due();`;
    },
  },
  {
    // Archives (issue 16): a part's dataset (multi-dataset exports), whether it ends its dataset (a
    // resumed run then starts the next one) and the CRC-32 of its stored bytes (the zip archive's
    // central directory is written from it); the export's current dataset for its progress.
    version: 8,
    sql: (d) => `
      ALTER TABLE export_parts ADD COLUMN dataset_idx INTEGER NOT NULL DEFAULT 0;
      ALTER TABLE export_parts ADD COLUMN last_of_dataset INTEGER NOT NULL DEFAULT 0;
      ALTER TABLE export_parts ADD COLUMN crc32 ${d.bigint};
      ALTER TABLE exports ADD COLUMN progress_dataset INTEGER NOT NULL DEFAULT 0;
    `,
  },
  {
    // PostgreSQL tells every API process which export changed what a progress stream shows
    // (status, progress, estimate, attempts, error), so streams held by another process than the
    // worker's see it at once rather than at their next poll (http/exports/event-streams.ts). The
    // WHEN clause keeps lease renewals (every second per running export) from firing it; progress
    // is written at most every 500 ms per run, and the payload is the id only. SQLite is one process:
    // nothing to tell.
    version: 9,
    sql: (d) =>
      d.name === "sqlite"
        ? ""
        : `
        CREATE FUNCTION exports_changed() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          PERFORM pg_notify('${EXPORT_CHANGED_CHANNEL}', NEW.id);
          RETURN NULL;
        END $$;
        CREATE TRIGGER exports_changed AFTER UPDATE ON exports FOR EACH ROW
          WHEN (OLD.status IS DISTINCT FROM NEW.status
            OR OLD.progress_rows IS DISTINCT FROM NEW.progress_rows
            OR OLD.progress_percent IS DISTINCT FROM NEW.progress_percent
            OR OLD.progress_parts IS DISTINCT FROM NEW.progress_parts
            OR OLD.estimated_rows IS DISTINCT FROM NEW.estimated_rows
            OR OLD.attempts IS DISTINCT FROM NEW.attempts
            OR OLD.error_code IS DISTINCT FROM NEW.error_code)
          EXECUTE FUNCTION exports_changed();`,
  },
];

/**
 * Applies pending migrations in one transaction (PostgreSQL: behind an advisory lock, so
 * concurrent starts wait for each other). Returns how many ran.
 */
export function* migrate(d: Dialect, now: number): Plan<number> {
  if (d.migrationLock) yield* rows(d.migrationLock);
  yield* script(
    `CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at ${d.bigint} NOT NULL)`,
  );
  const done = new Set((yield* rows("SELECT version FROM schema_migrations")).map((r) => Number(r[0])));
  if (done.size > 0 && !done.has(BASELINE))
    throw new Error(
      `The metadata database records schema versions ${[...done].join(", ")} but not ${BASELINE}: it was made by a development build this release cannot upgrade.`,
    );
  let applied = 0;
  for (const m of MIGRATIONS) {
    if (done.has(m.version)) continue;
    yield* script(m.sql(d));
    yield* changes(`INSERT INTO schema_migrations (version, applied_at) VALUES (${m.version}, ${now})`);
    applied++;
  }
  return applied;
}
