/**
 * A dataset as the worker sees it: its descriptor (what clients may ask) and a reader that streams
 * rows in (time, key) order from a cursor, in batches. A batch holds either cells, which the
 * pipeline encodes, or bytes the source already encoded in the requested format (PostgreSQL's COPY).
 */
import type { DatasetDescriptor } from "../domain/dataset.js";
import type { ExportRequest } from "../domain/export.js";

/** One exported value, already in its final form. JSON columns carry their JSON text; bigints exact integers. */
export type Cell = string | number | bigint | boolean | null;

interface BatchPosition {
  /** Source position after the batch's last row; resuming from it continues with the next row. */
  cursor: string;
  /** Source position right after row `index` of this batch (a part may end inside a batch). */
  rowCursor(index: number): string;
  /** Share of the requested range covered so far, 0–1. */
  position: number;
}

/** Rows as cells, in the order of `request.columns`; the pipeline's encoders turn them into text. */
export interface CellBatch extends BatchPosition {
  kind: "cells";
  rows: Cell[][];
  /**
   * CSV only: columns (by index) whose text cells already have every `"` doubled, done by the
   * source where it is cheaper (SQLite's replace()); the encoder then only decides whether to wrap them.
   */
  quotesDoubled?: readonly boolean[];
}

/**
 * Rows already encoded in the request's format and CSV options, back to back (no header, no BOM:
 * the pipeline writes those at the start of every part). `rowEnds[i]` is the byte offset just after
 * row i, so the pipeline can still cut parts at exact row counts.
 */
export interface EncodedBatch extends BatchPosition {
  kind: "encoded";
  bytes: Buffer;
  rowEnds: ArrayLike<number>;
}

export type RowBatch = CellBatch | EncodedBatch;

export function batchRowCount(batch: RowBatch): number {
  return batch.kind === "cells" ? batch.rows.length : batch.rowEnds.length;
}

/** Who is exporting: SQL datasets scope every query to the tenant's name. */
export interface TenantRef {
  id: string;
  name: string;
}

export interface ReadOptions {
  tenant: TenantRef;
  request: ExportRequest;
  /** Resume after this position; null starts at the beginning of the range. */
  after: string | null;
  signal: AbortSignal;
  /** Reading stops at this instant even if the range goes on (rows after it do not exist yet). */
  now: number;
}

export interface Dataset {
  readonly descriptor: DatasetDescriptor;
  /** Rows the request will produce, exact or estimated; null when unknown. */
  estimateRows(tenant: TenantRef, request: ExportRequest, now: number): Promise<number | null>;
  read(options: ReadOptions): AsyncIterable<RowBatch>;
}
