/**
 * The manifest of an export (`manifest.json` in its zip archive, `manifest` in its status): per
 * dataset its columns with types, the request that produced it and each part with rows, bytes,
 * SHA-256 and CRC-32 and its path inside the archive; the export's range, zone and creation time; and
 * whether it is complete. Pure and deterministic: the same export always gives the same bytes, so the
 * archive built around it has a fixed length and Range requests over it are stable.
 */
import { datasetItems, type ExportPart, type ExportRecord, isDownloadable } from "./export.js";
import { partFileSuffix } from "./naming.js";
import type { ZipEntry } from "./zip.js";

/** The manifest's name inside the archive; its first entry. */
export const MANIFEST_NAME = "manifest.json";
/** Bumped when a field changes meaning; new fields may appear without it. */
export const MANIFEST_VERSION = 1;

export interface ManifestPart {
  /** The part's index in the export (as in the status and `GET …/download?part=`). */
  index: number;
  /** Path inside the zip archive: `<dataset>/part-NNN.<format>[.gz]`, NNN counting per dataset. */
  path: string;
  rows: number;
  bytes: number;
  sha256: string;
  /** CRC-32 of the stored bytes, 8 lowercase hex digits; null for parts made before it was kept. */
  crc32: string | null;
}

export interface ManifestDataset {
  name: string;
  columns: { name: string; type: string | null }[];
  /** The part of the request that concerns this dataset. */
  request: { filters: Record<string, string[]>; columns: string[] };
  rows: number;
  bytes: number;
  parts: ManifestPart[];
}

export interface Manifest {
  manifest_version: number;
  export_id: string;
  /** The bundle asked for, if any. */
  bundle: string | null;
  created_at: string;
  /** The time range: `from` inclusive, `to` exclusive; `all_time` when none was given. */
  range: { from: string; to: string; all_time: boolean };
  timezone: string;
  format: string;
  compression: string;
  /** True once the export succeeded: every part of every dataset is listed. */
  complete: boolean;
  datasets: ManifestDataset[];
}

/** A part's path in the archive, numbered within its dataset. */
function partPath(dataset: string, numberInDataset: number, suffix: string): string {
  return `${dataset}/part-${String(numberInDataset).padStart(3, "0")}.${suffix}`;
}

/** The manifest of `record` as it stands (complete once it succeeded). */
export function buildManifest(record: ExportRecord): Manifest {
  const { request } = record;
  const suffix = partFileSuffix(request);
  const items = datasetItems(request);
  const byDataset: ExportPart[][] = items.map(() => []);
  for (const part of record.parts) byDataset[part.dataset ?? 0]?.push(part);
  return {
    manifest_version: MANIFEST_VERSION,
    export_id: record.id,
    bundle: request.bundle ?? null,
    created_at: new Date(record.createdAt).toISOString(),
    range: {
      from: new Date(request.from).toISOString(),
      to: new Date(request.to).toISOString(),
      all_time: request.allTime === true,
    },
    timezone: request.timezone,
    format: request.format,
    compression: request.compression,
    complete: isDownloadable(record.status),
    datasets: items.map((item, d) => {
      const parts = byDataset[d] ?? [];
      return {
        name: item.dataset,
        columns: item.columns.map((name, i) => ({ name, type: item.types[i] ?? null })),
        request: { filters: item.filters, columns: item.columns },
        rows: parts.reduce((sum, p) => sum + p.rows, 0),
        bytes: parts.reduce((sum, p) => sum + p.bytes, 0),
        parts: parts.map((p, n) => ({
          index: p.index,
          path: partPath(item.dataset, n, suffix),
          rows: p.rows,
          bytes: p.bytes,
          sha256: p.sha256,
          crc32: p.crc32 === null || p.crc32 === undefined ? null : p.crc32.toString(16).padStart(8, "0"),
        })),
      };
    }),
  };
}

/**
 * The archive's entries: the manifest first (inline), then every part in export order, each with the
 * index of its part in `record.parts` as `partOf` (the caller reads those). Null when a part has no
 * CRC-32 (made before archives existed): such an export has no archive.
 */
export function archiveEntries(
  record: ExportRecord,
  crc32: (data: Buffer) => number,
): { entries: ZipEntry[]; partOf: (number | null)[]; manifest: Buffer } | null {
  const manifest = buildManifest(record);
  const body = Buffer.from(`${JSON.stringify(manifest, null, 2)}\n`, "utf8");
  const entries: ZipEntry[] = [{ name: MANIFEST_NAME, size: body.length, crc32: crc32(body), data: body }];
  const partOf: (number | null)[] = [null];
  const byIndex = new Map(record.parts.map((p, i) => [p.index, i]));
  for (const dataset of manifest.datasets) {
    for (const part of dataset.parts) {
      if (part.crc32 === null) return null;
      entries.push({ name: part.path, size: part.bytes, crc32: Number.parseInt(part.crc32, 16), data: null });
      partOf.push(byIndex.get(part.index) ?? null);
    }
  }
  return { entries, partOf, manifest: body };
}
