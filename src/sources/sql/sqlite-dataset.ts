/**
 * A dataset in a SQLite file. Rows are iterated with better-sqlite3 (`raw` arrays, `safeIntegers` so
 * integers past 2^53 stay exact) and handed to the pipeline in batches of cells, which its encoders
 * turn into one large chunk per batch. Times are stored as integer epoch milliseconds.
 *
 * Each read and each estimate opens its own read-only connection: an open iterator keeps a
 * better-sqlite3 connection busy, and two exports of one file may run at once.
 */
import Database from "better-sqlite3";
import type { DatasetConfig, SqliteSourceConfig } from "../../config/file.js";
import type { ColumnType, FilterType } from "../../domain/dataset.js";
import type { ExportRequest } from "../../domain/export.js";
import { TimestampFormatter } from "../../domain/time.js";
import type { Cell, CellBatch, Dataset, ReadOptions, TenantRef } from "../types.js";
import {
  countQuery,
  decodeCursor,
  encodeCursor,
  placeholders,
  positionAt,
  type QueryScope,
  quoteIdent,
  scopeOf,
  selectQuery,
} from "./build-query.js";
import { chosenColumns, sqlDescriptor } from "./descriptor.js";

const BATCH_ROWS = 8192;

type Raw = string | number | bigint | Buffer | null;

/** SQLite value → exported cell, by declared column type. */
const CELLS: Record<ColumnType, (v: Raw, time: TimestampFormatter) => Cell> = {
  string: (v) => (v === null || typeof v === "string" ? v : String(v)),
  integer: (v) => (v === null || typeof v === "bigint" || typeof v === "number" ? v : String(v)),
  number: (v) => (v === null || typeof v === "bigint" || typeof v === "number" ? v : String(v)),
  boolean: (v) => (v === null ? null : Number(v) !== 0),
  timestamp: (v, time) => (v === null ? null : time.format(Number(v))),
  // Selected through json(), which validates and minifies: a JSONL line stays valid JSON.
  json: (v) => (v === null ? null : String(v)),
};

function filterValue(type: FilterType, value: string): string | bigint | number {
  if (type === "integer") return BigInt(value);
  if (type === "boolean") return value === "true" ? 1 : 0;
  return value;
}

export class SqliteDataset implements Dataset {
  readonly descriptor;

  constructor(
    private readonly config: DatasetConfig,
    private readonly source: SqliteSourceConfig,
  ) {
    this.descriptor = sqlDescriptor(config);
  }

  private open(): Database.Database {
    return new Database(this.source.file, { readonly: true, fileMustExist: true });
  }

  private scope(tenant: TenantRef, request: ExportRequest, after: string | null): QueryScope {
    const cursor = after === null ? null : decodeCursor(after);
    return scopeOf(
      this.config,
      request,
      tenant.name,
      cursor && {
        time: Number(cursor.time),
        key: this.config.keyType === "integer" ? BigInt(cursor.key) : cursor.key,
      },
      { time: (ms) => ms, filterValue },
    );
  }

  /** Exact: count(*) over the same WHERE, served by the (tenant, time, key) index. */
  async estimateRows(tenant: TenantRef, request: ExportRequest): Promise<number> {
    const db = this.open();
    try {
      const { bind, values } = placeholders("question");
      const sql = countQuery(this.config, this.scope(tenant, request, null), bind);
      return Number((db.prepare(sql).get(...values) as { n: number }).n);
    } finally {
      db.close();
    }
  }

  async *read(options: ReadOptions): AsyncIterable<CellBatch> {
    const { request } = options;
    const columns = chosenColumns(this.config, request.columns);
    const expressions = columns.map((c) =>
      c.type === "json" ? `json(${quoteIdent(c.column)})` : quoteIdent(c.column),
    );
    // The time and key ride along after the exported columns: they make each row's cursor.
    expressions.push(quoteIdent(this.config.timeColumn), quoteIdent(this.config.keyColumn));
    const { bind, values } = placeholders("question");
    const sql = selectQuery(
      this.config,
      expressions,
      this.scope(options.tenant, request, options.after),
      bind,
    );
    const time = new TimestampFormatter(request.timezone, { micros: true });
    const convert = columns.map((c) => CELLS[c.type]);
    const width = columns.length;

    const db = this.open();
    const rows = db
      .prepare(sql)
      .raw(true)
      .safeIntegers(true)
      .iterate(...values) as IterableIterator<Raw[]>;
    try {
      for (;;) {
        options.signal.throwIfAborted();
        const cells: Cell[][] = [];
        const times: number[] = [];
        const keys: string[] = [];
        while (cells.length < BATCH_ROWS) {
          const next = rows.next();
          if (next.done) break;
          const raw = next.value;
          const row: Cell[] = new Array(width);
          for (let c = 0; c < width; c++)
            row[c] = (convert[c] as (typeof CELLS)[ColumnType])(raw[c] as Raw, time);
          cells.push(row);
          times.push(Number(raw[width]));
          keys.push(String(raw[width + 1]));
        }
        if (cells.length === 0) return;
        const rowCursor = (index: number) => encodeCursor(times[index] as number, keys[index] as string);
        yield {
          kind: "cells",
          rows: cells,
          cursor: rowCursor(cells.length - 1),
          rowCursor,
          position: positionAt(request, times[times.length - 1] as number),
        };
        if (cells.length < BATCH_ROWS) return;
      }
    } finally {
      rows.return?.();
      db.close();
    }
  }
}
