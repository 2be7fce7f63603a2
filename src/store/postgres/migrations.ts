/**
 * Versioned schema of the PostgreSQL metadata store, applied by `exportd migrate` (and at start).
 * Column names and meanings match the SQLite schema, so both stores share store/rows.ts. Times are
 * epoch milliseconds (BIGINT, read back as numbers). Append a migration; never edit an applied one.
 */
export const POSTGRES_MIGRATIONS: readonly { version: number; sql: string }[] = [
  {
    version: 1,
    sql: `
      CREATE TABLE plans (
        name TEXT PRIMARY KEY,
        max_running INTEGER NOT NULL,
        max_queued INTEGER NOT NULL,
        requests_per_minute INTEGER NOT NULL,
        created_at BIGINT NOT NULL
      );
      INSERT INTO plans (name, max_running, max_queued, requests_per_minute, created_at)
        VALUES ('default', 2, 20, 600, 0);
      CREATE TABLE tenants (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        created_at BIGINT NOT NULL,
        plan TEXT NOT NULL DEFAULT 'default',
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
        created_at BIGINT NOT NULL,
        last_used_at BIGINT,
        revoked_at BIGINT
      );
      CREATE TABLE exports (
        id TEXT PRIMARY KEY,
        tenant_id TEXT NOT NULL REFERENCES tenants(id),
        dataset TEXT NOT NULL,
        status TEXT NOT NULL,
        request TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        started_at BIGINT,
        finished_at BIGINT,
        expires_at BIGINT,
        progress_percent DOUBLE PRECISION NOT NULL DEFAULT 0,
        progress_rows BIGINT NOT NULL DEFAULT 0,
        progress_parts INTEGER NOT NULL DEFAULT 0,
        estimated_rows BIGINT,
        error_code TEXT,
        error_message TEXT,
        error_retryable INTEGER,
        attempts INTEGER NOT NULL DEFAULT 0,
        cursor TEXT,
        run_after BIGINT NOT NULL,
        lease_owner TEXT,
        lease_expires_at BIGINT,
        purged_at BIGINT
      );
      CREATE INDEX exports_by_tenant ON exports (tenant_id, id);
      CREATE INDEX exports_by_claim ON exports (status, run_after);
      CREATE INDEX exports_by_created ON exports (created_at);
      CREATE TABLE export_parts (
        export_id TEXT NOT NULL REFERENCES exports(id) ON DELETE CASCADE,
        idx INTEGER NOT NULL,
        object_key TEXT NOT NULL,
        rows BIGINT NOT NULL,
        bytes BIGINT NOT NULL,
        sha256 TEXT NOT NULL,
        PRIMARY KEY (export_id, idx)
      );
      CREATE TABLE idempotency_keys (
        tenant_id TEXT NOT NULL REFERENCES tenants(id),
        key TEXT NOT NULL,
        request_hash TEXT NOT NULL,
        export_id TEXT NOT NULL,
        created_at BIGINT NOT NULL,
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
    // A worker's crash is no failed attempt of the export it was running: claims of an export under
    // an expired lease count as takeovers (since its last published part), and every claim gets a
    // run number that part keys carry.
    version: 3,
    sql: `
      ALTER TABLE exports ADD COLUMN takeovers INTEGER NOT NULL DEFAULT 0;
      ALTER TABLE exports ADD COLUMN runs INTEGER NOT NULL DEFAULT 0;
    `,
  },
];
