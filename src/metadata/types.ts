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
import type { OperatorScope } from "../domain/operator-scopes.js";
import type { Scope } from "../domain/scopes.js";
import type { Plan, Tenant, TenantLimits } from "../domain/tenant.js";
import type {
  DeliveryState,
  DisabledReason,
  EventType,
  ExportEventType,
  WebhookAttempt,
  WebhookDelivery,
  WebhookEndpoint,
  WebhookEvent,
} from "../domain/webhooks.js";

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

/** An operator key: like a tenant key (hashed, shown once) but with operator scopes and no tenant. */
export interface OperatorKeyRecord {
  id: string;
  prefix: string;
  hash: string;
  last4: string;
  /** What the key is for, as its creator wrote it ("billing backend"). */
  name: string;
  scopes: OperatorScope[];
  createdAt: number;
  lastUsedAt: number | null;
  revokedAt: number | null;
}

/**
 * One operator write: who (`operator:<prefix>`, `bootstrap`, `cli:<user>`), what (`tenant.disable`…),
 * on which target, when (epoch ms), and the state before and after (JSON values; null where there
 * is none, e.g. before a create). `tenant` is the tenant's name, so an entry outlives its tenant.
 */
export interface AuditEntry {
  id: string;
  at: number;
  actor: string;
  action: string;
  tenant: string | null;
  target: string;
  before: unknown;
  after: unknown;
}

/** Who makes an audited write, and when (epoch ms): the store writes the entry in the write's transaction. */
export interface AuditStamp {
  actor: string;
  at: number;
}

/** A change of a tenant's plan and limit overrides (null clears an override). */
export interface TenantChange {
  plan?: string;
  overrides?: { [K in keyof TenantLimits]?: number | null };
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
  | { kind: "queue_full"; queued: number }
  /** The tenant was disabled (or deleted) since its key was verified: nothing is created. */
  | { kind: "tenant_disabled" };

export interface CreateExportOptions {
  maxQueued: number;
  idempotency: { key: string; requestHash: string } | null;
}

declare const VERSION: unique symbol;

/**
 * What one status read saw of an export (its whole row and queue position, and the database's
 * change mark before it), opaque to callers, who hand it back to `readExport` to learn whether
 * anything changed since.
 */
export type ExportVersion = { readonly [VERSION]: true };

/**
 * An export as the status read returns it: with its 1-based queue position while queued, else null,
 * and the version it was read at.
 */
export type ExportWithPosition = ExportRecord & { queuePosition: number | null };
/** The status read's answer: the export with the version a later read of it compares against. */
export type VersionedExport = ExportWithPosition & { version: ExportVersion };

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

/** Audit entries, newest first; `before` is an entry id (the last of the previous page). */
export interface AuditQuery {
  tenant?: string;
  action?: string;
  before?: string;
  limit: number;
}

/** Exports of any tenant (the operator's support view): a tenant id narrows it to one. */
export interface AllExportsQuery extends ListExportsQuery {
  tenantId?: string;
}

/**
 * The operator's side: tenants' life cycle, plans, operator keys, the audit log and the support
 * views across tenants. Every write that changes something takes an AuditStamp and records its
 * audit entry (with the state before and after, read in the same transaction) in the same
 * transaction as the change.
 */
export interface OperatorPort {
  /** Tenants by name, after `after` (the last name of the previous page). */
  listTenantsPage(after: string | undefined, limit: number): Promise<Tenant[]>;
  /** Creates a tenant; null when the name is taken. */
  createTenant(name: string, change: TenantChange, stamp: AuditStamp): Promise<Tenant | null>;
  /** Changes a tenant's plan and overrides; null when there is no such tenant. */
  changeTenant(name: string, change: TenantChange, stamp: AuditStamp): Promise<Tenant | null>;
  /** Disables (or enables) a tenant; null when there is none. Recorded even when nothing changed. */
  setTenantDisabled(name: string, disabled: boolean, stamp: AuditStamp): Promise<Tenant | null>;
  /** Ids of a tenant's exports that a cancel can still stop (queued, running). */
  activeExportIds(tenantId: string): Promise<string[]>;
  /**
   * Removes a tenant and everything it owns (exports, parts, idempotency keys, API keys) in one
   * transaction; null when there is none. The object store is the caller's (purge first).
   */
  deleteTenant(name: string, stamp: AuditStamp): Promise<{ exports: number; keys: number } | null>;
  /** Creates a plan; false when the name is taken. */
  createPlan(plan: Plan, stamp: AuditStamp): Promise<boolean>;
  /** Changes some of a plan's limits; null when there is no such plan. */
  changePlan(name: string, limits: Partial<TenantLimits>, stamp: AuditStamp): Promise<Plan | null>;
  insertOperatorKey(key: OperatorKeyRecord, stamp: AuditStamp): Promise<void>;
  findOperatorKeyByPrefix(prefix: string): Promise<OperatorKeyRecord | null>;
  listOperatorKeys(): Promise<OperatorKeyRecord[]>;
  /** Revokes the active operator key with this prefix; false when there is none. */
  revokeOperatorKey(prefix: string, stamp: AuditStamp): Promise<boolean>;
  touchOperatorKey(id: string, now: number): Promise<void>;
  /** Records an entry for a write made through another port (API keys, maintenance, a cancel). */
  appendAudit(entry: AuditEntry): Promise<void>;
  listAudit(query: AuditQuery): Promise<AuditEntry[]>;
  /** Exports of every tenant (or one), newest first, with their parts. */
  listAllExports(query: AllExportsQuery): Promise<ExportRecord[]>;
  /** One export of any tenant, with its parts; null when there is none. */
  findExport(id: string): Promise<ExportRecord | null>;
}

/** A tenant's exports as the API sees them. Every method that reads one takes the tenant id. */
export interface ExportsPort {
  insertExport(record: ExportRecord): Promise<void>;
  /**
   * Calls `listener` with the id of an export whose shown state (status, progress, estimate,
   * attempts, error) any process changed, where the store can tell (PostgreSQL's LISTEN/NOTIFY);
   * with null once a lost connection is back (what changed meanwhile was not heard). Absent:
   * progress streams only poll.
   */
  subscribeToExportChanges?(listener: (exportId: string | null) => void): Promise<void>;
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
  /**
   * The status read: the export and its queue position in one query (null if not found). With
   * `known`, the version of an earlier read of the same export, answers "unchanged" when nothing
   * was committed to the database since (SQLite tells this without reading the row), or when the
   * row and the position are still exactly what that read saw — then nothing is built, and the
   * parts are not read (a part is recorded in the transaction that moves the row's cursor and
   * progress).
   */
  readExport(tenantId: string, id: string): Promise<VersionedExport | null>;
  readExport(
    tenantId: string,
    id: string,
    known: ExportVersion | undefined,
  ): Promise<VersionedExport | "unchanged" | null>;
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

/**
 * Whose endpoint: a tenant's id, or null for a product-wide endpoint (the operator's). Every
 * endpoint read and write names it, so a tenant reaches only its own endpoints.
 */
export type EndpointOwner = string | null;

/** A new endpoint as the store inserts it, its secret sealed (webhooks/secret-box.ts). */
export type NewWebhookEndpoint = WebhookEndpoint & { sealedSecret: string };

/** A change of an endpoint's url, events or description. */
export interface WebhookEndpointChange {
  url?: string;
  events?: ExportEventType[];
  description?: string;
}

/** A delivery with its attempts, newest delivery first (the delivery log). */
export type DeliveryWithAttempts = WebhookDelivery & { log: WebhookAttempt[] };

/** Endpoints, the outbox and the delivery log as the API, the CLI and the operator use them. */
export interface WebhooksPort {
  insertWebhookEndpoint(endpoint: NewWebhookEndpoint): Promise<void>;
  getWebhookEndpoint(owner: EndpointOwner, id: string): Promise<WebhookEndpoint | null>;
  listWebhookEndpoints(owner: EndpointOwner): Promise<WebhookEndpoint[]>;
  /** Returns the endpoint after the change; null when it is not the owner's. */
  updateWebhookEndpoint(
    owner: EndpointOwner,
    id: string,
    change: WebhookEndpointChange,
    now: number,
  ): Promise<WebhookEndpoint | null>;
  /**
   * Enables, or disables (with the reason) an endpoint; disabling abandons its pending
   * deliveries. False when it is not the owner's.
   */
  setWebhookEndpointEnabled(
    owner: EndpointOwner,
    id: string,
    enabled: boolean,
    reason: DisabledReason | null,
    now: number,
  ): Promise<boolean>;
  deleteWebhookEndpoint(owner: EndpointOwner, id: string): Promise<boolean>;
  /** The new sealed secret signs from now on; the old one keeps signing until `previousUntil`. */
  rotateWebhookSecret(
    owner: EndpointOwner,
    id: string,
    sealedSecret: string,
    previousUntil: number,
    now: number,
  ): Promise<boolean>;
  /** Endpoints failing now, or disabled by a 410 or by failing too long (the operator's view). */
  listTroubledWebhookEndpoints(): Promise<WebhookEndpoint[]>;
  /** The config file's product-wide endpoints (ids `config:<name>`), others of the file removed. */
  syncConfigWebhookEndpoints(
    endpoints: {
      id: string;
      url: string;
      events: ExportEventType[];
      description: string;
      sealedSecret: string;
    }[],
    now: number,
  ): Promise<void>;
  getWebhookEvent(id: string): Promise<WebhookEvent | null>;
  /** An event that no export status change made (a test event), with its one delivery, due now. */
  insertWebhookTestEvent(event: WebhookEvent, endpointId: string): Promise<void>;
  /** The endpoint's deliveries, newest first, with every attempt. */
  listEndpointDeliveries(
    endpointId: string,
    query: { before?: string; limit: number },
  ): Promise<DeliveryWithAttempts[]>;
  /** The event's deliveries to the owner's endpoints only, with every attempt. */
  listEventDeliveries(owner: EndpointOwner, eventId: string): Promise<DeliveryWithAttempts[]>;
  /** Makes the event's delivery to the endpoint pending and due now (creating it when there was none). */
  redeliverWebhook(eventId: string, endpointId: string, now: number): Promise<void>;
}

/** A delivery claimed for sending, with what signing and posting it needs. */
export interface ClaimedDelivery {
  id: string;
  eventId: string;
  endpointId: string;
  /** The endpoint's owner: its tenant, or null (product-wide). */
  endpointOwner: string | null;
  /** Failed attempts so far (the schedule's position). */
  attempts: number;
  eventType: EventType;
  tenantId: string | null;
  exportId: string | null;
  eventCreatedAt: number;
  data: string;
  url: string;
  sealedSecret: string;
  sealedPreviousSecret: string | null;
  previousSecretExpiresAt: number | null;
}

/** How an attempt ended, as the deliverer records it. */
export interface AttemptRecord {
  deliveryId: string;
  eventId: string;
  endpointId: string;
  owner: string;
  attempt: WebhookAttempt;
  /** The delivery's state after this attempt, and when to try again (pending only). */
  state: DeliveryState;
  nextAttemptAt: number | null;
}

/** The deliverer's side: claim due deliveries under a lease, record attempts, disable endpoints. */
export interface WebhookQueuePort {
  /** Calls `listener` when a delivery becomes due in any process (PostgreSQL NOTIFY) or in this one. */
  subscribeToWebhooks(
    listener: () => void,
    onConnection?: (connected: boolean, err?: unknown) => void,
  ): Promise<void>;
  claimWebhookDeliveries(lease: Lease, limit: number): Promise<ClaimedDelivery[]>;
  /**
   * Records an attempt and the delivery's new state, only while the lease is held ("lost"
   * otherwise: another deliverer owns it now). `failingSince`: since when the endpoint fails
   * (null after a success).
   */
  recordWebhookAttempt(record: AttemptRecord): Promise<{ check: LeaseCheck; failingSince: number | null }>;
  setWebhookEndpointEnabled: WebhooksPort["setWebhookEndpointEnabled"];
  getWebhookEndpoint: WebhooksPort["getWebhookEndpoint"];
  /** Pending deliveries (the outbox depth gauge). */
  countPendingWebhooks(): Promise<number>;
  /** Forgets finished deliveries (and their log) and events created before `before`. */
  forgetWebhookDeliveries(before: number): Promise<number>;
}

/** Every port and the connection's life cycle. */
export interface MetadataStore
  extends StoreLifecycle,
    TenancyPort,
    ExportsPort,
    JobQueuePort,
    RetentionPort,
    OperatorPort,
    WebhooksPort,
    WebhookQueuePort {}
