/** Names of stored objects and of the files a client downloads. */
import type { ExportRequest } from "./export.js";
import { localDate } from "./time.js";

const EXTENSIONS = { csv: "csv", jsonl: "jsonl" } as const;

export function partFileSuffix(request: ExportRequest): string {
  return `${EXTENSIONS[request.format]}${request.compression === "gzip" ? ".gz" : ""}`;
}

function partNumber(index: number): string {
  return String(index).padStart(3, "0");
}

/**
 * Where a part lives in the object store. Tenant first, so one prefix holds a tenant's files. The
 * run (the claim's sequence number, `ExportRecord.runs`) is part of the key: every claim, takeovers
 * included, gets a new one, so a worker that lost its lease can never overwrite the new owner's part.
 */
export function partObjectKey(
  tenantId: string,
  exportId: string,
  index: number,
  run: number,
  request: ExportRequest,
): string {
  return `${exportPrefix(tenantId, exportId)}part-${partNumber(index)}.r${run}.${partFileSuffix(request)}`;
}

export function exportPrefix(tenantId: string, exportId: string): string {
  return `${tenantPrefix(tenantId)}${exportId}/`;
}

/** Where every object of a tenant lives (each export's prefix is under it): what a tenant's deletion removes. */
export function tenantPrefix(tenantId: string): string {
  return `exports/${tenantId}/`;
}

/** The export an object key belongs to (the inverse of exportPrefix); null for a key outside every export. */
export function exportOfKey(key: string): { tenantId: string; exportId: string } | null {
  const match = /^exports\/([^/]+)\/([^/]+)\//.exec(key);
  return match ? { tenantId: match[1] as string, exportId: match[2] as string } : null;
}

/** The download name, e.g. events_2026-11-01_2026-11-23.part-000.csv.gz: from and to as dates in the request's zone. */
export function partDownloadName(request: ExportRequest, index: number): string {
  const from = localDate(request.from, request.timezone);
  const to = localDate(request.to, request.timezone);
  return `${request.dataset}_${from}_${to}.part-${partNumber(index)}.${partFileSuffix(request)}`;
}

/** Marks an upload in progress in the local object store: no key may contain it. */
export const UPLOAD_MARK = ".upload-";
/** Keys are relative paths of plain segments: no empty, dot-leading or escaping segment can reach a disk. */
const SAFE_KEY = /^(?:[A-Za-z0-9_-][A-Za-z0-9._-]*\/)*[A-Za-z0-9_-][A-Za-z0-9._-]*$/;

/**
 * Whether a key may name a stored object: at most 512 characters of plain path segments, never an
 * upload in progress. Every key exportd makes passes; a key from a request (a /files link) is
 * checked with it before it reaches the object store.
 */
export function isSafeKey(key: string): boolean {
  return key.length <= 512 && SAFE_KEY.test(key) && !key.includes(UPLOAD_MARK);
}

/** The name under which an export's zip archive is linked; no object is stored under it. */
export const ARCHIVE_NAME = "archive.zip";

/** The key a signed link to an export's zip archive names (served by assembling the parts). */
export function archiveKey(tenantId: string, exportId: string): string {
  return `${exportPrefix(tenantId, exportId)}${ARCHIVE_NAME}`;
}

/** The export whose archive a key names, or null when the key names no archive. */
export function archiveOfKey(key: string): { tenantId: string; exportId: string } | null {
  const match = /^exports\/([^/]+)\/([^/]+)\/archive\.zip$/.exec(key);
  return match ? { tenantId: match[1] as string, exportId: match[2] as string } : null;
}

/** The archive's download name: e.g. account_2026-11-01_2026-11-23.zip (bundle, or first dataset). */
export function archiveDownloadName(request: ExportRequest): string {
  const from = request.allTime ? "all" : localDate(request.from, request.timezone);
  const to = localDate(request.to, request.timezone);
  return `${request.bundle ?? request.dataset}_${from}_${to}.zip`;
}
