/**
 * A dataset as the worker sees it: its descriptor (what clients may ask) and a reader that streams
 * rows in (time, key) order from a cursor, in batches.
 */
import type { DatasetDescriptor } from "../domain/dataset.js";
import type { ExportRequest } from "../domain/export.js";

/** One exported value, already in its final form. JSON columns carry their JSON text. */
export type Cell = string | number | boolean | null;

export interface RowBatch {
  /** Rows in the order of `request.columns`. */
  rows: Cell[][];
  /** Source position after the batch's last row; resuming from it continues with the next row. */
  cursor: string;
  /** Source position right after row `index` of this batch (a part may end inside a batch). */
  rowCursor(index: number): string;
  /** Share of the requested range covered so far, 0–1. */
  position: number;
}

export interface ReadOptions {
  tenantId: string;
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
  estimateRows(tenantId: string, request: ExportRequest, now: number): Promise<number | null>;
  read(options: ReadOptions): AsyncIterable<RowBatch>;
}
