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
import { ExportFailure } from "../../domain/errors.js";
import type { ExportRequest } from "../../domain/export.js";
import { parseInstant, TimestampFormatter } from "../../domain/time.js";
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
 * A timestamp stored as text (SQLite's own `YYYY-MM-DD HH:MM:SS.SSS`, or ISO 8601 with T and an
 * offset) → epoch ms, fractional below the millisecond. Without an offset it is a wall-clock time in
 * the dataset's local_time_zone, read as PostgreSQL reads `timestamp without time zone` in it (a
 * repeated hour as its later, standard-time instant). Anything else fails the export: exporting it as something else, or
 * as NULL, would change it silently.
 */
function textTimeMs(text: string, localZone: string, column: string): number {
  const m = /^(\d{4}-\d\d-\d\d(?:[T ]\d\d:\d\d(?::\d\d(?:\.(\d{1,9}))?)?)?)(Z|[+-]\d\d:\d\d)?$/.exec(text);
  const ms = m ? parseInstant((m[1] as string).replace(" ", "T") + (m[3] ?? ""), localZone, "later") : null;
  if (ms === null) {
    throw new ExportFailure(
      "source_error",
      `Column "${column}" holds ${JSON.stringify(text.slice(0, 100))}, which is no timestamp: store epoch milliseconds, or ISO 8601 text.`,
    );
  }
  // Digits past the millisecond, which Date drops.
  const sub = (m?.[2] ?? "").slice(3);
  return sub ? ms + Number(`0.${sub}`) : ms;
}

/** Text a SQLite BLOB holds, when it is UTF-8; a BLOB of other bytes cannot be exported as text. */
const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/** A row's key in a message: enough to find the row, never more than 100 characters of it. */
function keyText(key: Raw | Cell): string {
  return JSON.stringify(String(key).slice(0, 100));
}

function notExportable(column: string, key: Raw | Cell, what: string): ExportFailure {
  return new ExportFailure(
    "source_error",
    `Column "${column}" of the row with key ${keyText(key)} holds ${what}, which cannot be exported as its declared type.`,
  );
}

/** A value of a text-like column that SQLite did not store as text. */
function textOf(v: Raw | Cell, column: string, key: Raw | Cell): string {
  if (Buffer.isBuffer(v)) {
    try {
      return utf8.decode(v);
    } catch {
      throw notExportable(column, key, `a BLOB of ${v.length} bytes that are not UTF-8`);
    }
  }
  // A REAL -0.0 in a column without affinity keeps its sign, as CSV and JSONL write -0.
  return typeof v === "number" && v === 0 && 1 / v < 0 ? "-0" : String(v);
}

/** SQLite has no boolean: 0/1 (any number: not 0), or the text true/false, 1/0. */
function booleanOf(v: Raw | Cell, column: string, key: Raw | Cell): boolean {
  if (typeof v === "number" || typeof v === "bigint") return Number(v) !== 0;
  const text = typeof v === "string" ? v.toLowerCase() : "";
  if (text === "true" || text === "1") return true;
  if (text === "false" || text === "0") return false;
  throw notExportable(column, key, typeof v === "string" ? JSON.stringify(v.slice(0, 100)) : "a BLOB");
}

/** The SQLite type of a value, for messages. */
function storageClass(v: Raw | Cell): string {
  if (Buffer.isBuffer(v)) return "a BLOB";
  if (typeof v === "string") return `the text ${JSON.stringify(v.slice(0, 100))}`;
  return `the number ${String(v)}`;
}

/**
 * A column expression that marks stored text that is not RFC 8259 JSON with the integer 0 (json()
 * alone would accept JSON5 — `{a:1}`, `NaN`, `'x'`, hex numbers — and rewrite it as other JSON:
 * `NaN` as `null`, `0x10` as `16`). Valid JSON goes through json(), which minifies it (a JSONL
 * line stays one line) and changes nothing else; in CSV through replace() too, which doubles its
 * quotes (see readRows). SQLite keeps the parse of json_valid() for json() (measured: 500k small
 * objects read in 592 ms with the check, 580 ms without).
 */
function jsonExpression(column: string, csv: boolean): string {
  const c = quoteIdent(column);
  const text = csv ? `replace(json(${c}), '"', '""')` : `json(${c})`;
  return `CASE WHEN json_valid(${c}, 1) THEN ${text} WHEN ${c} IS NULL THEN NULL ELSE 0 END`;
}

/** The earliest and latest instants (epoch ms) a timestamp can be written for: Date's range less a day for the offset. */
const TIMESTAMP_LIMIT_MS = 8.64e15 - 86_400_000;

/**
 * SQLite value → exported cell, by declared column type, in place in the raw row. SQLite types
 * values per row, so each is checked against its column's declared type: values in their exported
 * form (text in string columns, INTEGER in integer columns, INTEGER or REAL in number columns) are
 * left alone; a REAL with an integer value in an integer column becomes that integer; anything else
 * — a fraction in an integer column, text or a BLOB in a number column, JSON5 in a json column, a
 * timestamp outside TIMESTAMP_LIMIT_MS — fails the export (source_error naming column and row key)
 * rather than be written as something else. Timestamps are epoch milliseconds, or text (textTimeMs).
 * Text that better-sqlite3 decoded with U+FFFD is checked by `checkText` (see TextCheck); looking
 * for it costs about 12 ns a text cell (measured: 1M rows of three text columns read and converted
 * in 1,380 ms with the look, 1,345 ms without).
 */
function toCells(
  raw: Row,
  key: Raw | Cell,
  columns: readonly { type: ColumnType; name: string; column: string }[],
  time: TimestampFormatter,
  localZone: string,
  checkText: TextCheck,
): void {
  for (let c = 0; c < columns.length; c++) {
    const v = raw[c] as Raw | Cell;
    if (v === null) continue;
    const column = columns[c] as { type: ColumnType; name: string; column: string };
    switch (column.type) {
      case "timestamp": {
        const ms =
          typeof v === "number" || typeof v === "bigint"
            ? Number(v)
            : textTimeMs(textOf(v, column.name, key), localZone, column.name);
        if (!(Math.abs(ms) <= TIMESTAMP_LIMIT_MS)) {
          throw notExportable(
            column.name,
            key,
            `${String(v)} (epoch milliseconds), outside the timestamps exportd writes (±${TIMESTAMP_LIMIT_MS})`,
          );
        }
        raw[c] = time.format(ms);
        break;
      }
      case "boolean":
        raw[c] = booleanOf(v, column.name, key);
        break;
      case "string":
        if (typeof v !== "string") raw[c] = textOf(v, column.name, key);
        else if (v.includes("\uFFFD")) checkText(column, key);
        break;
      case "json":
        if (typeof v !== "string") throw notExportable(column.name, key, "text that is not JSON (RFC 8259)");
        if (v.includes("\uFFFD")) checkText(column, key);
        break;
      case "integer":
        if (typeof v === "bigint") break;
        if (typeof v === "number" && Number.isSafeInteger(v)) raw[c] = BigInt(v);
        else throw notExportable(column.name, key, storageClass(v));
        break;
      default:
        if (typeof v !== "bigint" && typeof v !== "number")
          throw notExportable(column.name, key, storageClass(v));
    }
  }
}

/**
 * Checks that a text value better-sqlite3 decoded with U+FFFD holds exactly that: better-sqlite3
 * turns stored bytes that are not UTF-8 into U+FFFD without a word, which would export other text
 * than stored. Only values holding U+FFFD (rare) are read again, as bytes; valid UTF-8 (a stored
 * U+FFFD included) passes, other bytes fail the export as the same bytes in a BLOB do.
 */
type TextCheck = (column: { name: string; column: string }, key: Raw | Cell) => void;

/**
 * A SQLite failure as the export should report it, naming the source: a missing table or column, or
 * a file that cannot be opened or is no database, will fail every retry (source_error, with SQLite's
 * message: it names the table or column, never the SQL or the path); anything else (busy, I/O) is
 * thrown as is and retried.
 */
function sourceFailure(err: unknown, dataset: DatasetConfig): unknown {
  const { code, message } = err as { code?: unknown; message?: string };
  const forGood =
    code === "SQLITE_CANTOPEN" ||
    code === "SQLITE_NOTADB" ||
    (code === "SQLITE_ERROR" && /^no such (table|column)/.test(message ?? ""));
  if (!forGood) return err;
  return new ExportFailure(
    "source_error",
    `The source "${dataset.source}" of ${dataset.name} refused the export: ${message}.`,
  );
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
    let db: Database.Database | null = null;
    try {
      db = this.open();
      const { bind, values } = placeholders("question");
      const sql = countQuery(this.config, this.scope(tenant, request, null), bind);
      return Number((db.prepare(sql).get(...values) as { n: number }).n);
    } catch (err) {
      throw sourceFailure(err, this.config);
    } finally {
      db?.close();
    }
  }

  async *read(options: ReadOptions): AsyncIterable<CellBatch> {
    try {
      yield* this.readRows(options);
    } catch (err) {
      throw sourceFailure(err, this.config);
    }
  }

  /**
   * The range is compared with the time column as numbers: times stored as text (which SQLite sorts
   * after every number) would silently fall outside every range. Found through the (tenant, time)
   * index: text sorts from '' on.
   */
  private checkTimeColumn(db: Database.Database, tenant: string): void {
    const table = quoteIdent(this.config.table);
    const time = quoteIdent(this.config.timeColumn);
    const sql = `SELECT ${time} AS t FROM ${table} WHERE ${quoteIdent(this.config.tenantColumn)} = ? AND ${time} >= '' LIMIT 1`;
    const found = db.prepare(sql).get(tenant) as { t: unknown } | undefined;
    if (found) {
      throw new ExportFailure(
        "source_error",
        `The time column of ${this.config.name} holds ${JSON.stringify(String(found.t).slice(0, 100))}: SQLite datasets need epoch milliseconds (integers) in their time column.`,
      );
    }
  }

  private async *readRows(options: ReadOptions): AsyncIterable<CellBatch> {
    const { request } = options;
    const columns = chosenColumns(this.config, request.columns);
    // In CSV, SQLite doubles the quotes of JSON text (nearly every JSON value has some): its
    // replace() costs a fraction of doing it in JS for every row.
    const csv = request.format === "csv";
    const quotesDoubled = columns.map((c) => csv && c.type === "json");
    const expressions = columns.map((c) =>
      c.type === "json" ? jsonExpression(c.column, csv) : quoteIdent(c.column),
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
    const localZone = this.config.localTimeZone;

    const db = this.open();
    // Opened on the first text holding U+FFFD: the reading connection is busy with its iterator.
    const bytes: { db: Database.Database | null } = { db: null };
    const checkText: TextCheck = (column, key) => {
      bytes.db ??= this.open();
      const found = bytes.db
        .prepare(
          `SELECT CAST(${quoteIdent(column.column)} AS BLOB) FROM ${quoteIdent(this.config.table)} WHERE ${quoteIdent(this.config.tenantColumn)} = ? AND ${quoteIdent(this.config.keyColumn)} = ?`,
        )
        .raw(true)
        .safeIntegers(true)
        .get(options.tenant.name, key) as [Buffer | null] | undefined;
      // A row changed or gone since it was read: the retry reads it afresh.
      if (!found || !Buffer.isBuffer(found[0]))
        throw new Error(`row ${keyText(key)} changed while it was read`);
      textOf(found[0], column.name, key);
    };
    let rows: IterableIterator<Row>;
    try {
      this.checkTimeColumn(db, options.tenant.name);
      rows = db
        .prepare(sql)
        .raw(true)
        .safeIntegers(true)
        .iterate(...values) as IterableIterator<Row>;
    } catch (err) {
      db.close();
      throw err;
    }
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
          toCells(raw, raw[keyAt] as Raw, columns, time, localZone, checkText);
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
      bytes.db?.close();
    }
  }
}
