/**
 * A dataset in PostgreSQL, exported at COPY speed: PostgreSQL encodes the rows itself
 * (`COPY (SELECT …) TO STDOUT`, CSV or — for JSONL — text format with one JSON text per row) and
 * exportd only strips the cursor fields of each row (copy-out.ts, copy-scanner.ts), in large chunks.
 *
 * The COPY runs in a read-only REPEATABLE READ transaction whose TimeZone is the request's zone, so
 * to_char writes local times with their offset. COPY takes no bind parameters: values reach it as
 * literals escaped by pg's escapeLiteral, with standard_conforming_strings forced on; estimates bind
 * them as parameters.
 */
import pg from "pg";
import type { DatasetColumnConfig, DatasetConfig } from "../../config/file.js";
import { type ColumnType, FORMULA_GUARDED_TYPES } from "../../domain/dataset.js";
import { csvNewline, type ExportRequest, FORMULA_STARTS } from "../../domain/export.js";
import type { Dataset, EncodedBatch, ReadOptions, TenantRef } from "../types.js";
import {
  type Binder,
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
import { CopyOut } from "./copy-out.js";
import { CopyScanner } from "./copy-scanner.js";
import { chosenColumns, sqlDescriptor } from "./descriptor.js";

/** Scan when this much COPY output has arrived: large chunks keep zlib and the scanner fast. */
const SCAN_BYTES = 256 * 1024;
/** count(*) for an estimate may take this long before EXPLAIN's guess is used instead. */
const COUNT_TIMEOUT_MS = 2000;

/** 0001-01-01T00:00:00Z: from here on, to_char's four-digit year is exact (no BC). */
const YEAR_ONE_MS = -62_135_596_800_000;

const literal: Binder = (value) => pg.escapeLiteral(String(value));

/** Epoch ms → timestamptz text PostgreSQL parses exactly. */
function isoMillis(ms: number): string {
  return new Date(ms).toISOString();
}

/**
 * Milliseconds of a timestamptz as COPY writes it under DateStyle ISO (`2026-03-29 03:00:00.5+02`,
 * offsets may carry minutes and seconds) or as exported in UTC (`2026-03-29T01:00:00.500000Z`), for
 * progress only: the cursor keeps the exact text.
 */
function copyTimestampMs(text: string): number {
  const m = /^(\d{4,}-\d\d-\d\d)[ T](\d\d:\d\d:\d\d(?:\.\d+)?)(?:Z|([+-]\d\d)(?::(\d\d))?)/.exec(text);
  return m ? Date.parse(`${m[1]}T${m[2]}${m[3] ?? "+00"}:${m[4] ?? "00"}`) : Number.NaN;
}

/** ISO 8601 with offset in the session's time zone, microseconds: 2026-11-01T10:00:00.000000+01:00. */
function timestampText(column: string, utc: boolean): string {
  return `to_char(${column}, 'YYYY-MM-DD"T"HH24:MI:SS.US${utc ? '"Z"' : "TZH:TZM"}')`;
}

/** A column as text for CSV: COPY's own output for numbers (exact digits), true/false for booleans. */
function csvExpression(c: DatasetColumnConfig, request: ExportRequest): string {
  const col = quoteIdent(c.column);
  const csv: Record<ColumnType, () => string> = {
    string: () => `${col}::text`,
    integer: () => col,
    number: () => col,
    boolean: () => `${col}::text`,
    timestamp: () => timestampText(col, request.timezone === "UTC"),
    json: () => `${col}::text`,
  };
  const text = csv[c.type]();
  if (!request.csv.formulaGuard || !FORMULA_GUARDED_TYPES.has(c.type)) return text;
  // The formula guard, with the JS encoder's characters: a leading ' keeps a spreadsheet from running it.
  const starts = FORMULA_STARTS.map((ch) => literal(ch)).join(", ");
  return `CASE WHEN left(${text}, 1) IN (${starts}) THEN '''' || ${text} ELSE ${text} END`;
}

/** A column as JSON text for JSONL. JSON columns go through jsonb: valid, and free of raw newlines. */
function jsonExpression(c: DatasetColumnConfig, request: ExportRequest): string {
  const col = quoteIdent(c.column);
  const json: Record<ColumnType, () => string> = {
    string: () => `to_json(${col}::text)::text`,
    integer: () => `to_json(${col})::text`,
    number: () => `to_json(${col})::text`,
    boolean: () => `to_json(${col})::text`,
    timestamp: () => `to_json(${timestampText(col, request.timezone === "UTC")})::text`,
    json: () => `${col}::jsonb::text`,
  };
  return `COALESCE(${json[c.type]()}, 'null')`;
}

/** One JSON object per row, keys in the request's order, built in SQL: `{"a":1,"b":"x"}`. */
function jsonLine(columns: DatasetColumnConfig[], request: ExportRequest): string {
  const pieces = columns.map(
    (c, i) =>
      `${literal(`${i === 0 ? "{" : ","}${JSON.stringify(c.name)}:`)} || ${jsonExpression(c, request)}`,
  );
  return `${pieces.join(" || ")} || '}'`;
}

export class PostgresDataset implements Dataset {
  readonly descriptor;

  constructor(
    private readonly config: DatasetConfig,
    private readonly pool: pg.Pool,
  ) {
    this.descriptor = sqlDescriptor(config);
  }

  private scope(tenant: TenantRef, request: ExportRequest, after: string | null): QueryScope {
    const cursor = after === null ? null : decodeCursor(after);
    return scopeOf(
      this.config,
      request,
      tenant.name,
      cursor && { time: String(cursor.time), key: cursor.key },
      { time: isoMillis, filterValue: (_type, value) => value },
    );
  }

  /**
   * count(*) with the export's own WHERE: exact, and cheap with an index on (tenant, time, key). When
   * it takes longer than COUNT_TIMEOUT_MS (a huge range without a fitting index), EXPLAIN's row
   * estimate stands in — rough, but instant.
   */
  async estimateRows(tenant: TenantRef, request: ExportRequest): Promise<number | null> {
    const { bind, values } = placeholders("dollar");
    const sql = countQuery(this.config, this.scope(tenant, request, null), bind);
    const client = await this.pool.connect();
    try {
      await client.query("BEGIN READ ONLY");
      await client.query("SELECT set_config('statement_timeout', $1, true)", [String(COUNT_TIMEOUT_MS)]);
      const result = await client.query<{ n: string }>(sql, values);
      await client.query("COMMIT");
      return Number(result.rows[0]?.n ?? 0);
    } catch (err) {
      await client.query("ROLLBACK").catch(() => undefined);
      if ((err as { code?: string }).code !== "57014") throw err; // not a statement timeout
      const plan = await client.query<{ "QUERY PLAN": [{ Plan: { "Plan Rows": number } }] }>(
        `EXPLAIN (FORMAT JSON) ${sql}`,
        values,
      );
      return plan.rows[0]?.["QUERY PLAN"][0].Plan["Plan Rows"] ?? null;
    } finally {
      client.release();
    }
  }

  /**
   * The COPY statement: exported columns, then the time and key as cursor fields. The time is the
   * column itself, which COPY writes as exact ISO text with offset and never quotes (measured: half the
   * cost of extract(epoch …)); a text key could hold the delimiter or a quote, so it travels as hex.
   */
  private copyStatement(options: ReadOptions): string {
    const { request } = options;
    const columns = chosenColumns(this.config, request.columns);
    const key = quoteIdent(this.config.keyColumn);
    const cursor = [
      quoteIdent(this.config.timeColumn),
      this.config.keyType === "integer" ? `${key}::int8` : `encode(convert_to(${key}::text, 'UTF8'), 'hex')`,
    ];
    const scope = this.scope(options.tenant, request, options.after);
    if (request.format === "csv" && this.cursorFields(options.request)) {
      const expressions = columns.map((c) => csvExpression(c, request));
      const select = selectQuery(this.config, expressions, scope, literal);
      return `COPY (${select}) TO STDOUT WITH (FORMAT csv, DELIMITER ${literal(request.csv.delimiter)})`;
    }
    if (request.format === "jsonl") {
      const select = selectQuery(this.config, [jsonLine(columns, request), ...cursor], scope, literal);
      return `COPY (${select}) TO STDOUT`;
    }
    const expressions = columns.map((c) => csvExpression(c, request));
    const select = selectQuery(this.config, [...expressions, ...cursor], scope, literal);
    return `COPY (${select}) TO STDOUT WITH (FORMAT csv, DELIMITER ${literal(request.csv.delimiter)})`;
  }

  /**
   * Where a CSV row already holds its cursor, exactly: the time column exported in UTC (to_char's
   * `YYYY-MM-DD"T"HH24:MI:SS.US"Z"`, exact from year 1 on — the range keeps BC and infinity out) and an
   * integer key exported as is. Then COPY needs no cursor fields, which cost PostgreSQL about a tenth
   * of an export's time (timestamptz and int8 output for every row).
   */
  private cursorFields(request: ExportRequest): { time: number; key: number } | null {
    if (request.format !== "csv" || request.timezone !== "UTC" || request.from < YEAR_ONE_MS) return null;
    if (this.config.keyType !== "integer") return null;
    const columns = chosenColumns(this.config, request.columns);
    const time = columns.findIndex((c) => c.column === this.config.timeColumn && c.type === "timestamp");
    const key = columns.findIndex((c) => c.column === this.config.keyColumn && c.type === "integer");
    return time < 0 || key < 0 ? null : { time, key };
  }

  async *read(options: ReadOptions): AsyncIterable<EncodedBatch> {
    const { request } = options;
    const scanner = new CopyScanner({
      format: request.format === "jsonl" ? "text" : "csv",
      delimiter: request.csv.delimiter,
      newline: request.format === "csv" && csvNewline(request.csv) === "\r\n" ? "\r\n" : "\n",
      cursorFields: this.cursorFields(request) ?? undefined,
    });
    const decodeKey = (text: string) =>
      this.config.keyType === "integer" ? text : Buffer.from(text, "hex").toString("utf8");

    const client = await this.pool.connect();
    let completed = false;
    let position = 0;
    try {
      await client.query("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY");
      await client.query(
        "SELECT set_config('TimeZone', $1, true), set_config('DateStyle', 'ISO, YMD', true), set_config('standard_conforming_strings', 'on', true)",
        [request.timezone],
      );
      // A deep read buffer lets PostgreSQL keep sending while the compressor works on the last batch.
      const stream = client.query(
        new CopyOut(this.copyStatement(options), { highWaterMark: 2 * SCAN_BYTES }),
      );
      options.signal.throwIfAborted();
      const onAbort = () => stream.destroy(options.signal.reason as Error);
      options.signal.addEventListener("abort", onAbort, { once: true });
      try {
        let chunks: Buffer[] = [];
        let size = 0;
        const batch = (): EncodedBatch | null => {
          const rows = scanner.scan(chunks);
          chunks = [];
          size = 0;
          const count = rows.rowEnds.length;
          if (count === 0) return null;
          const rowCursor = (index: number) => {
            const [time, key] = rows.cursorOf(index);
            return encodeCursor(time, decodeKey(key));
          };
          const [lastTime] = rows.cursorOf(count - 1);
          // NaN (a time the parser does not know, e.g. a BC date) leaves progress where it was.
          position = Math.max(position, positionAt(request, copyTimestampMs(lastTime)) || 0);
          return {
            kind: "encoded",
            bytes: rows.bytes,
            rowEnds: rows.rowEnds,
            cursor: rowCursor(count - 1),
            rowCursor,
            position,
          };
        };
        for await (const chunk of stream) {
          chunks.push(chunk as Buffer);
          size += (chunk as Buffer).length;
          if (size >= SCAN_BYTES) {
            const next = batch();
            if (next) yield next;
          }
        }
        const last = batch();
        if (last) yield last;
        scanner.finish();
      } finally {
        options.signal.removeEventListener("abort", onAbort);
        if (!stream.destroyed) stream.destroy();
      }
      await client.query("COMMIT");
      completed = true;
    } finally {
      // A COPY cut off midway (error, abort, or the pipeline stopping early) leaves the connection in
      // an unknown state: destroy it rather than hand it back to the pool.
      client.release(completed ? undefined : new Error("COPY did not complete"));
    }
  }
}
