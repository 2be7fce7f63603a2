/**
 * The export and its lifecycle. This module owns the state machine: every other module asks
 * `assertTransition` / `fromStatesFor` instead of comparing statuses itself.
 *
 *   queued → running → succeeded → expired
 *   queued | running → failed | canceled
 *   running → queued            (a retryable failure waiting for its next attempt, or a released lease)
 */
import { AppError, type ErrorCode } from "./errors.js";
import { EXPORT_STATUSES, type ExportStatus } from "./status.js";

export { EXPORT_STATUSES, type ExportStatus, STATUS } from "./status.js";

const TRANSITIONS: Record<ExportStatus, readonly ExportStatus[]> = {
  queued: ["running", "canceled", "failed"],
  running: ["queued", "succeeded", "failed", "canceled"],
  succeeded: ["expired"],
  failed: [],
  canceled: [],
  expired: [],
};

export class TransitionError extends Error {
  constructor(
    readonly from: ExportStatus,
    readonly to: ExportStatus,
  ) {
    super(`An export cannot go from ${from} to ${to}.`);
    this.name = "TransitionError";
  }
}

export function canTransition(from: ExportStatus, to: ExportStatus): boolean {
  return TRANSITIONS[from].includes(to);
}

export function assertTransition(from: ExportStatus, to: ExportStatus): void {
  if (!canTransition(from, to)) throw new TransitionError(from, to);
}

/** The statuses from which `to` may be reached; stores put this in the WHERE of their conditional updates. */
export function fromStatesFor(to: ExportStatus): ExportStatus[] {
  return EXPORT_STATUSES.filter((from) => canTransition(from, to));
}

/** Final: no more work will happen (succeeded may still expire, but that is housekeeping). */
export function isFinal(status: ExportStatus): boolean {
  return status !== "queued" && status !== "running";
}

/** Whether a cancel may still stop it (queued or running). */
export function isCancellable(status: ExportStatus): boolean {
  return canTransition(status, "canceled");
}

/** Whether it was canceled: a run that lost its lease to a cancel deletes its files. */
export function isCanceled(status: ExportStatus): boolean {
  return status === "canceled";
}

/** Only a queued export has a place in its tenant's queue. */
export function hasQueuePlace(status: ExportStatus): boolean {
  return status === "queued";
}

/** Whether its files may be downloaded: succeeded, and not yet expired. */
export function isDownloadable(status: ExportStatus): boolean {
  return status === "succeeded";
}

/**
 * Whether its published parts are listed: failed and canceled exports lose their files (and their
 * part rows once purged); the others list what is published, including a queued export resuming
 * after an interrupted run and an expired one (as metadata).
 */
export function listsParts(status: ExportStatus): boolean {
  return status !== "failed" && status !== "canceled";
}

/** Whether the export's error is shown: only a failed export ended on one (a requeued one may carry the last). */
export function showsError(status: ExportStatus): boolean {
  return status === "failed";
}

/**
 * Whether its files may be deleted now: a failed or canceled export (nothing will use them), or a
 * succeeded one, which then expires. A queued or running export's parts are never deleted while it
 * can still succeed, except through a cancel (which makes it canceled first).
 */
export function canBePurged(status: ExportStatus): boolean {
  return status === "failed" || status === "canceled" || canTransition(status, "expired");
}

/**
 * How one run of an export ended (the `outcome` label of exportd_export_run_seconds): the final
 * status the run left the export in, or `requeued` (back in the queue: retryable failure or
 * shutdown) or `lost` (another worker owns it now). Not export statuses: a run outcome.
 */
export const RUN_OUTCOMES = ["succeeded", "failed", "canceled", "requeued", "lost"] as const;
export type RunOutcome = (typeof RUN_OUTCOMES)[number];
/** The run outcomes by name, so callers never spell one. */
export const RunOutcome = {
  succeeded: "succeeded",
  failed: "failed",
  canceled: "canceled",
  requeued: "requeued",
  lost: "lost",
} as const satisfies Record<RunOutcome, RunOutcome>;

/**
 * Why the files of an export cannot be downloaded, or null when they can (succeeded). The download
 * route and the signed-link route both answer with it, so one state gets one answer wherever asked.
 */
export function downloadRefusal(record: { status: ExportStatus }): AppError | null {
  const { status } = record;
  if (isDownloadable(status)) return null;
  if (status === "expired") {
    return new AppError("export_expired", "The export's files were deleted by the retention policy.");
  }
  return new AppError("export_not_ready", `The export is ${status}; files are ready once it succeeded.`, [
    { field: "status", code: status, message: `Current status: ${status}.` },
  ]);
}

export const FORMATS = ["csv", "jsonl"] as const;
export type Format = (typeof FORMATS)[number];
export const COMPRESSIONS = ["gzip", "none"] as const;
export type Compression = (typeof COMPRESSIONS)[number];

export const CSV_NEWLINES = ["crlf", "lf"] as const;
export type CsvNewline = (typeof CSV_NEWLINES)[number];

export interface CsvOptions {
  delimiter: string;
  header: boolean;
  bom: boolean;
  /** Row terminator; exports created before it existed have none and use crlf. */
  newline?: CsvNewline;
  /** Prefix text cells that start with = + - @ tab or CR with a single quote (spreadsheet formula injection). */
  formulaGuard?: boolean;
}

/** The characters that make a spreadsheet read a cell as a formula (OWASP's list). */
export const FORMULA_STARTS = ["=", "+", "-", "@", "\t", "\r"] as const;

export function csvNewline(csv: CsvOptions): string {
  return csv.newline === "lf" ? "\n" : "\r\n";
}

/** A create request after validation: what the worker runs. Times are epoch milliseconds. */
export interface ExportRequest {
  dataset: string;
  from: number;
  to: number;
  /**
   * `to` as the client wrote it ("now", a date or an instant), so the status can say that "now" was
   * asked for; absent on exports created before it was kept.
   */
  toRequested?: string;
  filters: Record<string, string[]>;
  columns: string[];
  format: Format;
  compression: Compression;
  csv: CsvOptions;
  timezone: string;
  partMaxRows: number;
  /**
   * The datasets of a multi-dataset export (`datasets` or `bundle` in the create body), run in this
   * order; `dataset`, `filters` and `columns` above repeat the first one. Absent on single-dataset
   * exports created before archives existed; present (one item) on newer ones.
   */
  items?: DatasetItem[];
  /** The bundle the datasets came from (`bundle` in the create body), if any. */
  bundle?: string;
  /** `zip`: the export is also downloadable as one zip of every part with a manifest (archives.md). */
  archive?: ArchiveKind;
  /** No time range: a bundle the operator allows all-time exports of (`from`/`to` span every time). */
  allTime?: boolean;
  /** Overall limits of a multi-dataset export (each dataset's own limits apply too). */
  totalLimits?: { maxRows: number; maxBytes: number };
}

export const ARCHIVE_KINDS = ["none", "zip"] as const;
export type ArchiveKind = (typeof ARCHIVE_KINDS)[number];

/** One dataset of an export, as validated: its columns' types are kept for the manifest. */
export interface DatasetItem {
  dataset: string;
  filters: Record<string, string[]>;
  columns: string[];
  /** The type of each of `columns`, as the dataset declared it when the export was created. */
  types: string[];
}

/** The datasets an export runs, in order: its items, or the request itself for an older export. */
export function datasetItems(request: ExportRequest): DatasetItem[] {
  return (
    request.items ?? [
      { dataset: request.dataset, filters: request.filters, columns: request.columns, types: [] },
    ]
  );
}

/** The single-dataset request the pipeline runs for item `index` of an export. */
export function itemRequest(request: ExportRequest, index: number): ExportRequest {
  const item = datasetItems(request)[index];
  if (!item) throw new Error(`export has no dataset ${index}`);
  return { ...request, dataset: item.dataset, filters: item.filters, columns: item.columns };
}

/** Whether the export can be downloaded as one zip archive. */
export function hasArchive(request: ExportRequest): boolean {
  return request.archive === "zip";
}

export interface ExportError {
  code: ErrorCode;
  message: string;
  retryable: boolean;
}

export interface ExportPart {
  /** Across the whole export: 0, 1, 2 … whatever dataset a part belongs to. */
  index: number;
  objectKey: string;
  rows: number;
  bytes: number;
  sha256: string;
  /** Index of the part's dataset in `datasetItems(request)` (0 for single-dataset exports). */
  dataset?: number;
  /** Whether it is the last part of its dataset (a resumed run then starts the next dataset). */
  lastOfDataset?: boolean;
  /** CRC-32 (IEEE) of the stored bytes, for the zip archive; null for parts made before it was kept. */
  crc32?: number | null;
}

export interface ExportProgress {
  /** 0–100, only moves forward. */
  percent: number;
  rows: number;
  parts: number;
  /** Index of the dataset running now (multi-dataset exports); absent while it is 0. */
  dataset?: number;
}

/**
 * Where a run of an export starts: the dataset (index into datasetItems), the part index, and the
 * cursor inside the dataset (null: its beginning). Decided by the last published part: a part that
 * ended its dataset moves on to the next one; any other continues its dataset after `cursor`.
 */
export function resumePoint(
  parts: readonly ExportPart[],
  cursor: string | null,
): { dataset: number; part: number; cursor: string | null } {
  const last = parts[parts.length - 1];
  if (!last) return { dataset: 0, part: 0, cursor: null };
  const dataset = last.dataset ?? 0;
  if (last.lastOfDataset) return { dataset: dataset + 1, part: parts.length, cursor: null };
  return { dataset, part: parts.length, cursor };
}

export interface ExportRecord {
  id: string;
  tenantId: string;
  dataset: string;
  status: ExportStatus;
  request: ExportRequest;
  createdAt: number;
  startedAt: number | null;
  finishedAt: number | null;
  /** When the files are deleted (succeeded exports only). */
  expiresAt: number | null;
  progress: ExportProgress;
  estimatedRows: number | null;
  error: ExportError | null;
  parts: ExportPart[];
  /**
   * Runs that ended in a failure of the export's own (or are running now): what
   * EXPORTD_MAX_ATTEMPTS caps. A crash of the worker running it is no failed attempt.
   */
  attempts: number;
  /**
   * Claims of this export away from a worker that stopped heartbeating (crash, kill -9, OOM) since
   * it last published a part: what EXPORTD_MAX_TAKEOVERS caps, so an export that kills its worker
   * every time ends instead of crashing workers forever.
   */
  takeovers: number;
  /** Claims so far, of any kind: a run's sequence number, carried by its part keys. */
  runs: number;
  /** Source position after the last published part: where a resumed run continues. */
  cursor: string | null;
  /** Earliest time a queued export may be claimed (back-off after a retryable failure). */
  runAfter: number;
  /**
   * Who created it (AuthContext's actor: `key:<prefix>`, `token:<sub>`, `operator:<prefix>`); null
   * for exports created before it was kept.
   */
  createdBy: string | null;
}

/** How long an Idempotency-Key is honoured. */
export const IDEMPOTENCY_KEY_TTL_MS = 24 * 3_600_000;

/** A freshly created export: queued, due now, nothing done yet. */
export function newExport(init: {
  id: string;
  tenantId: string;
  request: ExportRequest;
  now: number;
  estimatedRows: number | null;
  createdBy?: string | null;
}): ExportRecord {
  return {
    id: init.id,
    tenantId: init.tenantId,
    // A bundle's exports are listed under the bundle's name; a list of datasets under its first.
    dataset: init.request.bundle ?? init.request.dataset,
    status: "queued",
    request: init.request,
    createdAt: init.now,
    startedAt: null,
    finishedAt: null,
    expiresAt: null,
    progress: { percent: 0, rows: 0, parts: 0 },
    estimatedRows: init.estimatedRows,
    error: null,
    parts: [],
    attempts: 0,
    takeovers: 0,
    runs: 0,
    cursor: null,
    runAfter: init.now,
    createdBy: init.createdBy ?? null,
  };
}

/** Progress never moves backwards, whatever a resumed run reports. */
export function advanceProgress(current: ExportProgress, next: ExportProgress): ExportProgress {
  return {
    percent: Math.max(current.percent, Math.min(100, next.percent)),
    rows: Math.max(current.rows, next.rows),
    parts: Math.max(current.parts, next.parts),
    // Only multi-dataset exports move it; single-dataset progress keeps its three fields.
    ...(current.dataset || next.dataset
      ? { dataset: Math.max(current.dataset ?? 0, next.dataset ?? 0) }
      : {}),
  };
}

/** Exponential back-off before attempt `attempt + 1`, capped. */
export function retryDelayMs(attempt: number, baseMs: number, capMs = 5 * 60_000): number {
  return Math.min(capMs, baseMs * 2 ** Math.max(0, attempt - 1));
}

/** Final statuses whose files go at once, not after the retention period (nothing to download). */
export const DISCARDED_STATUSES: readonly ExportStatus[] = ["failed", "canceled"];
