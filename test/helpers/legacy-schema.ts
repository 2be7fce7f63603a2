/**
 * The metadata schema as exportd wrote it before the one migration history (src/metadata/
 * migrations.ts): each engine's own versions 1–3, kept verbatim so a test can build a database the
 * way an installed exportd did and open it with the current store.
 */

export const SQLITE_MIGRATIONS: readonly { version: number; sql: string }[] = [
  {
    version: 1,
    sql: `
      CREATE TABLE tenants (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        created_at INTEGER NOT NULL
      );
      CREATE TABLE api_keys (
        id TEXT PRIMARY KEY,
        tenant_id TEXT NOT NULL REFERENCES tenants(id),
        prefix TEXT NOT NULL UNIQUE,
        hash TEXT NOT NULL,
        last4 TEXT NOT NULL,
        scopes TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        last_used_at INTEGER,
        revoked_at INTEGER
      );
      CREATE TABLE exports (
        id TEXT PRIMARY KEY,
        tenant_id TEXT NOT NULL REFERENCES tenants(id),
        dataset TEXT NOT NULL,
        status TEXT NOT NULL,
        request TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        started_at INTEGER,
        finished_at INTEGER,
        expires_at INTEGER,
        progress_percent REAL NOT NULL DEFAULT 0,
        progress_rows INTEGER NOT NULL DEFAULT 0,
        progress_parts INTEGER NOT NULL DEFAULT 0,
        estimated_rows INTEGER,
        error_code TEXT,
        error_message TEXT,
        error_retryable INTEGER,
        attempts INTEGER NOT NULL DEFAULT 0,
        cursor TEXT,
        run_after INTEGER NOT NULL,
        lease_owner TEXT,
        lease_expires_at INTEGER,
        purged_at INTEGER
      );
      CREATE INDEX exports_by_tenant ON exports (tenant_id, id);
      CREATE INDEX exports_by_claim ON exports (status, run_after);
      CREATE INDEX exports_by_created ON exports (created_at);
      CREATE TABLE export_parts (
        export_id TEXT NOT NULL REFERENCES exports(id) ON DELETE CASCADE,
        idx INTEGER NOT NULL,
        object_key TEXT NOT NULL,
        rows INTEGER NOT NULL,
        bytes INTEGER NOT NULL,
        sha256 TEXT NOT NULL,
        PRIMARY KEY (export_id, idx)
      );
    `,
  },
  {
    version: 2,
    sql: `
      CREATE TABLE plans (
        name TEXT PRIMARY KEY,
        max_running INTEGER NOT NULL,
        max_queued INTEGER NOT NULL,
        requests_per_minute INTEGER NOT NULL,
        created_at INTEGER NOT NULL
      );
      INSERT INTO plans (name, max_running, max_queued, requests_per_minute, created_at)
        VALUES ('default', 2, 20, 600, 0);
      -- Per-tenant overrides of the plan's limits; NULL means "as the plan says".
      ALTER TABLE tenants ADD COLUMN plan TEXT NOT NULL DEFAULT 'default';
      ALTER TABLE tenants ADD COLUMN max_running INTEGER;
      ALTER TABLE tenants ADD COLUMN max_queued INTEGER;
      ALTER TABLE tenants ADD COLUMN requests_per_minute INTEGER;
      CREATE TABLE idempotency_keys (
        tenant_id TEXT NOT NULL REFERENCES tenants(id),
        key TEXT NOT NULL,
        request_hash TEXT NOT NULL,
        export_id TEXT NOT NULL,
        created_at INTEGER NOT NULL,
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
