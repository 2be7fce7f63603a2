/**
 * The export pipeline: dataset rows → encoder → compressor → parts cut at `partMaxRows` → object
 * store. It resumes after the last published part (`after` + `startPart`), publishes each part through
 * `onPart` before starting the next, and reports progress through `onProgress`. It knows nothing of
 * leases or statuses: the worker decides what a refused publish means.
 */
import type { ColumnSpec } from "../domain/dataset.js";
import { AppError } from "../domain/errors.js";
import type { ExportPart, ExportRequest } from "../domain/export.js";
import { partObjectKey } from "../domain/naming.js";
import type { Cell, Dataset } from "../sources/types.js";
import type { ObjectStore } from "../storage/types.js";
import { COMPRESSORS } from "./compressors.js";
import { ENCODERS } from "./encoders.js";
import { PartSink } from "./part-sink.js";

export interface PipelineProgress {
  rows: number;
  parts: number;
  /** Share of the range covered, 0–1. */
  position: number;
}

export interface RunExportOptions {
  dataset: Dataset;
  storage: ObjectStore;
  tenantId: string;
  exportId: string;
  /** The claim's attempt number: part keys carry it. */
  attempt: number;
  request: ExportRequest;
  gzipLevel: number;
  /** Index of the first part to write and rows already published before it (resume). */
  startPart: number;
  startRows: number;
  after: string | null;
  signal: AbortSignal;
  now: number;
  onPart(part: ExportPart, cursor: string | null, progress: PipelineProgress): Promise<void>;
  onProgress(progress: PipelineProgress): Promise<void>;
}

export interface RunExportResult {
  rows: number;
  parts: number;
}

/** Thrown for a user error that makes the export fail for good (too_many_rows …). */
export class ExportFailure extends AppError {}

export async function runExport(o: RunExportOptions): Promise<RunExportResult> {
  const { request } = o;
  const columnsByName = new Map(o.dataset.descriptor.columns.map((c) => [c.name, c]));
  const columns = request.columns.map((name) => columnsByName.get(name) as ColumnSpec);
  const encoder = ENCODERS[request.format]({ columns, csv: request.csv });
  const maxRows = o.dataset.descriptor.limits.maxRows;

  let partIndex = o.startPart;
  let totalRows = o.startRows;
  let part: PartSink | null = null;
  let partRows = 0;
  let position = 0;

  const openPart = async () => {
    const key = partObjectKey(o.tenantId, o.exportId, partIndex, o.attempt, request);
    part = await PartSink.open(o.storage, key, encoder.contentType, COMPRESSORS[request.compression](o));
    partRows = 0;
    await part.write(encoder.prelude());
    return part;
  };

  const closePart = async (sink: PartSink, cursor: string | null) => {
    const finished = await sink.finish();
    part = null;
    const published: ExportPart = {
      index: partIndex,
      objectKey: partObjectKey(o.tenantId, o.exportId, partIndex, o.attempt, request),
      rows: partRows,
      ...finished,
    };
    partIndex++;
    await o.onPart(published, cursor, { rows: totalRows, parts: partIndex, position });
  };

  try {
    let cursor = o.after;
    for await (const batch of o.dataset.read({
      tenantId: o.tenantId,
      request,
      after: o.after,
      signal: o.signal,
      now: o.now,
    })) {
      const { rows } = batch;
      let offset = 0;
      while (offset < rows.length) {
        const sink: PartSink = part ?? (await openPart());
        const take = Math.min(rows.length - offset, request.partMaxRows - partRows);
        if (totalRows + take > maxRows) {
          throw new ExportFailure(
            "too_many_rows",
            `The export would pass ${maxRows.toLocaleString("en-US")} rows, the limit of ${request.dataset}. Narrow the range or add filters.`,
          );
        }
        await sink.write(encoder.encode(rows as Cell[][], offset, offset + take));
        offset += take;
        partRows += take;
        totalRows += take;
        if (partRows === request.partMaxRows) {
          // A cut inside the batch resumes after the part's last row; at the batch's end, after the batch.
          position = offset === rows.length ? batch.position : position;
          await closePart(sink, offset === rows.length ? batch.cursor : batch.rowCursor(offset - 1));
        }
      }
      cursor = batch.cursor;
      position = batch.position;
      await o.onProgress({ rows: totalRows, parts: partIndex, position });
    }
    o.signal.throwIfAborted();
    // The last part, or the only one of an empty export (a file with just the header).
    const last: PartSink | null = part ?? (partIndex === 0 ? await openPart() : null);
    if (last) {
      position = 1;
      await closePart(last, cursor);
    }
    return { rows: totalRows, parts: partIndex };
  } catch (err) {
    const open = part as PartSink | null;
    if (open) await open.abort();
    throw err;
  }
}
