/**
 * PostgreSQL metadata store, for many API and worker processes. Claiming takes the oldest runnable
 * export with FOR UPDATE SKIP LOCKED, so concurrent workers never wait on, or take, the same row;
 * every worker-side write is conditional on the lease owner, so a worker that lost its lease
 * changes nothing. Creating an export sends NOTIFY so idle workers start at once.
 */
import pg from "pg";
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
import { POSTGRES_MIGRATIONS } from "./migrations.js";

export const QUEUE_CHANNEL = "exportd_export_queued";
/** Serialise migrations, and claims, across processes (arbitrary constants for pg_advisory_xact_lock). */
const MIGRATION_LOCK = 7_231_001;
const CLAIM_LOCK = 7_231_002;

/** BIGINT (oid 20) as a JS number: epoch milliseconds and row counts stay far below 2^53. */
const types = {
  getTypeParser: ((oid: number, format?: "text" | "binary") =>
    oid === 20
      ? (value: string) => Number(value)
      : pg.types.getTypeParser(oid, format)) as typeof pg.types.getTypeParser,
};

type Queryable = pg.Pool | pg.PoolClient;

const TENANT_SELECT = `SELECT t.id, t.name, t.created_at, t.plan, t.max_running, t.max_queued, t.requests_per_minute,
       p.max_running AS plan_max_running, p.max_queued AS plan_max_queued,
       p.requests_per_minute AS plan_requests_per_minute
  FROM tenants t LEFT JOIN plans p ON p.name = t.plan`;

/**
 * How long opening a connection may take: while the server is down or unreachable, a request
 * answers 503 within this instead of hanging (pg waits forever by default).
 */
const CONNECT_TIMEOUT_MS = 3000;
/** LISTEN reconnects after its connection drops: first after this, doubling up to the cap. */
const RELISTEN_FIRST_MS = 200;
const RELISTEN_MAX_MS = 2000;

/**
 * Listeners for errors a pool or client emits on its own (an idle connection terminated, the
 * server restarting): without one Node ends the process on the `error` event. The pool drops the
 * broken connection; the next query opens a new one or reports the outage to its caller.
 */
function survivePoolErrors(pool: pg.Pool): pg.Pool {
  const ignore = () => undefined;
  pool.on("error", ignore);
  // pg-pool listens on a client only while it is idle: one checked out (inside a transaction, a
  // COPY) would emit its connection error unheard.
  pool.on("connect", (client) => client.on("error", ignore));
  return pool;
}

export class PostgresStore implements MetadataStore {
  private readonly pool: pg.Pool;
  private listener: pg.Client | null = null;
  private closed = false;

  constructor(readonly url: string) {
    this.pool = survivePoolErrors(
      new pg.Pool({
        connectionString: url,
        max: 10,
        types,
        connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
        // Notice a peer that vanished without closing (a failover, a cut network) on idle sockets.
        keepAlive: true,
      }),
    );
  }

  private async rows<T>(sql: string, params: unknown[] = [], on: Queryable = this.pool): Promise<T[]> {
    return (await on.query(sql, params)).rows as T[];
  }

  private async tx<T>(work: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    const client = await this.pool.connect();
    try {
      await client.query("BEGIN");
      const result = await work(client);
      await client.query("COMMIT");
      return result;
    } catch (err) {
      await client.query("ROLLBACK").catch(() => undefined);
      throw err;
    } finally {
      client.release();
    }
  }

  /** Applies pending migrations; concurrent callers wait on an advisory lock. Returns how many ran. */
  async migrate(): Promise<number> {
    return this.tx(async (c) => {
      await c.query("SELECT pg_advisory_xact_lock($1)", [MIGRATION_LOCK]);
      await c.query(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)",
      );
      const done = new Set(
        (await this.rows<{ version: number }>("SELECT version FROM schema_migrations", [], c)).map(
          (r) => r.version,
        ),
      );
      let applied = 0;
      for (const m of POSTGRES_MIGRATIONS) {
        if (done.has(m.version)) continue;
        await c.query(m.sql);
        await c.query("INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)", [
          m.version,
          Date.now(),
        ]);
        applied++;
      }
      return applied;
    });
  }

  async ping(): Promise<void> {
    await this.pool.query("SELECT 1");
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.listener?.end().catch(() => undefined);
    this.listener = null;
    await this.pool.end();
  }

  /**
   * Calls `listener` whenever any process queues an export (LISTEN/NOTIFY on a dedicated
   * connection). When that connection drops, it is opened again with back-off (RELISTEN_FIRST_MS
   * doubling to RELISTEN_MAX_MS) until the server answers — also when the first attempt fails;
   * `listener` is then called once, since notifications sent meanwhile are lost. `onConnection`
   * hears each loss and each return.
   */
  async subscribeToQueue(
    listener: () => void,
    onConnection: (connected: boolean, err?: unknown) => void = () => undefined,
  ): Promise<void> {
    const open = async (): Promise<void> => {
      const client = new pg.Client({
        connectionString: this.url,
        connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
        keepAlive: true,
      });
      client.on("notification", () => listener());
      // Only a subscription that was up reconnects; a failed open is the caller's to retry.
      let live = false;
      const reconnect = (err?: unknown) => {
        if (!live || this.closed) return;
        live = false;
        if (this.listener === client) this.listener = null;
        client.end().catch(() => undefined);
        onConnection(false, err);
        void retry(RELISTEN_FIRST_MS);
      };
      client.on("error", reconnect);
      client.on("end", () => reconnect());
      try {
        await client.connect();
        await client.query(`LISTEN ${QUEUE_CHANNEL}`);
      } catch (err) {
        client.end().catch(() => undefined);
        throw err;
      }
      if (this.closed) {
        await client.end().catch(() => undefined);
        return;
      }
      live = true;
      this.listener = client;
    };
    const retry = async (delayMs: number): Promise<void> => {
      await new Promise((resolve) => setTimeout(resolve, delayMs).unref());
      if (this.closed) return;
      try {
        await open();
        onConnection(true);
        listener();
      } catch {
        await retry(Math.min(delayMs * 2, RELISTEN_MAX_MS));
      }
    };
    try {
      await open();
    } catch (err) {
      // The database went away between the start's migrations and here: keep trying.
      onConnection(false, err);
      void retry(RELISTEN_FIRST_MS);
    }
  }

  // Tenants, plans, settings

  async ensureTenant(name: string, now: number, plan = DEFAULT_PLAN): Promise<Tenant> {
    await this.pool.query(
      "INSERT INTO tenants (id, name, created_at, plan) VALUES ($1, $2, $3, $4) ON CONFLICT (name) DO NOTHING",
      [newId(), name, now, plan],
    );
    return (await this.findTenantByName(name)) as Tenant;
  }

  private async tenantsWhere(where: string, params: unknown[]): Promise<Tenant[]> {
    return (await this.rows<TenantRow>(`${TENANT_SELECT} WHERE ${where} ORDER BY t.name`, params)).map(
      toTenant,
    );
  }

  async findTenantByName(name: string): Promise<Tenant | null> {
    return (await this.tenantsWhere("t.name = $1", [name]))[0] ?? null;
  }

  async getTenant(id: string): Promise<Tenant | null> {
    return (await this.tenantsWhere("t.id = $1", [id]))[0] ?? null;
  }

  async listTenants(): Promise<Tenant[]> {
    return this.tenantsWhere("TRUE", []);
  }

  async updateTenant(
    name: string,
    change: { plan?: string; overrides?: { [K in keyof TenantLimits]?: number | null } },
  ): Promise<Tenant | null> {
    const sets: string[] = [];
    const params: unknown[] = [name];
    if (change.plan !== undefined) {
      params.push(change.plan);
      sets.push(`plan = $${params.length}`);
    }
    for (const [field, column] of LIMIT_COLUMNS) {
      const value = change.overrides?.[field];
      if (value !== undefined) {
        params.push(value);
        sets.push(`${column} = $${params.length}`);
      }
    }
    if (sets.length) await this.pool.query(`UPDATE tenants SET ${sets.join(", ")} WHERE name = $1`, params);
    return this.findTenantByName(name);
  }

  async listPlans(): Promise<Plan[]> {
    return (await this.rows<PlanRow>("SELECT * FROM plans ORDER BY name")).map(toPlan);
  }

  async getPlan(name: string): Promise<Plan | null> {
    const [row] = await this.rows<PlanRow>("SELECT * FROM plans WHERE name = $1", [name]);
    return row ? toPlan(row) : null;
  }

  async upsertPlan(plan: Plan, now: number): Promise<void> {
    const { maxRunning, maxQueued, requestsPerMinute } = plan.limits;
    await this.pool.query(
      `INSERT INTO plans (name, max_running, max_queued, requests_per_minute, created_at) VALUES ($1, $2, $3, $4, $5)
       ON CONFLICT (name) DO UPDATE SET max_running = excluded.max_running, max_queued = excluded.max_queued,
         requests_per_minute = excluded.requests_per_minute`,
      [plan.name, maxRunning, maxQueued, requestsPerMinute, now],
    );
  }

  async getSetting(name: string): Promise<string | null> {
    const [row] = await this.rows<{ value: string }>("SELECT value FROM settings WHERE name = $1", [name]);
    return row?.value ?? null;
  }

  async setSetting(name: string, value: string | null): Promise<void> {
    if (value === null) await this.pool.query("DELETE FROM settings WHERE name = $1", [name]);
    else
      await this.pool.query(
        "INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET value = excluded.value",
        [name, value],
      );
  }

  // API keys

  async insertApiKey(key: ApiKeyRecord): Promise<void> {
    await this.pool.query(
      `INSERT INTO api_keys (id, tenant_id, prefix, hash, last4, scopes, created_at, last_used_at, revoked_at)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
      [
        key.id,
        key.tenantId,
        key.prefix,
        key.hash,
        key.last4,
        JSON.stringify(key.scopes),
        key.createdAt,
        key.lastUsedAt,
        key.revokedAt,
      ],
    );
  }

  async findApiKeyByPrefix(prefix: string): Promise<ApiKeyRecord | null> {
    const [row] = await this.rows<KeyRow>("SELECT * FROM api_keys WHERE prefix = $1", [prefix]);
    return row ? toKey(row) : null;
  }

  async listApiKeys(tenantId: string): Promise<ApiKeyRecord[]> {
    return (
      await this.rows<KeyRow>("SELECT * FROM api_keys WHERE tenant_id = $1 ORDER BY created_at", [tenantId])
    ).map(toKey);
  }

  async revokeApiKey(prefix: string, now: number): Promise<boolean> {
    const r = await this.pool.query(
      "UPDATE api_keys SET revoked_at = $1 WHERE prefix = $2 AND revoked_at IS NULL",
      [now, prefix],
    );
    return r.rowCount === 1;
  }

  async touchApiKey(id: string, now: number): Promise<void> {
    await this.pool.query("UPDATE api_keys SET last_used_at = $1 WHERE id = $2", [now, id]);
  }

  // Exports

  private async insert(e: ExportRecord, on: Queryable): Promise<void> {
    await on.query(
      `INSERT INTO exports (id, tenant_id, dataset, status, request, created_at, estimated_rows, run_after)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
      [
        e.id,
        e.tenantId,
        e.dataset,
        e.status,
        JSON.stringify(e.request),
        e.createdAt,
        e.estimatedRows,
        e.runAfter,
      ],
    );
    await on.query(`NOTIFY ${QUEUE_CHANNEL}`);
  }

  async insertExport(record: ExportRecord): Promise<void> {
    await this.insert(record, this.pool);
  }

  private async withParts(rows: ExportRow[], on: Queryable = this.pool): Promise<ExportRecord[]> {
    const withAny = idsWithParts(rows);
    const parts =
      withAny.length === 0
        ? []
        : await this.rows<PartRow>(
            "SELECT * FROM export_parts WHERE export_id = ANY($1) ORDER BY export_id, idx",
            [withAny],
            on,
          );
    const byExport = new Map<string, ExportPart[]>(rows.map((r) => [r.id, []]));
    for (const p of parts) byExport.get(p.export_id)?.push(toPart(p));
    return rows.map((r) => toExport(r, byExport.get(r.id) ?? []));
  }

  async createExport(record: ExportRecord, options: CreateExportOptions): Promise<CreateOutcome> {
    return this.tx(async (c) => {
      // One transaction per tenant at a time: the queue count and the idempotency check cannot
      // interleave with another create of the same tenant, in any process.
      await c.query("SELECT pg_advisory_xact_lock(hashtext($1))", [`exportd:create:${record.tenantId}`]);
      const idem = options.idempotency;
      if (idem) {
        await c.query("DELETE FROM idempotency_keys WHERE tenant_id = $1 AND key = $2 AND created_at < $3", [
          record.tenantId,
          idem.key,
          record.createdAt - IDEMPOTENCY_KEY_TTL_MS,
        ]);
        const [seen] = await this.rows<{ request_hash: string; export_id: string }>(
          "SELECT request_hash, export_id FROM idempotency_keys WHERE tenant_id = $1 AND key = $2",
          [record.tenantId, idem.key],
          c,
        );
        if (seen) {
          if (seen.request_hash !== idem.requestHash) return { kind: "idempotency_conflict" };
          const rows = await this.rows<ExportRow>("SELECT * FROM exports WHERE id = $1", [seen.export_id], c);
          return { kind: "replayed", record: (await this.withParts(rows, c))[0] as ExportRecord };
        }
      }
      const [{ queued } = { queued: 0 }] = await this.rows<{ queued: number }>(
        "SELECT count(*)::int AS queued FROM exports WHERE tenant_id = $1 AND status = 'queued'",
        [record.tenantId],
        c,
      );
      if (queued >= options.maxQueued) return { kind: "queue_full", queued };
      await this.insert(record, c);
      if (idem) {
        await c.query(
          "INSERT INTO idempotency_keys (tenant_id, key, request_hash, export_id, created_at) VALUES ($1, $2, $3, $4, $5)",
          [record.tenantId, idem.key, idem.requestHash, record.id, record.createdAt],
        );
      }
      return { kind: "created", record };
    });
  }

  async getExport(tenantId: string, id: string): Promise<ExportRecord | null> {
    const rows = await this.rows<ExportRow>("SELECT * FROM exports WHERE id = $1 AND tenant_id = $2", [
      id,
      tenantId,
    ]);
    return (await this.withParts(rows))[0] ?? null;
  }

  async listExports(tenantId: string, q: ListExportsQuery): Promise<ExportRecord[]> {
    const where = ["tenant_id = $1"];
    const params: unknown[] = [tenantId];
    const add = (clause: string, value: unknown) => {
      params.push(value);
      where.push(clause.replace("?", `$${params.length}`));
    };
    if (q.status) add("status = ?", q.status);
    if (q.dataset) add("dataset = ?", q.dataset);
    if (q.before) add("id < ?", q.before);
    params.push(q.limit);
    const rows = await this.rows<ExportRow>(
      `SELECT * FROM exports WHERE ${where.join(" AND ")} ORDER BY id DESC LIMIT $${params.length}`,
      params,
    );
    return this.withParts(rows);
  }

  async countExportsByStatus(): Promise<Partial<Record<ExportStatus, number>>> {
    const rows = await this.rows<{ status: ExportStatus; n: number }>(
      "SELECT status, count(*)::int AS n FROM exports GROUP BY status",
    );
    return Object.fromEntries(rows.map((r) => [r.status, r.n]));
  }

  async queuePosition(tenantId: string, id: string): Promise<number | null> {
    const [row] = await this.rows<{ position: number }>(
      `SELECT (SELECT count(*)::int FROM exports q
               WHERE q.tenant_id = e.tenant_id AND q.status = 'queued'
                 AND (q.run_after, q.id) < (e.run_after, e.id)) + 1 AS position
       FROM exports e WHERE e.id = $1 AND e.tenant_id = $2 AND e.status = 'queued'`,
      [id, tenantId],
    );
    return row?.position ?? null;
  }

  async forgetIdempotencyKeys(createdBefore: number): Promise<number> {
    return (
      (await this.pool.query("DELETE FROM idempotency_keys WHERE created_at < $1", [createdBefore]))
        .rowCount ?? 0
    );
  }

  async cancelExport(tenantId: string, id: string, now: number) {
    const r = await this.pool.query(
      `UPDATE exports SET status = 'canceled', finished_at = $3, lease_owner = NULL, lease_expires_at = NULL
       WHERE id = $1 AND tenant_id = $2 AND ${statusFrom("canceled")}`,
      [id, tenantId, now],
    );
    const record = await this.getExport(tenantId, id);
    return record ? { record, canceled: r.rowCount === 1 } : null;
  }

  // Jobs: claiming, leases, results

  async claimExport(lease: Lease): Promise<ClaimedExport | null> {
    return this.tx(async (c) => {
      // Claims take turns (a claim is a few milliseconds): the per-tenant running count below is
      // then exact, where concurrent claims could each see one slot free. SKIP LOCKED still passes
      // over rows that other transactions hold (a cancel, a lease write) instead of waiting on them.
      await c.query("SELECT pg_advisory_xact_lock($1)", [CLAIM_LOCK]);
      // A queued export waits while its tenant already runs max_running exports under live leases.
      const [next] = await this.rows<{ id: string; status: ExportStatus }>(
        `SELECT e.id, e.status FROM exports e
         WHERE (e.status = 'running' AND e.lease_expires_at < $1)
            OR (e.status = 'queued' AND e.run_after <= $1
                AND (SELECT count(*) FROM exports r
                     WHERE r.tenant_id = e.tenant_id AND r.status = 'running' AND r.lease_expires_at >= $1)
                    < (SELECT COALESCE(t.max_running, p.max_running, 1)
                       FROM tenants t LEFT JOIN plans p ON p.name = t.plan WHERE t.id = e.tenant_id))
         ORDER BY e.run_after, e.id LIMIT 1
         FOR UPDATE OF e SKIP LOCKED`,
        [lease.now],
        c,
      );
      if (!next) return null;
      const rows = await this.rows<ExportRow>(
        `UPDATE exports SET status = 'running', lease_owner = $2, lease_expires_at = $3, ${CLAIM_COUNTS},
           started_at = COALESCE(started_at, $4)
         WHERE id = $1 RETURNING *`,
        [next.id, lease.owner, lease.now + lease.leaseMs, lease.now],
        c,
      );
      const [record] = await this.withParts(rows, c);
      return { ...(record as ExportRecord), takenOver: next.status === "running" };
    });
  }

  async leaseOwners(): Promise<string[]> {
    const rows = await this.rows<{ owner: string }>(
      "SELECT DISTINCT lease_owner AS owner FROM exports WHERE status = 'running' AND lease_owner IS NOT NULL",
    );
    return rows.map((r) => r.owner);
  }

  async expireLeases(owners: string[], now: number): Promise<number> {
    if (owners.length === 0) return 0;
    const r = await this.pool.query(
      "UPDATE exports SET lease_expires_at = $1 WHERE status = 'running' AND lease_owner = ANY($2)",
      [now - 1, owners],
    );
    return r.rowCount ?? 0;
  }

  /**
   * A worker-side update that only happens while the worker still holds the running export's lease.
   * `set` names its values `@now`, `@until` (the renewed lease end) or a key of `values`.
   */
  private async leased(
    set: string,
    id: string,
    lease: Lease,
    values: Record<string, unknown> = {},
    on: Queryable = this.pool,
  ): Promise<LeaseCheck> {
    const named: Record<string, unknown> = {
      ...values,
      id,
      owner: lease.owner,
      now: lease.now,
      until: lease.now + lease.leaseMs,
    };
    const params: unknown[] = [];
    const positions = new Map<string, number>();
    const sql =
      `UPDATE exports SET ${set} WHERE id = @id AND status = 'running' AND lease_owner = @owner`.replace(
        /@(\w+)/g,
        (_, name: string) => {
          if (!(name in named)) throw new Error(`no value for @${name}`);
          if (!positions.has(name)) positions.set(name, params.push(named[name]));
          return `$${positions.get(name)}`;
        },
      );
    const r = await on.query(sql, params);
    return r.rowCount === 1 ? "ok" : "lost";
  }

  async heartbeat(id: string, lease: Lease): Promise<LeaseCheck> {
    return this.leased("lease_expires_at = @until", id, lease);
  }

  async recordPart(
    id: string,
    lease: Lease,
    part: ExportPart,
    cursor: string | null,
    progress: ExportProgress,
  ): Promise<LeaseCheck> {
    return this.tx(async (c) => {
      const check = await this.leased(
        `cursor = @cursor, lease_expires_at = @until, takeovers = 0, progress_percent = GREATEST(progress_percent, @percent),
         progress_rows = GREATEST(progress_rows, @rows), progress_parts = GREATEST(progress_parts, @parts)`,
        id,
        lease,
        { cursor, ...progress },
        c,
      );
      if (check !== "ok") return check;
      await c.query(
        "INSERT INTO export_parts (export_id, idx, object_key, rows, bytes, sha256) VALUES ($1, $2, $3, $4, $5, $6)",
        [id, part.index, part.objectKey, part.rows, part.bytes, part.sha256],
      );
      return "ok";
    });
  }

  async updateProgress(
    id: string,
    lease: Lease,
    progress: ExportProgress,
    estimatedRows: number | null,
  ): Promise<LeaseCheck> {
    return this.leased(
      `lease_expires_at = @until, estimated_rows = COALESCE(@estimated::bigint, estimated_rows),
       progress_percent = GREATEST(progress_percent, @percent), progress_rows = GREATEST(progress_rows, @rows),
       progress_parts = GREATEST(progress_parts, @parts)`,
      id,
      lease,
      { estimated: estimatedRows, ...progress },
    );
  }

  async completeExport(id: string, lease: Lease, expiresAt: number): Promise<LeaseCheck> {
    return this.leased(
      `status = 'succeeded', finished_at = @now, expires_at = @expiresAt, progress_percent = 100, lease_owner = NULL,
       lease_expires_at = NULL, error_code = NULL, error_message = NULL, error_retryable = NULL`,
      id,
      lease,
      { expiresAt },
    );
  }

  async failExport(id: string, lease: Lease, error: ExportError): Promise<LeaseCheck> {
    return this.leased(
      `status = 'failed', finished_at = @now, lease_owner = NULL, lease_expires_at = NULL,
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
    const check = await this.leased(
      `status = 'queued', run_after = @runAfter, lease_owner = NULL, lease_expires_at = NULL,
       attempts = attempts - @giveBack, error_code = @code::text, error_message = @message::text,
       error_retryable = @retryable::integer`,
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
    if (check === "ok") await this.pool.query(`NOTIFY ${QUEUE_CHANNEL}`);
    return check;
  }

  // Retention

  async listExportsToPurge(now: number, limit: number): Promise<ExportRecord[]> {
    const rows = await this.rows<ExportRow>(
      `SELECT * FROM exports WHERE purged_at IS NULL
         AND ((status = 'succeeded' AND expires_at <= $1) OR status IN ('failed', 'canceled'))
       ORDER BY id LIMIT $2`,
      [now, limit],
    );
    return this.withParts(rows);
  }

  async markPurged(id: string, now: number): Promise<void> {
    await this.tx(async (c) => {
      const r = await c.query(
        `UPDATE exports SET status = 'expired', purged_at = $2 WHERE id = $1 AND ${statusFrom("expired")} AND expires_at <= $2`,
        [id, now],
      );
      if (r.rowCount === 0) {
        // Failed or canceled: the files are gone, so are their parts.
        await c.query("UPDATE exports SET purged_at = $2 WHERE id = $1 AND purged_at IS NULL", [id, now]);
        await c.query(
          `DELETE FROM export_parts WHERE export_id = $1
             AND (SELECT status FROM exports WHERE id = $1) IN ('failed', 'canceled')`,
          [id],
        );
      }
    });
  }

  async forgetExports(createdBefore: number, limit: number): Promise<number> {
    const r = await this.pool.query(
      `DELETE FROM exports WHERE id IN (
         SELECT id FROM exports WHERE created_at < $1 AND purged_at IS NOT NULL LIMIT $2)`,
      [createdBefore, limit],
    );
    return r.rowCount ?? 0;
  }
}
