/**
 * SQLite metadata store (better-sqlite3, WAL). SQLite has a single writer, so claiming needs no row
 * locks: the claim is one UPDATE … WHERE id = (oldest runnable) RETURNING, atomic by itself.
 * Several processes may share the file (the CLI writes keys while the server runs): busy_timeout
 * makes them wait for each other instead of failing.
 */
import fs from "node:fs";
import path from "node:path";
import Database from "better-sqlite3";
import {
  type ExportError,
  type ExportPart,
  type ExportProgress,
  type ExportRecord,
  type ExportRequest,
  type ExportStatus,
  fromStatesFor,
} from "../../domain/export.js";
import { newId } from "../../domain/ids.js";
import type { Scope } from "../../domain/scopes.js";
import type { ApiKeyRecord, Lease, LeaseCheck, ListExportsQuery, MetadataStore, Tenant } from "../types.js";
import { SQLITE_MIGRATIONS } from "./migrations.js";

interface ExportRow {
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
  cursor: string | null;
  run_after: number;
}

interface PartRow {
  export_id: string;
  idx: number;
  object_key: string;
  rows: number;
  bytes: number;
  sha256: string;
}

interface KeyRow {
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

/** `status IN (...)` for the statuses from which `to` may be reached — the domain decides, not SQL. */
function from(to: ExportStatus): string {
  return `status IN (${fromStatesFor(to)
    .map((s) => `'${s}'`)
    .join(", ")})`;
}

function toPart(row: PartRow): ExportPart {
  return { index: row.idx, objectKey: row.object_key, rows: row.rows, bytes: row.bytes, sha256: row.sha256 };
}

function toKey(row: KeyRow): ApiKeyRecord {
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

function toExport(row: ExportRow, parts: ExportPart[]): ExportRecord {
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
    cursor: row.cursor,
    runAfter: row.run_after,
  };
}

export class SqliteStore implements MetadataStore {
  private readonly db: Database.Database;

  constructor(file: string) {
    if (file !== ":memory:") fs.mkdirSync(path.dirname(file), { recursive: true });
    this.db = new Database(file);
    this.db.pragma("journal_mode = WAL");
    this.db.pragma("synchronous = NORMAL");
    this.db.pragma("busy_timeout = 5000");
    this.db.pragma("foreign_keys = ON");
  }

  /** Applies pending migrations. Safe to run from several processes: each runs in an immediate transaction. */
  migrate(): number {
    this.db.exec(
      "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)",
    );
    let applied = 0;
    const run = this.db.transaction((version: number, sql: string) => {
      const done = this.db.prepare("SELECT 1 FROM schema_migrations WHERE version = ?").get(version);
      if (done) return;
      this.db.exec(sql);
      this.db
        .prepare("INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)")
        .run(version, Date.now());
      applied++;
    });
    for (const m of SQLITE_MIGRATIONS) run.immediate(m.version, m.sql);
    return applied;
  }

  async ping(): Promise<void> {
    this.db.prepare("SELECT 1").get();
  }

  async close(): Promise<void> {
    if (this.db.open) this.db.close();
  }

  async ensureTenant(name: string, now: number): Promise<Tenant> {
    this.db
      .prepare("INSERT INTO tenants (id, name, created_at) VALUES (?, ?, ?) ON CONFLICT (name) DO NOTHING")
      .run(newId(), name, now);
    const row = this.db.prepare("SELECT id, name, created_at FROM tenants WHERE name = ?").get(name) as {
      id: string;
      name: string;
      created_at: number;
    };
    return { id: row.id, name: row.name, createdAt: row.created_at };
  }

  async findTenantByName(name: string): Promise<Tenant | null> {
    const row = this.db.prepare("SELECT id, name, created_at FROM tenants WHERE name = ?").get(name) as
      | { id: string; name: string; created_at: number }
      | undefined;
    return row ? { id: row.id, name: row.name, createdAt: row.created_at } : null;
  }

  async getTenant(id: string): Promise<Tenant | null> {
    const row = this.db.prepare("SELECT id, name, created_at FROM tenants WHERE id = ?").get(id) as
      | { id: string; name: string; created_at: number }
      | undefined;
    return row ? { id: row.id, name: row.name, createdAt: row.created_at } : null;
  }

  async insertApiKey(key: ApiKeyRecord): Promise<void> {
    this.db
      .prepare(
        `INSERT INTO api_keys (id, tenant_id, prefix, hash, last4, scopes, created_at, last_used_at, revoked_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      )
      .run(
        key.id,
        key.tenantId,
        key.prefix,
        key.hash,
        key.last4,
        JSON.stringify(key.scopes),
        key.createdAt,
        key.lastUsedAt,
        key.revokedAt,
      );
  }

  async findApiKeyByPrefix(prefix: string): Promise<ApiKeyRecord | null> {
    const row = this.db.prepare("SELECT * FROM api_keys WHERE prefix = ?").get(prefix) as KeyRow | undefined;
    return row ? toKey(row) : null;
  }

  async listApiKeys(tenantId: string): Promise<ApiKeyRecord[]> {
    const rows = this.db
      .prepare("SELECT * FROM api_keys WHERE tenant_id = ? ORDER BY created_at")
      .all(tenantId) as KeyRow[];
    return rows.map(toKey);
  }

  async revokeApiKey(prefix: string, now: number): Promise<boolean> {
    const r = this.db
      .prepare("UPDATE api_keys SET revoked_at = ? WHERE prefix = ? AND revoked_at IS NULL")
      .run(now, prefix);
    return r.changes === 1;
  }

  async touchApiKey(id: string, now: number): Promise<void> {
    this.db.prepare("UPDATE api_keys SET last_used_at = ? WHERE id = ?").run(now, id);
  }

  async insertExport(e: ExportRecord): Promise<void> {
    this.db
      .prepare(
        `INSERT INTO exports (id, tenant_id, dataset, status, request, created_at, estimated_rows, run_after)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
      )
      .run(
        e.id,
        e.tenantId,
        e.dataset,
        e.status,
        JSON.stringify(e.request),
        e.createdAt,
        e.estimatedRows,
        e.runAfter,
      );
  }

  private partsOf(ids: string[]): Map<string, ExportPart[]> {
    const byExport = new Map<string, ExportPart[]>(ids.map((id) => [id, []]));
    if (ids.length === 0) return byExport;
    const rows = this.db
      .prepare(
        `SELECT * FROM export_parts WHERE export_id IN (${ids.map(() => "?").join(", ")}) ORDER BY export_id, idx`,
      )
      .all(...ids) as PartRow[];
    for (const row of rows) byExport.get(row.export_id)?.push(toPart(row));
    return byExport;
  }

  private withParts(rows: ExportRow[]): ExportRecord[] {
    const parts = this.partsOf(rows.map((r) => r.id));
    return rows.map((r) => toExport(r, parts.get(r.id) ?? []));
  }

  async getExport(tenantId: string, id: string): Promise<ExportRecord | null> {
    const row = this.db.prepare("SELECT * FROM exports WHERE id = ? AND tenant_id = ?").get(id, tenantId) as
      | ExportRow
      | undefined;
    return row ? (this.withParts([row])[0] ?? null) : null;
  }

  async listExports(tenantId: string, q: ListExportsQuery): Promise<ExportRecord[]> {
    const where = ["tenant_id = @tenantId"];
    if (q.status) where.push("status = @status");
    if (q.dataset) where.push("dataset = @dataset");
    if (q.before) where.push("id < @before");
    const rows = this.db
      .prepare(`SELECT * FROM exports WHERE ${where.join(" AND ")} ORDER BY id DESC LIMIT @limit`)
      .all({
        tenantId,
        status: q.status,
        dataset: q.dataset,
        before: q.before,
        limit: q.limit,
      }) as ExportRow[];
    return this.withParts(rows);
  }

  async cancelExport(
    tenantId: string,
    id: string,
    now: number,
  ): Promise<{ record: ExportRecord; canceled: boolean } | null> {
    const r = this.db
      .prepare(
        `UPDATE exports SET status = 'canceled', finished_at = @now, lease_owner = NULL, lease_expires_at = NULL
         WHERE id = @id AND tenant_id = @tenantId AND ${from("canceled")}`,
      )
      .run({ id, tenantId, now });
    const record = await this.getExport(tenantId, id);
    return record ? { record, canceled: r.changes === 1 } : null;
  }

  async claimExport(lease: Lease): Promise<ExportRecord | null> {
    // Queued and due, or running under a lease nobody renewed (its worker died): the oldest first.
    const row = this.db
      .prepare(
        `UPDATE exports
         SET status = 'running', lease_owner = @owner, lease_expires_at = @until,
             attempts = attempts + 1, started_at = COALESCE(started_at, @now)
         WHERE id = (
           SELECT id FROM exports
           WHERE (status = 'queued' AND run_after <= @now) OR (status = 'running' AND lease_expires_at < @now)
           ORDER BY run_after, id LIMIT 1)
         RETURNING *`,
      )
      .get({ owner: lease.owner, now: lease.now, until: lease.now + lease.leaseMs }) as ExportRow | undefined;
    return row ? (this.withParts([row])[0] ?? null) : null;
  }

  async leaseOwners(): Promise<string[]> {
    const rows = this.db
      .prepare(
        "SELECT DISTINCT lease_owner AS owner FROM exports WHERE status = 'running' AND lease_owner IS NOT NULL",
      )
      .all() as { owner: string }[];
    return rows.map((r) => r.owner);
  }

  async expireLeases(owners: string[], now: number): Promise<number> {
    if (owners.length === 0) return 0;
    const r = this.db
      .prepare(
        `UPDATE exports SET lease_expires_at = ? WHERE status = 'running' AND lease_owner IN (${owners.map(() => "?").join(", ")})`,
      )
      .run(now - 1, ...owners);
    return r.changes;
  }

  /** Runs a worker-side update only while the worker still holds the running export's lease. */
  private leased(sql: string, id: string, lease: Lease, params: Record<string, unknown> = {}): LeaseCheck {
    const r = this.db
      .prepare(`${sql} WHERE id = @id AND status = 'running' AND lease_owner = @owner`)
      .run({ id, owner: lease.owner, now: lease.now, until: lease.now + lease.leaseMs, ...params });
    return r.changes === 1 ? "ok" : "lost";
  }

  async heartbeat(id: string, lease: Lease): Promise<LeaseCheck> {
    return this.leased("UPDATE exports SET lease_expires_at = @until", id, lease);
  }

  async recordPart(
    id: string,
    lease: Lease,
    part: ExportPart,
    cursor: string | null,
    progress: ExportProgress,
  ): Promise<LeaseCheck> {
    const tx = this.db.transaction((): LeaseCheck => {
      const check = this.leased(
        `UPDATE exports SET cursor = @cursor, lease_expires_at = @until,
           progress_percent = MAX(progress_percent, @percent), progress_rows = MAX(progress_rows, @rows),
           progress_parts = MAX(progress_parts, @parts)`,
        id,
        lease,
        { cursor, percent: progress.percent, rows: progress.rows, parts: progress.parts },
      );
      if (check !== "ok") return check;
      this.db
        .prepare(
          "INSERT INTO export_parts (export_id, idx, object_key, rows, bytes, sha256) VALUES (?, ?, ?, ?, ?, ?)",
        )
        .run(id, part.index, part.objectKey, part.rows, part.bytes, part.sha256);
      return "ok";
    });
    return tx.immediate();
  }

  async updateProgress(
    id: string,
    lease: Lease,
    progress: ExportProgress,
    estimatedRows: number | null,
  ): Promise<LeaseCheck> {
    return this.leased(
      `UPDATE exports SET lease_expires_at = @until, estimated_rows = COALESCE(@estimated, estimated_rows),
         progress_percent = MAX(progress_percent, @percent), progress_rows = MAX(progress_rows, @rows),
         progress_parts = MAX(progress_parts, @parts)`,
      id,
      lease,
      { percent: progress.percent, rows: progress.rows, parts: progress.parts, estimated: estimatedRows },
    );
  }

  async completeExport(id: string, lease: Lease, expiresAt: number): Promise<LeaseCheck> {
    return this.leased(
      `UPDATE exports SET status = 'succeeded', finished_at = @now, expires_at = @expiresAt, progress_percent = 100,
         lease_owner = NULL, lease_expires_at = NULL, error_code = NULL, error_message = NULL, error_retryable = NULL`,
      id,
      lease,
      { expiresAt },
    );
  }

  async failExport(id: string, lease: Lease, error: ExportError): Promise<LeaseCheck> {
    return this.leased(
      `UPDATE exports SET status = 'failed', finished_at = @now, lease_owner = NULL, lease_expires_at = NULL,
         error_code = @code, error_message = @message, error_retryable = @retryable`,
      id,
      lease,
      { code: error.code, message: error.message, retryable: error.retryable ? 1 : 0 },
    );
  }

  async requeueExport(
    id: string,
    lease: Lease,
    runAfter: number,
    error: ExportError | null,
  ): Promise<LeaseCheck> {
    return this.leased(
      `UPDATE exports SET status = 'queued', run_after = @runAfter, lease_owner = NULL, lease_expires_at = NULL,
         attempts = attempts - @giveBack, error_code = @code, error_message = @message, error_retryable = @retryable`,
      id,
      lease,
      {
        runAfter,
        // A shutdown hands the attempt back: only failures count against the maximum.
        giveBack: error ? 0 : 1,
        code: error?.code ?? null,
        message: error?.message ?? null,
        retryable: error ? 1 : null,
      },
    );
  }

  async listExportsToPurge(now: number, limit: number): Promise<ExportRecord[]> {
    const rows = this.db
      .prepare(
        `SELECT * FROM exports WHERE purged_at IS NULL
           AND ((status = 'succeeded' AND expires_at <= @now) OR status IN ('failed', 'canceled'))
         ORDER BY id LIMIT @limit`,
      )
      .all({ now, limit }) as ExportRow[];
    return this.withParts(rows);
  }

  async markPurged(id: string, now: number): Promise<void> {
    const tx = this.db.transaction(() => {
      const r = this.db
        .prepare(
          `UPDATE exports SET status = 'expired', purged_at = @now WHERE id = @id AND ${from("expired")} AND expires_at <= @now`,
        )
        .run({ id, now });
      if (r.changes === 0) {
        // Failed or canceled: the files are gone, so are their parts.
        this.db.prepare("UPDATE exports SET purged_at = ? WHERE id = ? AND purged_at IS NULL").run(now, id);
        this.db
          .prepare(
            "DELETE FROM export_parts WHERE export_id = ? AND (SELECT status FROM exports WHERE id = ?) IN ('failed', 'canceled')",
          )
          .run(id, id);
      }
    });
    tx.immediate();
  }

  async forgetExports(createdBefore: number, limit: number): Promise<number> {
    const r = this.db
      .prepare(
        `DELETE FROM exports WHERE id IN (
           SELECT id FROM exports WHERE created_at < @before AND purged_at IS NOT NULL LIMIT @limit)`,
      )
      .run({ before: createdBefore, limit });
    return r.changes;
  }
}
