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
  STATUS,
} from "../domain/export.js";
import { newId } from "../domain/ids.js";
import { DEFAULT_PLAN, type Plan, type Tenant, type TenantLimits } from "../domain/tenant.js";
import {
  DELIVERY,
  type DisabledReason,
  EVENT_OF_STATUS,
  type EventType,
  type ExportEventType,
  encodeEventTypes,
  eventTypePattern,
  type WebhookEndpoint,
  type WebhookEvent,
} from "../domain/webhooks.js";
import { migrate } from "./migrations.js";
import { type Queries, queries } from "./queries.js";
import {
  AUDIT_COLUMNS,
  EXPORT_COLUMNS,
  idsWithParts,
  LIMIT_COLUMNS,
  toAttempt,
  toAudit,
  toDelivery,
  toEndpoint,
  toEvent,
  toExport,
  toKey,
  toOperatorKey,
  toPart,
  toPlan,
  toTenant,
} from "./rows.js";
import { changes, type Driver, type Params, type Row, rows, type Plan as SqlPlan } from "./sql.js";
import type {
  AllExportsQuery,
  ApiKeyRecord,
  AttemptRecord,
  AuditEntry,
  AuditQuery,
  AuditStamp,
  ClaimedDelivery,
  ClaimedExport,
  CreateExportOptions,
  CreateOutcome,
  DeliveryWithAttempts,
  EndpointOwner,
  ExportState,
  ExportVersion,
  ExportWithPosition,
  Lease,
  LeaseCheck,
  ListExportsQuery,
  MetadataStore,
  NewWebhookEndpoint,
  OperatorKeyRecord,
  TenantChange,
  VersionedExport,
  WebhookEndpointChange,
} from "./types.js";

/** The parameters every leased write names: the export, its owner, now and the renewed lease end. */
function leaseParams(id: string, lease: Lease, values: Params = {}): Params {
  return { ...values, id, owner: lease.owner, now: lease.now, until: lease.now + lease.leaseMs };
}

/** The parameters of a progress write (queries.ts `progress`). */
function progressParams(p: ExportProgress): Params {
  return { percent: p.percent, rows: p.rows, parts: p.parts, progressDataset: p.dataset ?? 0 };
}

const check = (changed: number): LeaseCheck => (changed === 1 ? "ok" : "lost");

/**
 * An ExportVersion inside: the row of the status read (id and tenant first, the queue position
 * last) and the driver's change mark taken before it, moved on when a later read finds the row
 * unchanged.
 */
interface SeenExport {
  row: Row;
  mark: number | null;
}

/** Whether two rows of one statement hold the same values (engines return primitives only). */
function sameRow(a: Row, b: Row): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** An audit entry's parameters: before and after as JSON text (null stays NULL). */
function auditParams(entry: AuditEntry): Params {
  const text = (value: unknown) => (value === null || value === undefined ? null : JSON.stringify(value));
  return { ...entry, beforeJson: text(entry.before), afterJson: text(entry.after) };
}

/** Deliveries a transaction's outbox writes queued; the deliverers are woken after its commit. */
interface Outbox {
  queued: number;
}

/** The owner parameter of endpoint queries: the tenant id, or '' for product-wide (see queries.ts OWNER). */
const ownerParam = (owner: EndpointOwner) => owner ?? "";

export class SqlMetadataStore implements MetadataStore {
  private readonly q: Queries;
  /** In-process listeners for deliveries that became due (subscribeToWebhooks). */
  private readonly webhookListeners = new Set<() => void>();

  constructor(protected readonly driver: Driver) {
    this.q = queries(driver.dialect);
  }

  /**
   * Runs a plan in one transaction with an outbox: deliveries its status changes queued wake this
   * process's deliverers once it committed (PostgreSQL's trigger wakes the other processes').
   */
  private async withOutbox<T>(make: (outbox: Outbox) => SqlPlan<T>): Promise<T> {
    const outbox: Outbox = { queued: 0 };
    const result = await this.driver.run(make(outbox), true);
    if (outbox.queued > 0) this.wakeDeliverers();
    return result;
  }

  private wakeDeliverers(): void {
    for (const listener of this.webhookListeners) listener();
  }

  /**
   * The outbox, inside the transaction of export `id`'s status change to `status`: when any
   * enabled endpoint of its tenant (or a product-wide one) takes the event, the event is written
   * with the export as it is now (parts included) and one delivery per such endpoint. Every status
   * change of the store goes through here, so none can commit without its event.
   */
  private *outbox(
    status: keyof typeof EVENT_OF_STATUS,
    id: string,
    now: number,
    outbox: Outbox,
  ): SqlPlan<void> {
    const type: ExportEventType = EVENT_OF_STATUS[status];
    const pattern = eventTypePattern(type);
    if ((yield* rows(this.q.subscriberOf, { id, pattern })).length === 0) return;
    const [record] = yield* this.withParts(yield* rows(this.q.exportById, { id }));
    if (!record) return;
    const eventId = newId();
    const event = {
      eventId,
      type,
      tenantId: record.tenantId,
      exportId: id,
      now,
      data: JSON.stringify(record),
    };
    yield* changes(this.q.insertEvent, event);
    outbox.queued += yield* changes(this.q.fanOut, { eventId, tenantId: record.tenantId, pattern, now });
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

  async updateTenant(name: string, change: TenantChange): Promise<Tenant | null> {
    return this.driver.run(this.tenantUpdate(name, change), true);
  }

  /** Applies a plan and override change to the tenant of this name; the tenant after (null: none). */
  private *tenantUpdate(name: string, change: TenantChange): SqlPlan<Tenant | null> {
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
    if (sets.length) yield* changes(`UPDATE tenants SET ${sets.join(", ")} WHERE name = @name`, params);
    const [row] = yield* rows(this.q.tenantByName, { name });
    return row ? toTenant(row) : null;
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

  // The operator's side: tenants' life cycle, plans, operator keys, audit log, support views

  /** The audit entry of a write, inside the write's transaction. */
  private *audit(
    stamp: AuditStamp,
    action: string,
    tenant: string | null,
    target: string,
    before: unknown,
    after: unknown,
  ): SqlPlan<void> {
    yield* changes(
      this.q.insertAudit,
      auditParams({ ...stamp, id: newId(), action, tenant, target, before, after }),
    );
  }

  private *tenantNamed(name: string): SqlPlan<Tenant | null> {
    const [row] = yield* rows(this.q.tenantByName, { name });
    return row ? toTenant(row) : null;
  }

  async listTenantsPage(after: string | undefined, limit: number): Promise<Tenant[]> {
    return (await this.driver.rows(this.q.tenantsAfter, { after: after ?? "", limit })).map(toTenant);
  }

  createTenant(name: string, change: TenantChange, stamp: AuditStamp): Promise<Tenant | null> {
    const self = this;
    return this.driver.run(
      (function* (): SqlPlan<Tenant | null> {
        const params = { id: newId(), name, now: stamp.at, plan: change.plan ?? DEFAULT_PLAN };
        if ((yield* changes(self.q.ensureTenant, params)) === 0) return null;
        const tenant = yield* self.tenantUpdate(name, { overrides: change.overrides });
        yield* self.audit(stamp, "tenant.create", name, `tenant:${name}`, null, tenant);
        return tenant;
      })(),
      true,
    );
  }

  changeTenant(name: string, change: TenantChange, stamp: AuditStamp): Promise<Tenant | null> {
    const self = this;
    return this.driver.run(
      (function* (): SqlPlan<Tenant | null> {
        const before = yield* self.tenantNamed(name);
        if (!before) return null;
        const after = yield* self.tenantUpdate(name, change);
        yield* self.audit(stamp, "tenant.change", name, `tenant:${name}`, before, after);
        return after;
      })(),
      true,
    );
  }

  setTenantDisabled(name: string, disabled: boolean, stamp: AuditStamp): Promise<Tenant | null> {
    const self = this;
    return this.driver.run(
      (function* (): SqlPlan<Tenant | null> {
        const before = yield* self.tenantNamed(name);
        if (!before) return null;
        yield* changes(disabled ? self.q.disableTenant : self.q.enableTenant, { name, now: stamp.at });
        const after = yield* self.tenantNamed(name);
        const action = disabled ? "tenant.disable" : "tenant.enable";
        yield* self.audit(stamp, action, name, `tenant:${name}`, before, after);
        return after;
      })(),
      true,
    );
  }

  async activeExportIds(tenantId: string): Promise<string[]> {
    return (await this.driver.rows(this.q.activeExports, { tenantId })).map((r) => r[0] as string);
  }

  deleteTenant(name: string, stamp: AuditStamp): Promise<{ exports: number; keys: number } | null> {
    const q = this.q;
    const self = this;
    return this.driver.run(
      (function* (): SqlPlan<{ exports: number; keys: number } | null> {
        const before = yield* self.tenantNamed(name);
        if (!before) return null;
        const params = { tenantId: before.id };
        yield* changes(q.deleteTenantParts, params);
        yield* changes(q.deleteTenantIdempotencyKeys, params);
        const exports = yield* changes(q.deleteTenantExports, params);
        const keys = yield* changes(q.deleteTenantKeys, params);
        yield* changes(q.deleteTenantWebhookAttempts, params);
        yield* changes(q.deleteTenantWebhookDeliveries, params);
        yield* changes(q.deleteTenantWebhookEvents, params);
        const webhookEndpoints = yield* changes(q.deleteTenantWebhookEndpoints, params);
        yield* changes(q.deleteTenant, params);
        yield* self.audit(stamp, "tenant.delete", name, `tenant:${name}`, before, {
          deleted_exports: exports,
          deleted_keys: keys,
          deleted_webhook_endpoints: webhookEndpoints,
        });
        return { exports, keys };
      })(),
      true,
    );
  }

  createPlan(plan: Plan, stamp: AuditStamp): Promise<boolean> {
    const self = this;
    return this.driver.run(
      (function* (): SqlPlan<boolean> {
        const params = { name: plan.name, ...plan.limits, now: stamp.at };
        if ((yield* changes(self.q.insertPlan, params)) === 0) return false;
        yield* self.audit(stamp, "plan.create", null, `plan:${plan.name}`, null, plan);
        return true;
      })(),
      true,
    );
  }

  changePlan(name: string, limits: Partial<TenantLimits>, stamp: AuditStamp): Promise<Plan | null> {
    const self = this;
    return this.driver.run(
      (function* (): SqlPlan<Plan | null> {
        const [row] = yield* rows(self.q.plan, { name });
        if (!row) return null;
        const before = toPlan(row);
        const after: Plan = { name, limits: { ...before.limits, ...limits } };
        yield* changes(self.q.upsertPlan, { name, ...after.limits, now: stamp.at });
        yield* self.audit(stamp, "plan.change", null, `plan:${name}`, before, after);
        return after;
      })(),
      true,
    );
  }

  insertOperatorKey(key: OperatorKeyRecord, stamp: AuditStamp): Promise<void> {
    const self = this;
    return this.driver.run(
      (function* (): SqlPlan<void> {
        yield* changes(self.q.insertOperatorKey, { ...key, scopes: JSON.stringify(key.scopes) });
        const shown = { prefix: key.prefix, name: key.name, scopes: key.scopes };
        yield* self.audit(stamp, "operator_key.create", null, `operator_key:${key.prefix}`, null, shown);
      })(),
      true,
    );
  }

  async findOperatorKeyByPrefix(prefix: string): Promise<OperatorKeyRecord | null> {
    const [row] = await this.driver.rows(this.q.operatorKeyByPrefix, { prefix });
    return row ? toOperatorKey(row) : null;
  }

  async listOperatorKeys(): Promise<OperatorKeyRecord[]> {
    return (await this.driver.rows(this.q.operatorKeys, {})).map(toOperatorKey);
  }

  revokeOperatorKey(prefix: string, stamp: AuditStamp): Promise<boolean> {
    const self = this;
    return this.driver.run(
      (function* (): SqlPlan<boolean> {
        if ((yield* changes(self.q.revokeOperatorKey, { prefix, now: stamp.at })) === 0) return false;
        const target = `operator_key:${prefix}`;
        yield* self.audit(stamp, "operator_key.revoke", null, target, { revoked: false }, { revoked: true });
        return true;
      })(),
      true,
    );
  }

  async touchOperatorKey(id: string, now: number): Promise<void> {
    await this.driver.changes(this.q.touchOperatorKey, { id, now });
  }

  async appendAudit(entry: AuditEntry): Promise<void> {
    await this.driver.changes(this.q.insertAudit, auditParams(entry));
  }

  async listAudit(query: AuditQuery): Promise<AuditEntry[]> {
    const where = ["1 = 1"];
    if (query.tenant !== undefined) where.push("tenant = @tenant");
    if (query.action !== undefined) where.push("action = @action");
    if (query.before !== undefined) where.push("id < @before");
    const sql = `SELECT ${AUDIT_COLUMNS} FROM audit_log WHERE ${where.join(" AND ")} ORDER BY id DESC LIMIT @limit`;
    return (await this.driver.rows(sql, { ...query })).map(toAudit);
  }

  async listAllExports(query: AllExportsQuery): Promise<ExportRecord[]> {
    const where = ["1 = 1"];
    if (query.tenantId !== undefined) where.push("tenant_id = @tenantId");
    if (query.status) where.push("status = @status");
    if (query.dataset) where.push("dataset = @dataset");
    if (query.before) where.push("id < @before");
    const sql = `SELECT ${EXPORT_COLUMNS} FROM exports WHERE ${where.join(" AND ")} ORDER BY id DESC LIMIT @limit`;
    return this.driver.run(this.withParts(await this.driver.rows(sql, { ...query })), false);
  }

  async findExport(id: string): Promise<ExportRecord | null> {
    const [row] = await this.driver.rows(this.q.exportById, { id });
    if (!row) return null;
    const [record] = await this.driver.run(this.withParts([row]), false);
    return record ?? null;
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
      createdBy: e.createdBy,
    };
  }

  async insertExport(record: ExportRecord): Promise<void> {
    await this.driver.changes(this.q.insertExport, this.exportParams(record));
  }

  createExport(record: ExportRecord, options: CreateExportOptions): Promise<CreateOutcome> {
    // The statement that checks the cap and inserts, its idempotency key and its event: one transaction.
    return this.withOutbox((outbox) => this.create(record, options, outbox));
  }

  private *create(
    record: ExportRecord,
    options: CreateExportOptions,
    outbox: Outbox,
  ): SqlPlan<CreateOutcome> {
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
      // Disabled or deleted since its key was verified (within the auth cache's second).
      if (!tenant || tenant[1] !== null) return { kind: "tenant_disabled" };
      return { kind: "queue_full", queued: Number(tenant[0]) };
    }
    if (keyParams) yield* changes(q.insertIdempotencyKey, keyParams);
    yield* this.outbox(STATUS.queued, record.id, record.createdAt, outbox);
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

  /** An export row with its parts when it has any (most reads need no second query). */
  private async exportOf(row: Row): Promise<ExportRecord> {
    const [record] = idsWithParts([row]).length
      ? await this.driver.run(this.withParts([row]), false)
      : [toExport(row, [])];
    return record as ExportRecord;
  }

  readExport(tenantId: string, id: string): Promise<VersionedExport | null>;
  readExport(
    tenantId: string,
    id: string,
    known: ExportVersion | undefined,
  ): Promise<VersionedExport | "unchanged" | null>;
  async readExport(
    tenantId: string,
    id: string,
    known?: ExportVersion,
  ): Promise<VersionedExport | "unchanged" | null> {
    // Taken before the read: a commit after it moves the mark, and the next read reads again.
    const mark = this.driver.changeMark();
    const last = known as SeenExport | undefined;
    const same = last !== undefined && last.row[0] === id && last.row[1] === tenantId;
    if (same && mark !== null && mark === last.mark) return "unchanged";
    const row = await this.driver.row(this.q.exportWithPosition, { id, tenantId });
    if (!row) return null;
    if (same && sameRow(row, last.row)) {
      last.mark = mark;
      return "unchanged";
    }
    const position = row[row.length - 1];
    const seen: SeenExport = { row, mark };
    return Object.assign(await this.exportOf(row), {
      queuePosition: position === null ? null : Number(position),
      version: seen as unknown as ExportVersion,
    });
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
    const row = await this.driver.row(this.q.exportOfTenant, { id, tenantId });
    return row ? this.exportOf(row) : null;
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
    const q = this.q;
    const canceled = await this.withOutbox(
      function* (this: SqlMetadataStore, outbox: Outbox): SqlPlan<boolean> {
        if ((yield* changes(q.cancel, { id, tenantId, now })) !== 1) return false;
        yield* this.outbox(STATUS.canceled, id, now, outbox);
        return true;
      }.bind(this),
    );
    const record = await this.getExport(tenantId, id);
    return record ? { record, canceled } : null;
  }

  // Jobs: claiming, leases, results

  claimExport(lease: Lease): Promise<ClaimedExport | null> {
    return this.withOutbox((outbox) => this.claim(lease, outbox));
  }

  private *claim(lease: Lease, outbox: Outbox): SqlPlan<ClaimedExport | null> {
    const lock = this.driver.dialect.claimLock;
    const params = leaseParams("", lease);
    if (lock) yield* rows(lock);
    const [next] = yield* rows(this.q.nextRunnable, params);
    if (!next) return null;
    const [record] = yield* this.withParts(yield* rows(this.q.claim, { ...params, id: next[0] }));
    const claimed = record as ExportRecord;
    // export.started once: on the first run, not on a retry's or a takeover's.
    if (claimed.runs === 1) yield* this.outbox(STATUS.running, claimed.id, lease.now, outbox);
    return { ...claimed, takenOver: Boolean(next[1]) };
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
        const params = leaseParams(id, lease, {
          index: part.index,
          objectKey: part.objectKey,
          bytes: part.bytes,
          sha256: part.sha256,
          partRows: part.rows,
          partDataset: part.dataset ?? 0,
          lastOfDataset: part.lastOfDataset ? 1 : 0,
          crc32: part.crc32 ?? null,
          ...progressParams(progress),
          cursor,
        });
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
    const params = leaseParams(id, lease, { ...progressParams(progress), estimated: estimatedRows });
    return check(await this.driver.changes(this.q.updateProgress, params));
  }

  /** A leased status change and its event, in one transaction. */
  private leasedChange(
    text: string,
    params: Params,
    status: keyof typeof EVENT_OF_STATUS,
  ): Promise<LeaseCheck> {
    return this.withOutbox(
      function* (this: SqlMetadataStore, outbox: Outbox): SqlPlan<LeaseCheck> {
        if ((yield* changes(text, params)) !== 1) return "lost";
        yield* this.outbox(status, params.id as string, params.now as number, outbox);
        return "ok";
      }.bind(this),
    );
  }

  completeExport(id: string, lease: Lease, expiresAt: number): Promise<LeaseCheck> {
    return this.leasedChange(this.q.complete, leaseParams(id, lease, { expiresAt }), STATUS.succeeded);
  }

  failExport(id: string, lease: Lease, error: ExportError): Promise<LeaseCheck> {
    const params = leaseParams(id, lease, { ...error, retryable: error.retryable ? 1 : 0 });
    return this.leasedChange(this.q.fail, params, STATUS.failed);
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
    await this.withOutbox(
      function* (this: SqlMetadataStore, outbox: Outbox): SqlPlan<void> {
        if ((yield* changes(q.expire, { id, now })) > 0) {
          yield* this.outbox(STATUS.expired, id, now, outbox);
          return;
        }
        yield* changes(q.markPurged, { id, now });
        yield* changes(q.dropDiscardedParts, { id });
      }.bind(this),
    );
  }

  async forgetExports(createdBefore: number, limit: number): Promise<number> {
    return this.driver.changes(this.q.forgetExports, { before: createdBefore, limit });
  }

  async forgetIdempotencyKeys(createdBefore: number): Promise<number> {
    return this.driver.changes(this.q.forgetKeys, { before: createdBefore });
  }

  // Webhooks: endpoints

  async insertWebhookEndpoint(e: NewWebhookEndpoint): Promise<void> {
    await this.driver.changes(this.q.insertEndpoint, {
      ...e,
      events: encodeEventTypes(e.events),
      enabled: e.enabled ? 1 : 0,
      secret: e.sealedSecret,
    });
  }

  async getWebhookEndpoint(owner: EndpointOwner, id: string): Promise<WebhookEndpoint | null> {
    const [row] = await this.driver.rows(this.q.endpoint, { id, owner: ownerParam(owner) });
    return row ? toEndpoint(row) : null;
  }

  async listWebhookEndpoints(owner: EndpointOwner): Promise<WebhookEndpoint[]> {
    return (await this.driver.rows(this.q.endpointsOf, { owner: ownerParam(owner) })).map(toEndpoint);
  }

  async updateWebhookEndpoint(
    owner: EndpointOwner,
    id: string,
    change: WebhookEndpointChange,
    now: number,
  ): Promise<WebhookEndpoint | null> {
    const sets = ["updated_at = @now"];
    const params: Params = { id, owner: ownerParam(owner), now };
    if (change.url !== undefined) {
      sets.push("url = @url");
      params.url = change.url;
    }
    if (change.events !== undefined) {
      sets.push("events = @events");
      params.events = encodeEventTypes(change.events);
    }
    if (change.description !== undefined) {
      sets.push("description = @description");
      params.description = change.description;
    }
    const sql = `UPDATE webhook_endpoints SET ${sets.join(", ")}
      WHERE id IN (SELECT w.id FROM webhook_endpoints w WHERE w.id = @id AND COALESCE(w.tenant_id, '') = @owner)`;
    if ((await this.driver.changes(sql, params)) === 0) return null;
    return this.getWebhookEndpoint(owner, id);
  }

  setWebhookEndpointEnabled(
    owner: EndpointOwner,
    id: string,
    enabled: boolean,
    reason: DisabledReason | null,
    now: number,
  ): Promise<boolean> {
    const q = this.q;
    const params = {
      id,
      owner: ownerParam(owner),
      enabled: enabled ? 1 : 0,
      reason: enabled ? null : reason,
      disabledAt: enabled ? null : now,
      now,
    };
    return this.driver.run(
      (function* (): SqlPlan<boolean> {
        if ((yield* changes(q.setEnabled, params)) === 0) return false;
        if (!enabled) yield* changes(q.abandonPending, { id });
        return true;
      })(),
      true,
    );
  }

  async deleteWebhookEndpoint(owner: EndpointOwner, id: string): Promise<boolean> {
    return (await this.driver.changes(this.q.deleteEndpoint, { id, owner: ownerParam(owner) })) === 1;
  }

  async rotateWebhookSecret(
    owner: EndpointOwner,
    id: string,
    sealedSecret: string,
    previousUntil: number,
    now: number,
  ): Promise<boolean> {
    const params = { id, owner: ownerParam(owner), secret: sealedSecret, until: previousUntil, now };
    return (await this.driver.changes(this.q.rotateSecret, params)) === 1;
  }

  async listTroubledWebhookEndpoints(): Promise<WebhookEndpoint[]> {
    return (await this.driver.rows(this.q.troubledEndpoints, {})).map(toEndpoint);
  }

  async syncConfigWebhookEndpoints(
    endpoints: {
      id: string;
      url: string;
      events: ExportEventType[];
      description: string;
      sealedSecret: string;
    }[],
    now: number,
  ): Promise<void> {
    const q = this.q;
    await this.driver.run(
      (function* (): SqlPlan<void> {
        const keep = new Set(endpoints.map((e) => e.id));
        for (const [id] of yield* rows(q.configEndpointIds))
          if (!keep.has(id as string)) yield* changes(q.deleteEndpoint, { id, owner: "" });
        for (const e of endpoints)
          yield* changes(q.upsertConfigEndpoint, {
            id: e.id,
            url: e.url,
            description: e.description,
            events: encodeEventTypes(e.events),
            secret: e.sealedSecret,
            now,
          });
      })(),
      true,
    );
  }

  // Webhooks: events and the delivery log

  async getWebhookEvent(id: string): Promise<WebhookEvent | null> {
    const [row] = await this.driver.rows(this.q.event, { id });
    return row ? toEvent(row) : null;
  }

  async insertWebhookTestEvent(event: WebhookEvent, endpointId: string): Promise<void> {
    const q = this.q;
    await this.withOutbox((outbox) =>
      (function* (): SqlPlan<void> {
        yield* changes(q.insertEvent, {
          eventId: event.id,
          type: event.type,
          tenantId: event.tenantId,
          exportId: event.exportId,
          now: event.createdAt,
          data: event.data,
        });
        yield* changes(q.insertDelivery, {
          id: `${event.id}:${endpointId}`,
          eventId: event.id,
          endpointId,
          now: event.createdAt,
        });
        outbox.queued += 1;
      })(),
    );
  }

  /** Deliveries with their attempts (one query for all the attempts). */
  private async withAttempts(deliveryRows: Row[]): Promise<DeliveryWithAttempts[]> {
    const deliveries = deliveryRows.map(toDelivery);
    if (deliveries.length === 0) return [];
    const ids = this.driver.dialect.list(deliveries.map((d) => d.id));
    const byDelivery = new Map<string, DeliveryWithAttempts["log"]>();
    for (const row of await this.driver.rows(this.q.attemptsOf, { ids })) {
      const attempt = toAttempt(row);
      const list = byDelivery.get(attempt.deliveryId) ?? [];
      list.push(attempt);
      byDelivery.set(attempt.deliveryId, list);
    }
    return deliveries.map((d) => ({ ...d, log: byDelivery.get(d.id) ?? [] }));
  }

  async listEndpointDeliveries(
    endpointId: string,
    query: { before?: string; limit: number },
  ): Promise<DeliveryWithAttempts[]> {
    const params = { endpointId, before: query.before ?? null, limit: query.limit };
    return this.withAttempts(await this.driver.rows(this.q.deliveriesOfEndpoint, params));
  }

  async listEventDeliveries(owner: EndpointOwner, eventId: string): Promise<DeliveryWithAttempts[]> {
    const params = { eventId, owner: ownerParam(owner) };
    return this.withAttempts(await this.driver.rows(this.q.deliveriesOfEvent, params));
  }

  async redeliverWebhook(eventId: string, endpointId: string, now: number): Promise<void> {
    const q = this.q;
    await this.withOutbox((outbox) =>
      (function* (): SqlPlan<void> {
        if ((yield* changes(q.redeliver, { eventId, endpointId, now })) === 0)
          yield* changes(q.insertDelivery, { id: `${eventId}:${endpointId}`, eventId, endpointId, now });
        outbox.queued += 1;
      })(),
    );
  }

  // Webhooks: delivery

  /** In-process wake-ups only; PostgresStore adds LISTEN for the other processes'. */
  async subscribeToWebhooks(listener: () => void): Promise<void> {
    this.webhookListeners.add(listener);
  }

  claimWebhookDeliveries(lease: Lease, limit: number): Promise<ClaimedDelivery[]> {
    const q = this.q;
    const list = (ids: string[]) => this.driver.dialect.list(ids);
    const params = leaseParams("", lease, { limit });
    return this.driver.run(
      (function* (): SqlPlan<ClaimedDelivery[]> {
        const ids = (yield* rows(q.claimDeliveries, params)).map((r) => r[0] as string);
        if (ids.length === 0) return [];
        yield* changes(q.abandonDisabled, { ids: list(ids), owner: lease.owner });
        return (yield* rows(q.deliveriesToSend, { ids: list(ids), owner: lease.owner })).map((r) => {
          const [
            id,
            eventId,
            endpointId,
            attempts,
            eventType,
            tenantId,
            exportId,
            eventCreatedAt,
            data,
            url,
          ] = r as [
            string,
            string,
            string,
            number,
            EventType,
            string | null,
            string | null,
            number,
            string,
            string,
          ];
          return {
            id,
            eventId,
            endpointId,
            attempts: Number(attempts),
            eventType,
            tenantId,
            exportId,
            eventCreatedAt: Number(eventCreatedAt),
            data,
            url,
            sealedSecret: r[10] as string,
            sealedPreviousSecret: r[11] as string | null,
            previousSecretExpiresAt: r[12] === null ? null : Number(r[12]),
            endpointOwner: r[13] as string | null,
          };
        });
      })(),
      true,
    );
  }

  recordWebhookAttempt(record: AttemptRecord): Promise<{ check: LeaseCheck; failingSince: number | null }> {
    const q = this.q;
    const { attempt } = record;
    const params = {
      id: record.deliveryId,
      owner: record.owner,
      eventId: record.eventId,
      endpointId: record.endpointId,
      state: record.state,
      next: record.nextAttemptAt,
      deliveredAt: record.state === DELIVERY.delivered ? attempt.attemptedAt : null,
      status: attempt.status,
      error: attempt.error,
      attemptId: attempt.id,
      now: attempt.attemptedAt,
      durationMs: attempt.durationMs,
      response: attempt.response,
    };
    return this.driver.run(
      (function* (): SqlPlan<{ check: LeaseCheck; failingSince: number | null }> {
        if ((yield* changes(q.finishAttempt, params)) !== 1) return { check: "lost", failingSince: null };
        yield* changes(q.insertAttempt, params);
        if (record.state === DELIVERY.delivered) {
          yield* changes(q.endpointSucceeded, params);
          return { check: "ok", failingSince: null };
        }
        const [row] = yield* rows(q.endpointFailed, params);
        return { check: "ok", failingSince: row ? Number(row[0]) : null };
      })(),
      true,
    );
  }

  async countPendingWebhooks(): Promise<number> {
    const [row] = await this.driver.rows(this.q.outboxDepth, {});
    return Number(row?.[0] ?? 0);
  }

  async forgetWebhookDeliveries(before: number): Promise<number> {
    const forgotten = await this.driver.changes(this.q.forgetDeliveries, { before });
    await this.driver.changes(this.q.forgetEvents, { before });
    return forgotten;
  }
}
