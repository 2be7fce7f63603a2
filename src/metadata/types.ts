/**
 * The metadata store: tenants, API keys, exports (the export row is also the job) and their parts.
 * One interface, one implementation (store.ts) on two engines; SQLite is the embedded default. Every method that touches customer data takes the
 * tenant id; the worker-side methods take the lease owner and do nothing once the lease is lost.
 */
import type {
  ExportError,
  ExportPart,
  ExportProgress,
  ExportRecord,
  ExportStatus,
} from "../domain/export.js";
import type { Scope } from "../domain/scopes.js";
import type { Plan, Tenant, TenantLimits } from "../domain/tenant.js";

export type { Tenant };

export interface ApiKeyRecord {
  id: string;
  tenantId: string;
  prefix: string;
  hash: string;
  last4: string;
  scopes: Scope[];
  createdAt: number;
  lastUsedAt: number | null;
  revokedAt: number | null;
}

export interface ListExportsQuery {
  status?: ExportStatus;
  dataset?: string;
  /** Return exports with ids strictly below this one (newest first). */
  before?: string;
  limit: number;
}

export interface Lease {
  owner: string;
  now: number;
  leaseMs: number;
}

/** Outcome of creating an export under the tenant's queue cap and an optional idempotency key. */
export type CreateOutcome =
  | { kind: "created"; record: ExportRecord }
  | { kind: "replayed"; record: ExportRecord }
  | { kind: "idempotency_conflict" }
  | { kind: "queue_full"; queued: number };

export interface CreateExportOptions {
  maxQueued: number;
  idempotency: { key: string; requestHash: string } | null;
}

/** An export as the status read returns it: with its 1-based queue position while queued, else null. */
export type ExportWithPosition = ExportRecord & { queuePosition: number | null };

/**
 * What changes while an export waits and runs: the progress streams compare it tick by tick and
 * read the whole export only when it moved.
 */
export interface ExportState {
  id: string;
  tenantId: string;
  status: ExportStatus;
  percent: number;
  rows: number;
  parts: number;
  estimatedRows: number | null;
  attempts: number;
  errorCode: string | null;
  queuePosition: number | null;
}

/** A claimed export; `takenOver` when it was running under another worker's expired lease. */
export type ClaimedExport = ExportRecord & { takenOver: boolean };

/** Why a worker-side write was refused: the export is no longer ours to write. */
export type LeaseCheck = "ok" | "lost";

/**
 * The metadata store is handed to each consumer as the port it uses, so a signature says what a
 * consumer may do (the API never claims work; the sweeper never creates exports):
 * - TenancyPort: tenants, plans, settings and API keys (auth, maintenance, CLI, admin);
 * - ExportsPort: what the API does with a tenant's exports (create, read, list, cancel);
 * - JobQueuePort: the worker's side (claim under a lease, heartbeat, parts, progress, finish);
 * - RetentionPort: the sweeper's side (purge files, forget old exports and idempotency keys).
 * MetadataStore is all of them plus the connection's life cycle: only the composition root and the
 * CLI hold it.
 */
export interface StoreLifecycle {
  ping(): Promise<void>;
  close(): Promise<void>;
}

/** Tenants, plans, settings and API keys. */
export interface TenancyPort {
  ensureTenant(name: string, now: number, plan?: string): Promise<Tenant>;
  findTenantByName(name: string): Promise<Tenant | null>;
  getTenant(id: string): Promise<Tenant | null>;
  listTenants(): Promise<Tenant[]>;
  /** Changes a tenant's plan and limit overrides (null clears an override). Returns the tenant after. */
  updateTenant(
    name: string,
    change: { plan?: string; overrides?: { [K in keyof TenantLimits]?: number | null } },
  ): Promise<Tenant | null>;
  listPlans(): Promise<Plan[]>;
  getPlan(name: string): Promise<Plan | null>;
  upsertPlan(plan: Plan, now: number): Promise<void>;
  getSetting(name: string): Promise<string | null>;
  setSetting(name: string, value: string | null): Promise<void>;
  insertApiKey(key: ApiKeyRecord): Promise<void>;
  findApiKeyByPrefix(prefix: string): Promise<ApiKeyRecord | null>;
  listApiKeys(tenantId: string): Promise<ApiKeyRecord[]>;
  revokeApiKey(prefix: string, now: number): Promise<boolean>;
  touchApiKey(id: string, now: number): Promise<void>;
}

/** A tenant's exports as the API sees them. Every method that reads one takes the tenant id. */
export interface ExportsPort {
  insertExport(record: ExportRecord): Promise<void>;
  /**
   * Inserts a queued export unless the tenant's queue is full, atomically with its idempotency key:
   * concurrent creates with one key make one export.
   */
  createExport(record: ExportRecord, options: CreateExportOptions): Promise<CreateOutcome>;
  /** How many exports are in each status (for /metrics). */
  countExportsByStatus(): Promise<Partial<Record<ExportStatus, number>>>;
  /** 1-based place of a queued export among its tenant's queued exports; null when not queued. */
  queuePosition(tenantId: string, id: string): Promise<number | null>;
  getExport(tenantId: string, id: string): Promise<ExportRecord | null>;
  /** The status read: the export and its queue position in one query (null if not found). */
  readExport(tenantId: string, id: string): Promise<ExportWithPosition | null>;
  /**
   * The status read of several exports in one query, each named with its tenant (an export of
   * another tenant than the one named is not returned); unknown ones are left out, order is not kept.
   */
  readExports(watched: readonly { tenantId: string; id: string }[]): Promise<ExportWithPosition[]>;
  /** The ExportState of several exports in one query, scoped and left out as `readExports`. */
  readExportStates(watched: readonly { tenantId: string; id: string }[]): Promise<ExportState[]>;
  listExports(tenantId: string, query: ListExportsQuery): Promise<ExportRecord[]>;
  /** Cancels a queued or running export. Returns the export after the attempt (null if not found). */
  cancelExport(
    tenantId: string,
    id: string,
    now: number,
  ): Promise<{ record: ExportRecord; canceled: boolean } | null>;
  /** Marks files deleted: a succeeded export becomes expired; parts are kept as metadata. */
  markPurged(id: string, now: number): Promise<void>;
}

/** The worker's side: the export row is the job, claimed under a lease. */
export interface JobQueuePort {
  /**
   * Calls `listener` when any process queues an export, where the store can tell (PostgreSQL's
   * LISTEN/NOTIFY). Absent: the in-process wake-up and polling are all there is. A subscription
   * that loses its connection keeps trying to get it back; `onConnection` hears each loss (with
   * its error) and each return.
   */
  subscribeToQueue?(
    listener: () => void,
    onConnection?: (connected: boolean, err?: unknown) => void,
  ): Promise<void>;
  /**
   * Takes the oldest runnable export: queued and due (while its tenant runs fewer than its
   * max_running), or running with an expired lease.
   */
  claimExport(lease: Lease): Promise<ClaimedExport | null>;
  /** Owners of the leases on running exports. */
  leaseOwners(): Promise<string[]>;
  /** Ends the leases of these owners now, so their exports can be claimed at once. */
  expireLeases(owners: string[], now: number): Promise<number>;
  /** Extends the lease; "lost" when the export was canceled or another worker owns it now. */
  heartbeat(id: string, lease: Lease): Promise<LeaseCheck>;
  /** Publishes a finished part and the source position after it, in one write. */
  recordPart(
    id: string,
    lease: Lease,
    part: ExportPart,
    cursor: string | null,
    progress: ExportProgress,
  ): Promise<LeaseCheck>;
  updateProgress(
    id: string,
    lease: Lease,
    progress: ExportProgress,
    estimatedRows: number | null,
  ): Promise<LeaseCheck>;
  completeExport(id: string, lease: Lease, expiresAt: number): Promise<LeaseCheck>;
  failExport(id: string, lease: Lease, error: ExportError): Promise<LeaseCheck>;
  /** Puts a running export back in the queue (retryable failure or shutdown) and releases the lease. */
  requeueExport(id: string, lease: Lease, runAfter: number, error: ExportError | null): Promise<LeaseCheck>;
  /** Reads an export back (a run that lost its lease tells a cancel from a takeover). */
  getExport(tenantId: string, id: string): Promise<ExportRecord | null>;
  getTenant(id: string): Promise<Tenant | null>;
  /** Marks files deleted: a succeeded export becomes expired; parts are kept as metadata. */
  markPurged(id: string, now: number): Promise<void>;
}

/** The sweeper's side: files past retention, exports and idempotency keys past their horizon. */
export interface RetentionPort {
  /** Exports whose files must go: succeeded past expiry, or failed/canceled with files not yet purged. */
  listExportsToPurge(now: number, limit: number): Promise<ExportRecord[]>;
  /** Marks files deleted: a succeeded export becomes expired; parts are kept as metadata. */
  markPurged(id: string, now: number): Promise<void>;
  /** Deletes exports created before `createdBefore`, parts included. Returns how many. */
  forgetExports(createdBefore: number, limit: number): Promise<number>;
  /** Forgets idempotency keys created before the given time. */
  forgetIdempotencyKeys(createdBefore: number): Promise<number>;
}

/** Every port and the connection's life cycle. */
export interface MetadataStore
  extends StoreLifecycle,
    TenancyPort,
    ExportsPort,
    JobQueuePort,
    RetentionPort {}
