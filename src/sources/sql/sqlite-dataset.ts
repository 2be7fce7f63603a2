/**
 * A dataset in a SQLite file. Rows are iterated with better-sqlite3 (`raw` arrays, `safeIntegers` so
 * integers past 2^53 stay exact) and handed to the pipeline in batches of cells, which its encoders
 * turn into one large chunk per batch. Times are stored as integer epoch milliseconds.
 *
 * Each read and each estimate opens its own read-only connection: an open iterator keeps a
 * better-sqlite3 connection busy, and two exports of one file may run at once.
 */
import { setImmediate } from "node:timers/promises";
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

/**
 * Rows per batch. Small batches die young: with 8,192 rows a batch and its text outlived scavenges
 * and were promoted, and the old generation grew to ~100 MB between full collections (measured:
 * 1,024 rows export 25% faster, at 60% of the peak memory).
 */
const BATCH_ROWS = 1024;

type Raw = string | number | bigint | Buffer | null;
/** A row as read, whose exported values are converted to cells in place. */
type Row = (Raw | Cell)[];

/**
 * SQLite value → exported cell, by declared column type, in place in the raw row. Values already in
 * their exported form (text in text columns, integers and reals in numeric ones) are left alone;
 * anything else is converted as its column type says. JSON columns are selected through json(),
 * which validates and minifies (a JSONL line stays valid JSON), and in CSV through replace() too:
 * text either way.
 */
function toCells(raw: Row, kinds: readonly ColumnType[], time: TimestampFormatter): void {
  for (let c = 0; c < kinds.length; c++) {
    const v = raw[c] as Raw | Cell;
    if (v === null) continue;
    switch (kinds[c]) {
      case "timestamp":
        raw[c] = time.format(Number(v));
        break;
      case "boolean":
        raw[c] = Number(v) !== 0;
        break;
      case "string":
      case "json":
        if (typeof v !== "string") raw[c] = String(v);
        break;
      default:
        if (typeof v !== "bigint" && typeof v !== "number") raw[c] = String(v);
    }
  }
}

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
    const db = new Database(this.source.file, { readonly: true, fileMustExist: true });
    // An export reads each page once, in index order: better-sqlite3's 16 MB page cache would only
    // add to the worker's peak memory. SQLite's own default (2 MB) still holds the B-tree's upper levels.
    db.pragma("cache_size = -2000");
    return db;
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
    // In CSV, SQLite doubles the quotes of JSON text (nearly every JSON value has some): its
    // replace() costs a fraction of doing it in JS for every row.
    const csv = request.format === "csv";
    const quotesDoubled = columns.map((c) => csv && c.type === "json");
    const expressions = columns.map((c) =>
      c.type !== "json"
        ? quoteIdent(c.column)
        : csv
          ? `replace(json(${quoteIdent(c.column)}), '"', '""')`
          : `json(${quoteIdent(c.column)})`,
    );
    // Each row's cursor is its time and key as read. An exported column that is the time or key
    // column as it is stored (not through json()) already carries that value; otherwise it rides
    // along after the exported columns. Each value crossing from SQLite costs about as much as
    // formatting it, so none is read twice.
    const readAt = (column: string): number => {
      const at = columns.findIndex((c) => c.column === column && c.type !== "json");
      if (at >= 0) return at;
      expressions.push(quoteIdent(column));
      return expressions.length - 1;
    };
    const timeAt = readAt(this.config.timeColumn);
    const keyAt = readAt(this.config.keyColumn);
    const { bind, values } = placeholders("question");
    const sql = selectQuery(
      this.config,
      expressions,
      this.scope(options.tenant, request, options.after),
      bind,
    );
    const time = new TimestampFormatter(request.timezone, { micros: true });
    const kinds = columns.map((c) => c.type);

    const db = this.open();
    const rows = db
      .prepare(sql)
      .raw(true)
      .safeIntegers(true)
      .iterate(...values) as IterableIterator<Row>;
    try {
      for (;;) {
        options.signal.throwIfAborted();
        // Each raw row becomes its own cells in place; its time and key are kept as read, before
        // that, and only become a cursor when one is asked for.
        const batch: Row[] = [];
        const times = new Float64Array(BATCH_ROWS);
        const keys: (Raw | Cell)[] = [];
        while (batch.length < BATCH_ROWS) {
          const next = rows.next();
          if (next.done) break;
          const raw = next.value;
          times[batch.length] = Number(raw[timeAt]);
          keys.push(raw[keyAt] as Raw);
          toCells(raw, kinds, time);
          batch.push(raw);
        }
        const count = batch.length;
        if (count === 0) return;
        const rowCursor = (index: number) => encodeCursor(times[index] as number, String(keys[index]));
        yield {
          kind: "cells",
          rows: batch as Cell[][],
          quotesDoubled,
          cursor: rowCursor(count - 1),
          rowCursor,
          position: positionAt(request, times[count - 1] as number),
        };
        if (count < BATCH_ROWS) return;
        // better-sqlite3 steps synchronously: give the event loop a turn so that zlib's finished
        // chunks are collected and the next one starts on its thread while this one reads on.
        await setImmediate();
      }
    } finally {
      rows.return?.();
      db.close();
    }
  }
}
