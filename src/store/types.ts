/**
 * The metadata store: tenants, API keys, exports (the export row is also the job) and their parts.
 * One interface; SQLite is the embedded default. Every method that touches customer data takes the
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

export interface Tenant {
  id: string;
  name: string;
  createdAt: number;
}

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

/** Why a worker-side write was refused: the export is no longer ours to write. */
export type LeaseCheck = "ok" | "lost";

export interface MetadataStore {
  ping(): Promise<void>;
  close(): Promise<void>;

  ensureTenant(name: string, now: number): Promise<Tenant>;
  findTenantByName(name: string): Promise<Tenant | null>;
  getTenant(id: string): Promise<Tenant | null>;
  insertApiKey(key: ApiKeyRecord): Promise<void>;
  findApiKeyByPrefix(prefix: string): Promise<ApiKeyRecord | null>;
  listApiKeys(tenantId: string): Promise<ApiKeyRecord[]>;
  revokeApiKey(prefix: string, now: number): Promise<boolean>;
  touchApiKey(id: string, now: number): Promise<void>;

  insertExport(record: ExportRecord): Promise<void>;
  getExport(tenantId: string, id: string): Promise<ExportRecord | null>;
  listExports(tenantId: string, query: ListExportsQuery): Promise<ExportRecord[]>;
  /** Cancels a queued or running export. Returns the export after the attempt (null if not found). */
  cancelExport(
    tenantId: string,
    id: string,
    now: number,
  ): Promise<{ record: ExportRecord; canceled: boolean } | null>;

  /** Takes the oldest runnable export: queued and due, or running with an expired lease. */
  claimExport(lease: Lease): Promise<ExportRecord | null>;
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

  /** Exports whose files must go: succeeded past expiry, or failed/canceled with files not yet purged. */
  listExportsToPurge(now: number, limit: number): Promise<ExportRecord[]>;
  /** Marks files deleted: a succeeded export becomes expired; parts are kept as metadata. */
  markPurged(id: string, now: number): Promise<void>;
  /** Deletes exports created before `createdBefore`, parts included. Returns how many. */
  forgetExports(createdBefore: number, limit: number): Promise<number>;
}
