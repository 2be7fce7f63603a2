/**
 * Reading a tenant's exports for the API: one export (final ones cached for a second, the others
 * read every time but rebuilt only when their row changed), a page of them, and a queued export's
 * place in the queue.
 */
import { AppError, invalidRequest } from "../domain/errors.js";
import {
  downloadRefusal,
  type ExportPart,
  type ExportRecord,
  hasQueuePlace,
  isFinal,
} from "../domain/export.js";
import { isUuid } from "../domain/ids.js";
import type { ExportsPort, ListExportsQuery, VersionedExport } from "../metadata/types.js";
import { TtlCache } from "./ttl-cache.js";

const FINAL_EXPORT_CACHE_MS = 1_000;
/**
 * How long the last read of a queued or running export is kept to compare the next read with. Only
 * a bound on memory: every read checks the row, so a longer time never makes an answer staler.
 */
const LIVE_EXPORT_KEEP_MS = 10_000;

export class ExportReader {
  // A final export changes only when the sweeper expires it, so it is read again at most once a
  // second; queued and running ones are read every time, so progress is never stale.
  private readonly finalExports = new TtlCache<ExportRecord>(FINAL_EXPORT_CACHE_MS);
  // The last read of each queued or running export: while its row (and queue position) reads the
  // same, `find` answers that same object, so callers' caches keyed on it (the serialized
  // document) stay valid exactly as long as the export does not change.
  private readonly liveExports = new TtlCache<VersionedExport>(LIVE_EXPORT_KEEP_MS);

  constructor(
    private readonly exports: ExportsPort,
    private readonly clock: () => number,
  ) {}

  /**
   * The tenant's export. Throws AppError `not_found` (also for an id that is no UUID). A final
   * export may be the same object for a second; a queued or running one is the same object for as
   * long as it reads unchanged. Callers may key caches of their own on it, and must not change it.
   */
  async find(tenantId: string, id: string): Promise<ExportRecord | VersionedExport> {
    const cacheKey = `${tenantId}/${id}`;
    const now = this.clock();
    const cached = this.finalExports.get(cacheKey, now);
    if (cached) return cached;
    if (!isUuid(id)) throw new AppError("not_found", "No export with this id.");
    // The status read brings the queue position along (one query), and tells whether anything
    // changed since the last read.
    const last = this.liveExports.get(cacheKey, now);
    const read = await this.exports.readExport(tenantId, id, last?.version);
    if (read === "unchanged") return last as VersionedExport;
    if (!read) {
      this.liveExports.delete(cacheKey);
      throw new AppError("not_found", "No export with this id.");
    }
    if (isFinal(read.status)) {
      this.liveExports.delete(cacheKey);
      this.finalExports.set(cacheKey, read, now);
    } else this.liveExports.set(cacheKey, read, now);
    return read;
  }

  /**
   * The part of the tenant's export to download: `index`, which may be left out only when the export
   * has one part. Throws AppError `not_found`, `export_not_ready`, `export_expired` (downloadRefusal)
   * or `invalid_request` (part required or out of range).
   */
  async partToDownload(
    tenantId: string,
    id: string,
    index: number | undefined,
  ): Promise<{ record: ExportRecord; part: ExportPart }> {
    const record = await this.find(tenantId, id);
    const refusal = downloadRefusal(record);
    if (refusal) throw refusal;
    if (index === undefined && record.parts.length > 1) {
      throw invalidRequest([
        {
          field: "part",
          code: "required",
          message: `The export has ${record.parts.length} parts; choose one.`,
        },
      ]);
    }
    const part = record.parts[index ?? 0];
    if (!part) {
      throw invalidRequest([
        {
          field: "part",
          code: "out_of_range",
          message: `Parts are numbered 0 to ${record.parts.length - 1}.`,
        },
      ]);
    }
    return { record, part };
  }

  /** Newest first; `query.before` is an export id (the last of the previous page). */
  list(tenantId: string, query: ListExportsQuery): Promise<ExportRecord[]> {
    return this.exports.listExports(tenantId, query);
  }

  /**
   * Only a queued export has a place in the queue; asking for the others costs a query for nothing.
   * An export read with `find` already carries it.
   */
  queuePosition(record: ExportRecord | VersionedExport): Promise<number | null> | number | null {
    if ("queuePosition" in record) return record.queuePosition;
    return hasQueuePlace(record.status) ? this.exports.queuePosition(record.tenantId, record.id) : null;
  }
}
