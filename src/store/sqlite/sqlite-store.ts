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
  type ExportStatus,
  IDEMPOTENCY_KEY_TTL_MS,
} from "../../domain/export.js";
import { newId } from "../../domain/ids.js";
import { DEFAULT_PLAN, type Plan, type Tenant, type TenantLimits } from "../../domain/tenant.js";
import {
  CLAIM_COUNTS,
  type ExportRow,
  idsWithParts,
  type KeyRow,
  LIMIT_COLUMNS,
  type PartRow,
  type PlanRow,
  statusFrom,
  type TenantRow,
  toExport,
  toKey,
  toPart,
  toPlan,
  toTenant,
} from "../rows.js";
import type {
  ApiKeyRecord,
  ClaimedExport,
  CreateExportOptions,
  CreateOutcome,
  Lease,
  LeaseCheck,
  ListExportsQuery,
  MetadataStore,
} from "../types.js";
import { SQLITE_MIGRATIONS } from "./migrations.js";

export class SqliteStore implements MetadataStore {
  private readonly db: Database.Database;
  /** Prepared statements by SQL text: preparing costs more than running a small query. */
  private readonly statements = new Map<string, Database.Statement>();

  constructor(file: string) {
    if (file !== ":memory:") fs.mkdirSync(path.dirname(file), { recursive: true });
    this.db = new Database(file);
    this.db.pragma("journal_mode = WAL");
    this.db.pragma("synchronous = NORMAL");
    this.db.pragma("busy_timeout = 5000");
    this.db.pragma("foreign_keys = ON");
  }

  private stmt(sql: string): Database.Statement {
    let statement = this.statements.get(sql);
    if (!statement) {
      statement = this.db.prepare(sql);
      this.statements.set(sql, statement);
    }
    return statement;
  }

  /** Applies pending migrations. Safe to run from several processes: each runs in an immediate transaction. */
  migrate(): number {
    this.db.exec(
      "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)",
    );
    let applied = 0;
    const run = this.db.transaction((version: number, sql: string) => {
      const done = this.stmt("SELECT 1 FROM schema_migrations WHERE version = ?").get(version);
      if (done) return;
      this.db.exec(sql);
      this.stmt("INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)").run(version, Date.now());
      applied++;
    });
    for (const m of SQLITE_MIGRATIONS) run.immediate(m.version, m.sql);
    return applied;
  }

  async ping(): Promise<void> {
    this.stmt("SELECT 1").get();
  }

  async close(): Promise<void> {
    if (this.db.open) this.db.close();
  }

  async ensureTenant(name: string, now: number, plan = DEFAULT_PLAN): Promise<Tenant> {
    this.stmt(
      "INSERT INTO tenants (id, name, created_at, plan) VALUES (?, ?, ?, ?) ON CONFLICT (name) DO NOTHING",
    ).run(newId(), name, now, plan);
    return (await this.findTenantByName(name)) as Tenant;
  }

  private tenantWhere(where: string, ...params: unknown[]): Tenant[] {
    const rows = this.stmt(
      `SELECT t.id, t.name, t.created_at, t.plan, t.max_running, t.max_queued, t.requests_per_minute,
                p.max_running AS plan_max_running, p.max_queued AS plan_max_queued,
                p.requests_per_minute AS plan_requests_per_minute
         FROM tenants t LEFT JOIN plans p ON p.name = t.plan WHERE ${where} ORDER BY t.name`,
    ).all(...params) as TenantRow[];
    return rows.map(toTenant);
  }

  async findTenantByName(name: string): Promise<Tenant | null> {
    return this.tenantWhere("t.name = ?", name)[0] ?? null;
  }

  async getTenant(id: string): Promise<Tenant | null> {
    return this.tenantWhere("t.id = ?", id)[0] ?? null;
  }

  async listTenants(): Promise<Tenant[]> {
    return this.tenantWhere("1 = 1");
  }

  async updateTenant(
    name: string,
    change: { plan?: string; overrides?: { [K in keyof TenantLimits]?: number | null } },
  ): Promise<Tenant | null> {
    const sets: string[] = [];
    const params: Record<string, unknown> = { name };
    if (change.plan !== undefined) {
      sets.push("plan = @plan");
      params.plan = change.plan;
    }
    for (const [field, column] of LIMIT_COLUMNS) {
      const value = change.overrides?.[field];
      if (value !== undefined) {
        sets.push(`${column} = @${column}`);
        params[column] = value;
      }
    }
    if (sets.length) this.stmt(`UPDATE tenants SET ${sets.join(", ")} WHERE name = @name`).run(params);
    return this.findTenantByName(name);
  }

  async listPlans(): Promise<Plan[]> {
    return (this.stmt("SELECT * FROM plans ORDER BY name").all() as PlanRow[]).map(toPlan);
  }

  async getPlan(name: string): Promise<Plan | null> {
    const row = this.stmt("SELECT * FROM plans WHERE name = ?").get(name) as PlanRow | undefined;
    return row ? toPlan(row) : null;
  }

  async upsertPlan(plan: Plan, now: number): Promise<void> {
    this.stmt(
      `INSERT INTO plans (name, max_running, max_queued, requests_per_minute, created_at)
         VALUES (@name, @maxRunning, @maxQueued, @requestsPerMinute, @now)
         ON CONFLICT (name) DO UPDATE SET max_running = excluded.max_running, max_queued = excluded.max_queued,
           requests_per_minute = excluded.requests_per_minute`,
    ).run({ name: plan.name, ...plan.limits, now });
  }

  async getSetting(name: string): Promise<string | null> {
    const row = this.stmt("SELECT value FROM settings WHERE name = ?").get(name) as
      | { value: string }
      | undefined;
    return row?.value ?? null;
  }

  async setSetting(name: string, value: string | null): Promise<void> {
    if (value === null) this.stmt("DELETE FROM settings WHERE name = ?").run(name);
    else
      this.stmt(
        "INSERT INTO settings (name, value) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET value = excluded.value",
      ).run(name, value);
  }

  async insertApiKey(key: ApiKeyRecord): Promise<void> {
    this.stmt(
      `INSERT INTO api_keys (id, tenant_id, prefix, hash, last4, scopes, created_at, last_used_at, revoked_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    ).run(
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
    const row = this.stmt("SELECT * FROM api_keys WHERE prefix = ?").get(prefix) as KeyRow | undefined;
    return row ? toKey(row) : null;
  }

  async listApiKeys(tenantId: string): Promise<ApiKeyRecord[]> {
    const rows = this.stmt("SELECT * FROM api_keys WHERE tenant_id = ? ORDER BY created_at").all(
      tenantId,
    ) as KeyRow[];
    return rows.map(toKey);
  }

  async revokeApiKey(prefix: string, now: number): Promise<boolean> {
    const r = this.stmt("UPDATE api_keys SET revoked_at = ? WHERE prefix = ? AND revoked_at IS NULL").run(
      now,
      prefix,
    );
    return r.changes === 1;
  }

  async touchApiKey(id: string, now: number): Promise<void> {
    this.stmt("UPDATE api_keys SET last_used_at = ? WHERE id = ?").run(now, id);
  }

  async insertExport(e: ExportRecord): Promise<void> {
    this.insertExportSync(e);
  }

  private insertExportSync(e: ExportRecord): void {
    this.stmt(
      `INSERT INTO exports (id, tenant_id, dataset, status, request, created_at, estimated_rows, run_after)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
    ).run(
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

  async createExport(record: ExportRecord, options: CreateExportOptions): Promise<CreateOutcome> {
    // One immediate transaction: the queue count, the idempotency check and the insert cannot
    // interleave with another create, in this process or another.
    const tx = this.db.transaction((): CreateOutcome => {
      const idem = options.idempotency;
      if (idem) {
        // A key older than its TTL is free again, even before the sweeper removes it.
        this.stmt("DELETE FROM idempotency_keys WHERE tenant_id = ? AND key = ? AND created_at < ?").run(
          record.tenantId,
          idem.key,
          record.createdAt - IDEMPOTENCY_KEY_TTL_MS,
        );
        const seen = this.stmt(
          "SELECT request_hash, export_id FROM idempotency_keys WHERE tenant_id = ? AND key = ?",
        ).get(record.tenantId, idem.key) as { request_hash: string; export_id: string } | undefined;
        if (seen) {
          if (seen.request_hash !== idem.requestHash) return { kind: "idempotency_conflict" };
          // The export outlives its key (kept for months, the key for a day), so the row is there.
          const row = this.stmt("SELECT * FROM exports WHERE id = ?").get(seen.export_id) as ExportRow;
          return { kind: "replayed", record: this.withParts([row])[0] as ExportRecord };
        }
      }
      const { queued } = this.stmt(
        "SELECT count(*) AS queued FROM exports WHERE tenant_id = ? AND status = 'queued'",
      ).get(record.tenantId) as { queued: number };
      if (queued >= options.maxQueued) return { kind: "queue_full", queued };
      this.insertExportSync(record);
      if (idem) {
        this.stmt(
          "INSERT INTO idempotency_keys (tenant_id, key, request_hash, export_id, created_at) VALUES (?, ?, ?, ?, ?)",
        ).run(record.tenantId, idem.key, idem.requestHash, record.id, record.createdAt);
      }
      return { kind: "created", record };
    });
    return tx.immediate();
  }

  async countExportsByStatus(): Promise<Partial<Record<ExportStatus, number>>> {
    const rows = this.stmt("SELECT status, count(*) AS n FROM exports GROUP BY status").all() as {
      status: ExportStatus;
      n: number;
    }[];
    return Object.fromEntries(rows.map((r) => [r.status, r.n]));
  }

  async queuePosition(tenantId: string, id: string): Promise<number | null> {
    const row = this.stmt(
      `SELECT (SELECT count(*) FROM exports q
                 WHERE q.tenant_id = e.tenant_id AND q.status = 'queued'
                   AND (q.run_after < e.run_after OR (q.run_after = e.run_after AND q.id < e.id))) + 1 AS position
         FROM exports e WHERE e.id = ? AND e.tenant_id = ? AND e.status = 'queued'`,
    ).get(id, tenantId) as { position: number } | undefined;
    return row?.position ?? null;
  }

  async forgetIdempotencyKeys(createdBefore: number): Promise<number> {
    return this.stmt("DELETE FROM idempotency_keys WHERE created_at < ?").run(createdBefore).changes;
  }

  private partsOf(ids: string[]): Map<string, ExportPart[]> {
    const byExport = new Map<string, ExportPart[]>(ids.map((id) => [id, []]));
    if (ids.length === 0) return byExport;
    const rows = this.stmt(
      `SELECT * FROM export_parts WHERE export_id IN (${ids.map(() => "?").join(", ")}) ORDER BY export_id, idx`,
    ).all(...ids) as PartRow[];
    for (const row of rows) byExport.get(row.export_id)?.push(toPart(row));
    return byExport;
  }

  private withParts(rows: ExportRow[]): ExportRecord[] {
    const parts = this.partsOf(idsWithParts(rows));
    return rows.map((r) => toExport(r, parts.get(r.id) ?? []));
  }

  async getExport(tenantId: string, id: string): Promise<ExportRecord | null> {
    const row = this.stmt("SELECT * FROM exports WHERE id = ? AND tenant_id = ?").get(id, tenantId) as
      | ExportRow
      | undefined;
    return row ? (this.withParts([row])[0] ?? null) : null;
  }

  async listExports(tenantId: string, q: ListExportsQuery): Promise<ExportRecord[]> {
    const where = ["tenant_id = @tenantId"];
    if (q.status) where.push("status = @status");
    if (q.dataset) where.push("dataset = @dataset");
    if (q.before) where.push("id < @before");
    const rows = this.stmt(
      `SELECT * FROM exports WHERE ${where.join(" AND ")} ORDER BY id DESC LIMIT @limit`,
    ).all({
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
    const r = this.stmt(
      `UPDATE exports SET status = 'canceled', finished_at = @now, lease_owner = NULL, lease_expires_at = NULL
         WHERE id = @id AND tenant_id = @tenantId AND ${statusFrom("canceled")}`,
    ).run({ id, tenantId, now });
    const record = await this.getExport(tenantId, id);
    return record ? { record, canceled: r.changes === 1 } : null;
  }

  async claimExport(lease: Lease): Promise<ClaimedExport | null> {
    const params = { owner: lease.owner, now: lease.now, until: lease.now + lease.leaseMs };
    const claim = this.db.transaction((): ClaimedExport | null => {
      // Queued and due, or running under a lease nobody renewed (its worker died): the oldest first.
      // A queued export waits while its tenant already runs max_running exports under live leases.
      const next = this.stmt(
        `SELECT e.id, e.status FROM exports e
           WHERE (e.status = 'running' AND e.lease_expires_at < @now)
              OR (e.status = 'queued' AND e.run_after <= @now
                  AND (SELECT count(*) FROM exports r
                       WHERE r.tenant_id = e.tenant_id AND r.status = 'running' AND r.lease_expires_at >= @now)
                      < (SELECT COALESCE(t.max_running, p.max_running, 1)
                         FROM tenants t LEFT JOIN plans p ON p.name = t.plan WHERE t.id = e.tenant_id))
           ORDER BY e.run_after, e.id LIMIT 1`,
      ).get(params) as { id: string; status: ExportStatus } | undefined;
      if (!next) return null;
      const row = this.stmt(
        `UPDATE exports
           SET status = 'running', lease_owner = @owner, lease_expires_at = @until, ${CLAIM_COUNTS},
               started_at = COALESCE(started_at, @now)
           WHERE id = @id RETURNING *`,
      ).get({ ...params, id: next.id }) as ExportRow;
      return { ...(this.withParts([row])[0] as ExportRecord), takenOver: next.status === "running" };
    });
    return claim.immediate();
  }

  async leaseOwners(): Promise<string[]> {
    const rows = this.stmt(
      "SELECT DISTINCT lease_owner AS owner FROM exports WHERE status = 'running' AND lease_owner IS NOT NULL",
    ).all() as { owner: string }[];
    return rows.map((r) => r.owner);
  }

  async expireLeases(owners: string[], now: number): Promise<number> {
    if (owners.length === 0) return 0;
    const r = this.stmt(
      `UPDATE exports SET lease_expires_at = ? WHERE status = 'running' AND lease_owner IN (${owners.map(() => "?").join(", ")})`,
    ).run(now - 1, ...owners);
    return r.changes;
  }

  /** Runs a worker-side update only while the worker still holds the running export's lease. */
  private leased(sql: string, id: string, lease: Lease, params: Record<string, unknown> = {}): LeaseCheck {
    const r = this.stmt(`${sql} WHERE id = @id AND status = 'running' AND lease_owner = @owner`).run({
      id,
      owner: lease.owner,
      now: lease.now,
      until: lease.now + lease.leaseMs,
      ...params,
    });
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
        `UPDATE exports SET cursor = @cursor, lease_expires_at = @until, takeovers = 0,
           progress_percent = MAX(progress_percent, @percent), progress_rows = MAX(progress_rows, @rows),
           progress_parts = MAX(progress_parts, @parts)`,
        id,
        lease,
        { cursor, percent: progress.percent, rows: progress.rows, parts: progress.parts },
      );
      if (check !== "ok") return check;
      this.stmt(
        "INSERT INTO export_parts (export_id, idx, object_key, rows, bytes, sha256) VALUES (?, ?, ?, ?, ?, ?)",
      ).run(id, part.index, part.objectKey, part.rows, part.bytes, part.sha256);
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
    const rows = this.stmt(
      `SELECT * FROM exports WHERE purged_at IS NULL
           AND ((status = 'succeeded' AND expires_at <= @now) OR status IN ('failed', 'canceled'))
         ORDER BY id LIMIT @limit`,
    ).all({ now, limit }) as ExportRow[];
    return this.withParts(rows);
  }

  async markPurged(id: string, now: number): Promise<void> {
    const tx = this.db.transaction(() => {
      const r = this.stmt(
        `UPDATE exports SET status = 'expired', purged_at = @now WHERE id = @id AND ${statusFrom("expired")} AND expires_at <= @now`,
      ).run({ id, now });
      if (r.changes === 0) {
        // Failed or canceled: the files are gone, so are their parts.
        this.stmt("UPDATE exports SET purged_at = ? WHERE id = ? AND purged_at IS NULL").run(now, id);
        this.stmt(
          "DELETE FROM export_parts WHERE export_id = ? AND (SELECT status FROM exports WHERE id = ?) IN ('failed', 'canceled')",
        ).run(id, id);
      }
    });
    tx.immediate();
  }

  async forgetExports(createdBefore: number, limit: number): Promise<number> {
    const r = this.stmt(
      `DELETE FROM exports WHERE id IN (
           SELECT id FROM exports WHERE created_at < @before AND purged_at IS NOT NULL LIMIT @limit)`,
    ).run({ before: createdBefore, limit });
    return r.changes;
  }
}
