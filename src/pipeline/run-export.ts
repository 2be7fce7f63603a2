/**
 * The export pipeline: dataset rows → encoder → compressor → parts cut at `partMaxRows` → object
 * store. It resumes after the last published part (`after` + `startPart`), publishes each part through
 * `onPart` before starting the next, and reports progress through `onProgress`. It knows nothing of
 * leases or statuses: the worker decides what a refused publish means.
 */
import type { ColumnSpec } from "../domain/dataset.js";
import { ExportFailure } from "../domain/errors.js";
import type { ExportPart, ExportRequest } from "../domain/export.js";
import { partObjectKey } from "../domain/naming.js";
import type { ObjectStore } from "../object-store/types.js";
import { batchRowCount, type Dataset, type RowBatch, type TenantRef } from "../sources/types.js";
import { COMPRESSORS } from "./compressors.js";
import { ENCODERS, type Encoder } from "./encoders.js";
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
  tenant: TenantRef;
  exportId: string;
  /** The claim's run number (`ExportRecord.runs`): part keys carry it. */
  run: number;
  request: ExportRequest;
  gzipLevel: number;
  /** Index of the first part to write and rows already published before it (resume). */
  startPart: number;
  startRows: number;
  /** Stored bytes of the published parts (resume), counted towards `maxBytes`. */
  startBytes: number;
  /**
   * Multi-dataset exports: the index of this dataset among the export's (carried by each part), and
   * the export's overall limits with what the datasets before this one (and this one's published
   * parts) already used. Absent: a single-dataset export, dataset 0, its own limits only.
   */
  multi?: {
    dataset: number;
    maxRows: number;
    maxBytes: number;
    startRows: number;
    startBytes: number;
    /** Whether this dataset already has published parts (a resumed run inside it). */
    resumed: boolean;
  };
  after: string | null;
  signal: AbortSignal;
  /**
   * How long the source may deliver nothing (the pipeline waiting on its next batch, not the other
   * way round) before the read is aborted with SourceStalledError.
   */
  sourceStallMs: number;
  now: number;
  onPart(part: ExportPart, cursor: string | null, progress: PipelineProgress): Promise<void>;
  onProgress(progress: PipelineProgress): Promise<void>;
}

export interface RunExportResult {
  rows: number;
  parts: number;
}

/** Thrown for a failure that makes the export fail for good (too_many_rows, source_error …). */
export { ExportFailure };

/** A source read that delivered nothing for `stallMs` (a frozen connection, a source that hangs). */
export class SourceStalledError extends Error {
  constructor(readonly stallMs: number) {
    super(`the source delivered no data for ${Math.round(stallMs / 1000)} s`);
    this.name = "SourceStalledError";
  }
}

/**
 * The source's batches, failing with SourceStalledError when one takes longer than `stallMs` to
 * come. Only the time spent waiting on the source counts; on a stall the read's `signal` is aborted
 * with the error, so the source drops its connection instead of leaving it hanging.
 */
async function* guardStall(
  open: (signal: AbortSignal) => AsyncIterable<RowBatch>,
  parent: AbortSignal,
  stallMs: number,
): AsyncIterable<RowBatch> {
  const stall = new AbortController();
  const signal = AbortSignal.any([parent, stall.signal]);
  const source = open(signal)[Symbol.asyncIterator]();
  let done = false;
  try {
    for (;;) {
      let timer: NodeJS.Timeout | undefined;
      const stalled = new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
          const err = new SourceStalledError(stallMs);
          stall.abort(err);
          reject(err);
        }, stallMs);
      });
      let next: IteratorResult<RowBatch>;
      try {
        next = await Promise.race([source.next(), stalled]);
      } finally {
        clearTimeout(timer);
      }
      if (next.done) {
        done = true;
        return;
      }
      yield next.value;
    }
  } finally {
    // Stopped early: let the source clean up (release its connection). A stalled source's pending
    // read settles only once its connection is dropped, so that clean-up is not waited on.
    if (!done && stall.signal.aborted) void Promise.resolve(source.return?.()).catch(() => undefined);
    else if (!done) await source.return?.();
  }
}

/**
 * Rows `start` to `end` (exclusive) of a batch, encoded: by the encoder, or as the source encoded them.
 * The encoder's text becomes bytes here, once: counting its UTF-8 length and then letting the
 * compressor convert it again would walk the whole batch twice.
 */
function slice(batch: RowBatch, encoder: Encoder, start: number, end: number): Buffer {
  if (batch.kind === "cells") {
    return Buffer.from(encoder.encode(batch.rows, start, end, batch.quotesDoubled), "utf8");
  }
  const from = start === 0 ? 0 : (batch.rowEnds[start - 1] as number);
  return batch.bytes.subarray(from, batch.rowEnds[end - 1] as number);
}

export async function runExport(o: RunExportOptions): Promise<RunExportResult> {
  const { request } = o;
  const columnsByName = new Map(o.dataset.descriptor.columns.map((c) => [c.name, c]));
  const columns = request.columns.map((name) => columnsByName.get(name) as ColumnSpec);
  const encoder = ENCODERS[request.format]({ columns, csv: request.csv });
  const { maxRows, maxBytes } = o.dataset.descriptor.limits;
  const datasetIndex = o.multi?.dataset ?? 0;
  // The whole export's limits, counted from what earlier datasets used (single: the dataset's own).
  const overall = o.multi ?? { maxRows, maxBytes, startRows: o.startRows, startBytes: o.startBytes };
  let overallRows = overall.startRows;
  let overallBytes = overall.startBytes;
  // Bytes of encoded data before compression: the same whatever the compression, so the limit is too.
  // A resumed run counts the published parts by their stored size: without compression that is the
  // data plus each part's header row; with gzip it is less than the data, so the limit bites later.
  let totalBytes = o.startBytes;

  let partIndex = o.startPart;
  let totalRows = o.startRows;
  let part: PartSink | null = null;
  let partRows = 0;
  let position = 0;

  const openPart = async () => {
    // One batch may hold many parts' rows: notice a cancel or shutdown before starting each part.
    o.signal.throwIfAborted();
    const key = partObjectKey(o.tenant.id, o.exportId, partIndex, o.run, request);
    part = await PartSink.open(o.storage, key, COMPRESSORS[request.compression](o));
    partRows = 0;
    await part.write(encoder.prelude());
    return part;
  };

  const closePart = async (sink: PartSink, cursor: string | null, lastOfDataset: boolean) => {
    const finished = await sink.finish();
    part = null;
    const published: ExportPart = {
      index: partIndex,
      objectKey: partObjectKey(o.tenant.id, o.exportId, partIndex, o.run, request),
      rows: partRows,
      ...finished,
      dataset: datasetIndex,
      lastOfDataset,
    };
    partIndex++;
    await o.onPart(published, cursor, { rows: totalRows, parts: partIndex, position });
  };

  try {
    let cursor = o.after;
    const batches = guardStall(
      (signal) => o.dataset.read({ tenant: o.tenant, request, after: o.after, signal, now: o.now }),
      o.signal,
      o.sourceStallMs,
    );
    for await (const batch of batches) {
      const count = batchRowCount(batch);
      let offset = 0;
      while (offset < count) {
        const sink: PartSink = part ?? (await openPart());
        const take = Math.min(count - offset, request.partMaxRows - partRows);
        if (totalRows + take > maxRows) {
          throw new ExportFailure(
            "too_many_rows",
            `The export would pass ${maxRows.toLocaleString("en-US")} rows, the limit of ${request.dataset}. Narrow the range or add filters.`,
          );
        }
        if (overallRows + take > overall.maxRows) {
          throw new ExportFailure(
            "too_many_rows",
            `The export's datasets together would pass ${overall.maxRows.toLocaleString("en-US")} rows, the limit of the whole export. Narrow the range, add filters or export fewer datasets.`,
          );
        }
        const data = slice(batch, encoder, offset, offset + take);
        totalBytes += data.length;
        overallBytes += data.length;
        if (totalBytes > maxBytes) {
          throw new ExportFailure(
            "too_much_data",
            `The export would pass ${maxBytes.toLocaleString("en-US")} bytes (before compression), the limit of ${request.dataset}. Narrow the range, the filters or the columns.`,
          );
        }
        if (overallBytes > overall.maxBytes) {
          throw new ExportFailure(
            "too_much_data",
            `The export's datasets together would pass ${overall.maxBytes.toLocaleString("en-US")} bytes (before compression), the limit of the whole export. Narrow the range, the filters, the columns or the datasets.`,
          );
        }
        await sink.write(data);
        offset += take;
        partRows += take;
        totalRows += take;
        overallRows += take;
        if (partRows === request.partMaxRows) {
          // A cut inside the batch resumes after the part's last row; at the batch's end, after the batch.
          position = offset === count ? batch.position : position;
          await closePart(sink, offset === count ? batch.cursor : batch.rowCursor(offset - 1), false);
        }
      }
      cursor = batch.cursor;
      position = batch.position;
      await o.onProgress({ rows: totalRows, parts: partIndex, position });
    }
    o.signal.throwIfAborted();
    // The last part, or the only one of an empty dataset (a file with just the header). A dataset
    // that ended exactly at a cut has its last part published already, not marked as its last: a
    // resume reads on from its cursor, finds nothing, and goes on to the next dataset.
    const hasParts = partIndex > o.startPart || (o.multi ? o.multi.resumed : o.startPart > 0);
    const last: PartSink | null = part ?? (hasParts ? null : await openPart());
    if (last) {
      position = 1;
      await closePart(last, cursor, true);
    }
    return { rows: totalRows, parts: partIndex };
  } catch (err) {
    const open = part as PartSink | null;
    if (open) await open.abort();
    throw err;
  }
}
