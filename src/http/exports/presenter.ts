/** The export resource as the API answers it — never a raw store record. */

import { crc32 } from "../../domain/crc32.js";
import type { DatasetDescriptor } from "../../domain/dataset.js";
import {
  datasetItems,
  type ExportRecord,
  hasArchive,
  isCancellable,
  isDownloadable,
  itemRequest,
  listsParts,
  showsError,
} from "../../domain/export.js";
import { archiveEntries, buildManifest } from "../../domain/manifest.js";
import { archiveDownloadName, archiveKey, partDownloadName } from "../../domain/naming.js";
import { zipLayout } from "../../domain/zip.js";
import type { PartLinks } from "../part-links.js";

const iso = (ms: number | null): string | null => (ms === null ? null : new Date(ms).toISOString());

/**
 * Parts are listed while running and after success; links are signed only for a succeeded export
 * and only when `links` is given — routes pass null for keys without `exports:download`, which see
 * each part's rows, bytes and sha256 with `url` and `url_expires_at` null.
 */
export async function presentExport(
  record: ExportRecord,
  links: PartLinks | null,
  queuePosition: number | null,
) {
  const showParts = listsParts(record.status);
  const signed = isDownloadable(record.status) && links !== null;
  const { request } = record;
  const items = datasetItems(request);
  const multi = items.length > 1;
  return {
    id: record.id,
    object: "export" as const,
    dataset: record.dataset,
    status: record.status,
    cancellable: isCancellable(record.status),
    created_at: iso(record.createdAt) as string,
    started_at: iso(record.startedAt),
    finished_at: iso(record.finishedAt),
    expires_at: iso(record.expiresAt),
    request: {
      from: iso(request.from) as string,
      to: iso(request.to) as string,
      to_requested: request.toRequested ?? null,
      filters: request.filters,
      columns: request.columns,
      format: request.format,
      compression: request.compression,
      csv: {
        delimiter: request.csv.delimiter,
        header: request.csv.header,
        bom: request.csv.bom,
        newline: request.csv.newline ?? "crlf",
        formula_guard: request.csv.formulaGuard ?? false,
      },
      timezone: request.timezone,
      part_max_rows: request.partMaxRows,
      datasets: items.map((item) => ({ name: item.dataset, filters: item.filters, columns: item.columns })),
      bundle: request.bundle ?? null,
      all_time: request.allTime === true,
      archive: request.archive ?? "none",
    },
    progress: {
      percent: record.progress.percent,
      rows: record.progress.rows,
      parts: record.progress.parts,
      estimated_rows: record.estimatedRows,
      // Bytes of the published parts, and the dataset running (or last run) of a multi-dataset export.
      bytes: record.parts.reduce((sum, p) => sum + p.bytes, 0),
      dataset: multi ? (items[record.progress.dataset ?? 0]?.dataset ?? null) : null,
    },
    attempts: record.attempts,
    created_by: record.createdBy,
    queue_position: queuePosition,
    error: record.error && showsError(record.status) ? record.error : null,
    parts: showParts
      ? await Promise.all(
          record.parts.map(async (part) => {
            const filename = partDownloadName(itemRequest(request, part.dataset ?? 0), part.index);
            const link = signed ? await links.sign(part.objectKey, filename) : null;
            return {
              index: part.index,
              dataset: items[part.dataset ?? 0]?.dataset ?? request.dataset,
              rows: part.rows,
              bytes: part.bytes,
              sha256: part.sha256,
              filename,
              url: link?.url ?? null,
              url_expires_at: link ? iso(link.expiresAt) : null,
            };
          }),
        )
      : [],
    archive: hasArchive(request) ? await presentArchive(record, signed ? links : null) : null,
    manifest: hasArchive(request) && showParts ? buildManifest(record) : null,
  };
}

/**
 * The zip archive of an export that has one: its name, and once succeeded its size and a signed
 * link to exportd's /files route (for keys with exports:download, whatever the object store).
 */
async function presentArchive(record: ExportRecord, links: PartLinks | null) {
  const filename = archiveDownloadName(record.request);
  const ready = isDownloadable(record.status);
  const entries = ready ? archiveEntries(record, (b) => crc32(b, 0)) : null;
  const link =
    entries && links?.archives
      ? await links.signArchive(archiveKey(record.tenantId, record.id), filename)
      : null;
  return {
    filename,
    bytes: entries ? zipLayout(entries.entries, record.createdAt).size : null,
    url: link?.url ?? null,
    url_expires_at: link ? iso(link.expiresAt) : null,
  };
}

/**
 * A dry run's answer: the estimate against the dataset's limits, or with several datasets against
 * the whole export's (`whole`: the bundle's or first dataset's name and the overall limits).
 */
export function presentDryRun(
  d: DatasetDescriptor,
  estimatedRows: number | null,
  whole: { name: string; limits: { maxRows: number; maxBytes: number } } | null = null,
) {
  const limits = whole?.limits ?? d.limits;
  return {
    object: "dry_run" as const,
    dataset: whole?.name ?? d.name,
    estimated_rows: estimatedRows,
    exceeds_limits: estimatedRows !== null && estimatedRows > limits.maxRows,
    limits: { max_rows: limits.maxRows, max_bytes: limits.maxBytes },
  };
}
