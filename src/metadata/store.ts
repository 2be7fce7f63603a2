/**
 * The metadata store, once for both engines: each method runs the statements of queries.ts through
 * a Driver (dialect/sqlite.ts, dialect/postgres.ts). Every worker-side write is conditional on the
 * lease owner, so a worker that lost its lease changes nothing.
 */
import {
  type ExportError,
  type ExportPart,
  type ExportProgress,
  type ExportRecord,
  type ExportStatus,
  IDEMPOTENCY_KEY_TTL_MS,
} from "../domain/export.js";
import { newId } from "../domain/ids.js";
import { DEFAULT_PLAN, type Plan, type Tenant, type TenantLimits } from "../domain/tenant.js";
import { migrate } from "./migrations.js";
import { type Queries, queries } from "./queries.js";
import {
  EXPORT_COLUMNS,
  idsWithParts,
  LIMIT_COLUMNS,
  toExport,
  toKey,
  toPart,
  toPlan,
  toTenant,
} from "./rows.js";
import { changes, type Driver, type Params, type Row, rows, type Plan as SqlPlan } from "./sql.js";
import type {
  ApiKeyRecord,
  ClaimedExport,
  CreateExportOptions,
  CreateOutcome,
  ExportState,
  ExportWithPosition,
  Lease,
  LeaseCheck,
  ListExportsQuery,
  MetadataStore,
} from "./types.js";

/** The parameters every leased write names: the export, its owner, now and the renewed lease end. */
function leaseParams(id: string, lease: Lease, values: Params = {}): Params {
  return { ...values, id, owner: lease.owner, now: lease.now, until: lease.now + lease.leaseMs };
}

const check = (changed: number): LeaseCheck => (changed === 1 ? "ok" : "lost");

export class SqlMetadataStore implements MetadataStore {
  private readonly q: Queries;

  constructor(protected readonly driver: Driver) {
    this.q = queries(driver.dialect);
  }

  /** Applies pending migrations (migrations.ts). Returns how many ran. */
  migrate(): Promise<number> {
    return this.driver.run(migrate(this.driver.dialect, Date.now()), true, true);
  }

  /** Reads the exports table, not just the connection: a table locked by someone else fails it (/readyz). */
  async ping(): Promise<void> {
    await this.driver.rows("SELECT 1 FROM exports LIMIT 1", {});
  }

  close(): Promise<void> {
    return this.driver.close();
  }

  // Tenants, plans, settings, API keys

  async ensureTenant(name: string, now: number, plan = DEFAULT_PLAN): Promise<Tenant> {
    await this.driver.changes(this.q.ensureTenant, { id: newId(), name, now, plan });
    return (await this.findTenantByName(name)) as Tenant;
  }

  async findTenantByName(name: string): Promise<Tenant | null> {
    const [row] = await this.driver.rows(this.q.tenantByName, { name });
    return row ? toTenant(row) : null;
  }

  async getTenant(id: string): Promise<Tenant | null> {
    const [row] = await this.driver.rows(this.q.tenantById, { id });
    return row ? toTenant(row) : null;
  }

  async listTenants(): Promise<Tenant[]> {
    return (await this.driver.rows(this.q.tenants, {})).map(toTenant);
  }

  async updateTenant(
    name: string,
    change: { plan?: string; overrides?: { [K in keyof TenantLimits]?: number | null } },
  ): Promise<Tenant | null> {
    const sets: string[] = [];
    const params: Params = { name };
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
    if (sets.length)
      await this.driver.changes(`UPDATE tenants SET ${sets.join(", ")} WHERE name = @name`, params);
    return this.findTenantByName(name);
  }

  async listPlans(): Promise<Plan[]> {
    return (await this.driver.rows(this.q.plans, {})).map(toPlan);
  }

  async getPlan(name: string): Promise<Plan | null> {
    const [row] = await this.driver.rows(this.q.plan, { name });
    return row ? toPlan(row) : null;
  }

  async upsertPlan(plan: Plan, now: number): Promise<void> {
    await this.driver.changes(this.q.upsertPlan, { name: plan.name, ...plan.limits, now });
  }

  async getSetting(name: string): Promise<string | null> {
    const [row] = await this.driver.rows(this.q.setting, { name });
    return row ? (row[0] as string) : null;
  }

  async setSetting(name: string, value: string | null): Promise<void> {
    if (value === null) await this.driver.changes(this.q.deleteSetting, { name });
    else await this.driver.changes(this.q.putSetting, { name, value });
  }

  async insertApiKey(key: ApiKeyRecord): Promise<void> {
    await this.driver.changes(this.q.insertKey, { ...key, scopes: JSON.stringify(key.scopes) });
  }

  async findApiKeyByPrefix(prefix: string): Promise<ApiKeyRecord | null> {
    const [row] = await this.driver.rows(this.q.keyByPrefix, { prefix });
    return row ? toKey(row) : null;
  }

  async listApiKeys(tenantId: string): Promise<ApiKeyRecord[]> {
    return (await this.driver.rows(this.q.keysOf, { tenantId })).map(toKey);
  }

  async revokeApiKey(prefix: string, now: number): Promise<boolean> {
    return (await this.driver.changes(this.q.revokeKey, { prefix, now })) === 1;
  }

  async touchApiKey(id: string, now: number): Promise<void> {
    await this.driver.changes(this.q.touchKey, { id, now });
  }

  // Exports

  /** Export rows with their parts (only those with any have a part query). */
  private *withParts(exportRows: Row[]): SqlPlan<ExportRecord[]> {
    const ids = idsWithParts(exportRows);
    const byExport = new Map<string, ExportPart[]>();
    if (ids.length > 0) {
      for (const p of yield* rows(this.q.partsOf, { ids: this.driver.dialect.list(ids) })) {
        const id = p[0] as string;
        const list = byExport.get(id) ?? [];
        list.push(toPart(p));
        byExport.set(id, list);
      }
    }
    return exportRows.map((r) => toExport(r, byExport.get(r[0] as string) ?? []));
  }

  private exportParams(e: ExportRecord): Params {
    return {
      id: e.id,
      tenantId: e.tenantId,
      dataset: e.dataset,
      status: e.status,
      request: JSON.stringify(e.request),
      createdAt: e.createdAt,
      estimatedRows: e.estimatedRows,
      runAfter: e.runAfter,
    };
  }

  async insertExport(record: ExportRecord): Promise<void> {
    await this.driver.changes(this.q.insertExport, this.exportParams(record));
  }

  createExport(record: ExportRecord, options: CreateExportOptions): Promise<CreateOutcome> {
    // Without a key, the create is the one statement that checks the cap and inserts.
    return this.driver.run(this.create(record, options), options.idempotency !== null);
  }

  private *create(record: ExportRecord, options: CreateExportOptions): SqlPlan<CreateOutcome> {
    const q = this.q;
    const params = { ...this.exportParams(record), maxQueued: options.maxQueued };
    const idem = options.idempotency;
    const keyParams = idem && { ...params, key: idem.key, requestHash: idem.requestHash };
    if (idem && keyParams) {
      // Creates of one tenant with a key take turns, so one key makes one export.
      yield* rows(q.lockTenant, params);
      yield* changes(q.dropStaleKey, {
        ...keyParams,
        staleBefore: record.createdAt - IDEMPOTENCY_KEY_TTL_MS,
      });
      const [seen] = yield* rows(q.idempotencyKey, keyParams);
      if (seen) {
        if (seen[0] !== idem.requestHash) return { kind: "idempotency_conflict" };
        // The export outlives its key (kept for months, the key for a day), so the row is there.
        const [found] = yield* this.withParts(yield* rows(q.exportById, { id: seen[1] }));
        return { kind: "replayed", record: found as ExportRecord };
      }
    }
    if ((yield* changes(q.createUnderCap, params)) === 0) {
      const [tenant] = yield* rows(q.queuedCount, params);
      if (!tenant) throw new Error(`no tenant ${record.tenantId}`);
      return { kind: "queue_full", queued: Number(tenant[0]) };
    }
    if (keyParams) yield* changes(q.insertIdempotencyKey, keyParams);
    return { kind: "created", record };
  }

  async countExportsByStatus(): Promise<Partial<Record<ExportStatus, number>>> {
    const counts = await this.driver.rows(this.q.countByStatus, {});
    return Object.fromEntries(counts.map((r) => [r[0], Number(r[1])]));
  }

  async queuePosition(tenantId: string, id: string): Promise<number | null> {
    const [row] = await this.driver.rows(this.q.queuePosition, { id, tenantId });
    return row ? Number(row[0]) : null;
  }

  /** One export row of a tenant, with its parts when it has any (most reads need no second query). */
  private async oneExport(text: string, tenantId: string, id: string): Promise<[ExportRecord, Row] | null> {
    const [row] = await this.driver.rows(text, { id, tenantId });
    if (!row) return null;
    const [record] = idsWithParts([row]).length
      ? await this.driver.run(this.withParts([row]), false)
      : [toExport(row, [])];
    return [record as ExportRecord, row];
  }

  async readExport(tenantId: string, id: string): Promise<ExportWithPosition | null> {
    const found = await this.oneExport(this.q.exportWithPosition, tenantId, id);
    if (!found) return null;
    const [record, row] = found;
    const position = row[row.length - 1];
    return Object.assign(record, { queuePosition: position === null ? null : Number(position) });
  }

  /** Runs a query of many (tenant, id) pairs and keeps the rows of the pairs asked for. */
  private async watchedRows(
    text: string,
    watched: readonly { tenantId: string; id: string }[],
  ): Promise<Row[]> {
    const asked = new Set(watched.map((w) => `${w.tenantId}/${w.id}`));
    const { dialect } = this.driver;
    const found = await this.driver.rows(text, {
      ids: dialect.list([...new Set(watched.map((w) => w.id))]),
      tenantIds: dialect.list([...new Set(watched.map((w) => w.tenantId))]),
    });
    return found.filter((row) => asked.has(`${row[1]}/${row[0]}`));
  }

  async readExports(watched: readonly { tenantId: string; id: string }[]): Promise<ExportWithPosition[]> {
    if (watched.length === 0) return [];
    const found = await this.watchedRows(this.q.exportsWithPosition, watched);
    const records = await this.driver.run(this.withParts(found), false);
    return records.map((record, i) => {
      const row = found[i] as Row;
      const position = row[row.length - 1];
      return Object.assign(record, { queuePosition: position === null ? null : Number(position) });
    });
  }

  async readExportStates(watched: readonly { tenantId: string; id: string }[]): Promise<ExportState[]> {
    if (watched.length === 0) return [];
    const num = (v: unknown) => (v === null || v === undefined ? null : Number(v));
    return (await this.watchedRows(this.q.exportStates, watched)).map((r) => ({
      id: r[0] as string,
      tenantId: r[1] as string,
      status: r[2] as ExportStatus,
      percent: Number(r[3]),
      rows: Number(r[4]),
      parts: Number(r[5]),
      estimatedRows: num(r[6]),
      attempts: Number(r[7]),
      errorCode: (r[8] as string | null) ?? null,
      queuePosition: num(r[9]),
    }));
  }

  async getExport(tenantId: string, id: string): Promise<ExportRecord | null> {
    return (await this.oneExport(this.q.exportOfTenant, tenantId, id))?.[0] ?? null;
  }

  async listExports(tenantId: string, query: ListExportsQuery): Promise<ExportRecord[]> {
    const where = ["tenant_id = @tenantId"];
    if (query.status) where.push("status = @status");
    if (query.dataset) where.push("dataset = @dataset");
    if (query.before) where.push("id < @before");
    const params = {
      tenantId,
      limit: query.limit,
      status: query.status,
      dataset: query.dataset,
      before: query.before,
    };
    const sql = `SELECT ${EXPORT_COLUMNS} FROM exports WHERE ${where.join(" AND ")} ORDER BY id DESC LIMIT @limit`;
    return this.driver.run(this.withParts(await this.driver.rows(sql, params)), false);
  }

  async cancelExport(
    tenantId: string,
    id: string,
    now: number,
  ): Promise<{ record: ExportRecord; canceled: boolean } | null> {
    const canceled = (await this.driver.changes(this.q.cancel, { id, tenantId, now })) === 1;
    const record = await this.getExport(tenantId, id);
    return record ? { record, canceled } : null;
  }

  // Jobs: claiming, leases, results

  claimExport(lease: Lease): Promise<ClaimedExport | null> {
    return this.driver.run(this.claim(lease), true);
  }

  private *claim(lease: Lease): SqlPlan<ClaimedExport | null> {
    const lock = this.driver.dialect.claimLock;
    const params = leaseParams("", lease);
    if (lock) yield* rows(lock);
    const [next] = yield* rows(this.q.nextRunnable, params);
    if (!next) return null;
    const [record] = yield* this.withParts(yield* rows(this.q.claim, { ...params, id: next[0] }));
    return { ...(record as ExportRecord), takenOver: Boolean(next[1]) };
  }

  async leaseOwners(): Promise<string[]> {
    return (await this.driver.rows(this.q.leaseOwners, {})).map((r) => r[0] as string);
  }

  async expireLeases(owners: string[], now: number): Promise<number> {
    if (owners.length === 0) return 0;
    return this.driver.changes(this.q.expireLeases, {
      owners: this.driver.dialect.list(owners),
      before: now - 1,
    });
  }

  async heartbeat(id: string, lease: Lease): Promise<LeaseCheck> {
    return check(await this.driver.changes(this.q.heartbeat, leaseParams(id, lease)));
  }

  async recordPart(
    id: string,
    lease: Lease,
    part: ExportPart,
    cursor: string | null,
    progress: ExportProgress,
  ): Promise<LeaseCheck> {
    const q = this.q;
    return this.driver.run(
      (function* (): SqlPlan<LeaseCheck> {
        // The part's own row count is partRows: `rows` is the export's progress.
        const params = leaseParams(id, lease, { ...part, partRows: part.rows, ...progress, cursor });
        if ((yield* changes(q.recordPartLease, params)) !== 1) return "lost";
        yield* changes(q.insertPart, params);
        return "ok";
      })(),
      true,
    );
  }

  async updateProgress(
    id: string,
    lease: Lease,
    progress: ExportProgress,
    estimatedRows: number | null,
  ): Promise<LeaseCheck> {
    const params = leaseParams(id, lease, { ...progress, estimated: estimatedRows });
    return check(await this.driver.changes(this.q.updateProgress, params));
  }

  async completeExport(id: string, lease: Lease, expiresAt: number): Promise<LeaseCheck> {
    return check(await this.driver.changes(this.q.complete, leaseParams(id, lease, { expiresAt })));
  }

  async failExport(id: string, lease: Lease, error: ExportError): Promise<LeaseCheck> {
    const params = leaseParams(id, lease, { ...error, retryable: error.retryable ? 1 : 0 });
    return check(await this.driver.changes(this.q.fail, params));
  }

  async requeueExport(
    id: string,
    lease: Lease,
    runAfter: number,
    error: ExportError | null,
  ): Promise<LeaseCheck> {
    const params = leaseParams(id, lease, {
      runAfter,
      // A shutdown hands the attempt back: only failures count against the maximum.
      giveBack: error ? 0 : 1,
      code: error?.code ?? null,
      message: error?.message ?? null,
      retryable: error ? 1 : null,
    });
    return check(await this.driver.changes(this.q.requeue, params));
  }

  // Retention

  async listExportsToPurge(now: number, limit: number): Promise<ExportRecord[]> {
    return this.driver.run(this.withParts(await this.driver.rows(this.q.toPurge, { now, limit })), false);
  }

  async markPurged(id: string, now: number): Promise<void> {
    const q = this.q;
    await this.driver.run(
      (function* (): SqlPlan<void> {
        if ((yield* changes(q.expire, { id, now })) > 0) return;
        yield* changes(q.markPurged, { id, now });
        yield* changes(q.dropDiscardedParts, { id });
      })(),
      true,
    );
  }

  async forgetExports(createdBefore: number, limit: number): Promise<number> {
    return this.driver.changes(this.q.forgetExports, { before: createdBefore, limit });
  }

  async forgetIdempotencyKeys(createdBefore: number): Promise<number> {
    return this.driver.changes(this.q.forgetKeys, { before: createdBefore });
  }
}
