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
import { ExportFailure } from "../../domain/errors.js";
import { csvNewline, type ExportRequest, FORMULA_STARTS } from "../../domain/export.js";
import { offsetSeconds } from "../../domain/time.js";
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
/** An estimate's connection that has not answered its few short queries by then is dropped. */
const ESTIMATE_DEADLINE_MS = 10_000;

/** 0001-01-01T00:00:00Z: from here on, to_char's four-digit year is exact (no BC). */
const YEAR_ONE_MS = -62_135_596_800_000;

/**
 * Where to_char alone writes a timestamp exactly: a four-digit year in every zone, and — outside UTC —
 * offsets of whole minutes (TZH:TZM drops an offset's seconds). The last zone with seconds in its
 * offset (Africa/Monrovia, -00:44:30) dropped them in January 1972. Outside this window, and for
 * ±infinity, the slow expression of `timestampText` writes the value.
 */
const FAST_WINDOW = {
  utc: { low: "0001-01-02 00:00:00+00", high: "9999-12-31 00:00:00+00", lowMs: Date.UTC(1, 0, 2) },
  zoned: { low: "1973-01-01 00:00:00+00", high: "9999-12-31 00:00:00+00", lowMs: Date.UTC(1973, 0, 1) },
  highMs: Date.UTC(9999, 11, 31),
} as const;

const literal: Binder = (value) => pg.escapeLiteral(String(value));

/**
 * Epoch ms → timestamptz text PostgreSQL parses exactly. PostgreSQL has no year 0 and reads no
 * expanded years: years before 1 are written as BC.
 */
function pgInstant(ms: number): string {
  const iso = new Date(ms).toISOString();
  const dash = iso.indexOf("-", 1);
  const year = Number(iso.slice(0, dash));
  if (year >= 1 && year <= 9999) return iso;
  return year < 1 ? `${String(1 - year).padStart(4, "0")}${iso.slice(dash)} BC` : `${year}${iso.slice(dash)}`;
}

/**
 * A bound of the range (epoch ms) as a wall-clock time in `zone` that no row inside the range is on
 * the wrong side of, as `timestamp without time zone` text; for a `date` column the first date whose
 * midnight is not before it (a date compared with a date-time drops the time, which would let in the
 * day's midnight before the bound). A row's wall time is its instant plus the offset at that instant,
 * which may differ from the offset at the bound (a repeated or skipped hour, or Lord Howe's half
 * hour, right after `from` or before `to`): the bound takes the smallest (from) or largest (to)
 * offset of the days around it. The rows this lets in past the range are removed by the exact filter
 * on their instant (QueryScope.instant); the index still serves the wall-clock range.
 */
function pgWallBound(ms: number, bound: "from" | "to", zone: string, date: boolean): string {
  const offsets = [-86_400_000, 0, 86_400_000].map((d) => offsetSeconds(ms + d, zone));
  const wall = ms + (bound === "from" ? Math.min(...offsets) : Math.max(...offsets)) * 1000;
  if (!date) return pgInstant(wall).replace("Z", "");
  const midnight = Math.ceil(wall / 86_400_000) * 86_400_000;
  const text = pgInstant(midnight);
  return text.slice(0, text.indexOf("T")) + (text.endsWith(" BC") ? " BC" : "");
}

/** PostgreSQL type OIDs (pg_type) of the types declared columns may have. */
const OID = {
  bool: 16,
  int8: 20,
  int2: 21,
  int4: 23,
  text: 25,
  json: 114,
  float4: 700,
  float8: 701,
  bpchar: 1042,
  varchar: 1043,
  date: 1082,
  timestamp: 1114,
  timestamptz: 1184,
  numeric: 1700,
  jsonb: 3802,
} as const;

/**
 * What each declared column type may be in PostgreSQL: a column of another type would be written as
 * something it is not (a text column declared boolean as its text, a numeric declared integer with
 * its fraction). `string` takes any type, written as PostgreSQL's text output of it. A `numeric`
 * column is an `integer` only with scale 0 (`numeric(p)` or `numeric(p, 0)`).
 */
const ACCEPTED_TYPES: Partial<Record<ColumnType, { oids: ReadonlySet<number>; names: string }>> = {
  timestamp: {
    oids: new Set([OID.date, OID.timestamp, OID.timestamptz]),
    names: "timestamptz, timestamp or date",
  },
  integer: {
    oids: new Set([OID.int2, OID.int4, OID.int8, OID.numeric]),
    names: "smallint, integer, bigint or numeric with scale 0",
  },
  number: {
    oids: new Set([OID.int2, OID.int4, OID.int8, OID.numeric, OID.float4, OID.float8]),
    names: "smallint, integer, bigint, numeric, real or double precision",
  },
  boolean: { oids: new Set([OID.bool]), names: "boolean" },
  json: {
    oids: new Set([OID.json, OID.jsonb, OID.text, OID.varchar, OID.bpchar]),
    names: "json, jsonb or text",
  },
};

/** Whether a source column of type `oid` (with its type modifier) may be exported as `type`. */
function acceptsType(type: ColumnType, oid: number, typmod: number): boolean {
  const accepted = ACCEPTED_TYPES[type];
  if (!accepted) return true;
  if (!accepted.oids.has(oid)) return false;
  // numeric's typmod is ((precision << 16) | scale) + 4; -1 when unconstrained (any scale).
  return type !== "integer" || oid !== OID.numeric || (typmod >= 4 && ((typmod - 4) & 0xffff) === 0);
}

/**
 * Session settings that change the text PostgreSQL writes for a value, pinned for the export's
 * transaction: a database or role may set any of them (`ALTER DATABASE … SET extra_float_digits = 0`
 * would round every double to 15 digits, 1.7976931348623157e308 to 1.79769313486232e+308, which
 * reads back as Infinity). extra_float_digits 1 writes the shortest text that reads back exactly;
 * lc_monetary C writes money without a locale's symbols; TimeZone is the request's zone (set apart).
 */
const PINNED_SETTINGS: readonly [string, string][] = [
  ["DateStyle", "ISO, YMD"],
  ["IntervalStyle", "postgres"],
  ["extra_float_digits", "1"],
  ["bytea_output", "hex"],
  ["lc_monetary", "C"],
  ["standard_conforming_strings", "on"],
  ["client_encoding", "UTF8"],
];

/** The source types of a read's columns, by source column name. */
type SourceTypes = ReadonlyMap<string, number>;

/**
 * Milliseconds of a time column's value as COPY writes it under DateStyle ISO — a timestamptz
 * (`2026-03-29 03:00:00.5+02`, offsets may carry minutes and seconds), a zone-less timestamp or a
 * date, read in `localZone` — or as exported in UTC (`2026-03-29T01:00:00.500000Z`), for progress
 * only: the cursor keeps the exact text.
 */
function copyTimestampMs(text: string, localZone: string): number {
  const m = /^(\d{4,}-\d\d-\d\d)(?:[ T](\d\d:\d\d:\d\d(?:\.\d+)?))?(?:(Z)|([+-]\d\d)(?::(\d\d))?)?/.exec(
    text,
  );
  if (!m) return Number.NaN;
  const offset = m[4] === undefined ? "Z" : `${m[4]}:${m[5] ?? "00"}`;
  const ms = Date.parse(`${m[1]}T${m[2] ?? "00:00:00"}${offset}`);
  // Without an offset it is a wall-clock time: its offset near enough for a progress bar.
  return m[3] === undefined && m[4] === undefined ? ms - offsetSeconds(ms, localZone) * 1000 : ms;
}

/**
 * A timestamp column as an instant (timestamptz): `timestamp without time zone` and `date` columns
 * hold wall-clock times in the dataset's `local_time_zone`.
 */
function instantOf(column: string, oid: number | undefined, localZone: string): string {
  if (oid === OID.timestamp) return `(${column} AT TIME ZONE ${literal(localZone)})`;
  if (oid === OID.date) return `(${column}::timestamp AT TIME ZONE ${literal(localZone)})`;
  return column;
}

/**
 * ISO 8601 with offset in the session's time zone, microseconds: 2026-11-01T10:00:00.000000+01:00
 * (the text time.ts describes, the same as SQLite datasets write). Inside FAST_WINDOW one to_char;
 * outside it (rare: before 1973, BC, past 9999, ±infinity) the year, the offset's seconds and the
 * special values are written piece by piece. `inWindow`: the range keeps every value inside.
 */
function timestampText(value: string, utc: boolean, inWindow: boolean): string {
  const fast = `to_char(${value}, 'YYYY-MM-DD"T"HH24:MI:SS.US${utc ? '"Z"' : "TZH:TZM"}')`;
  if (inWindow) return fast;
  const window = utc ? FAST_WINDOW.utc : FAST_WINDOW.zoned;
  // extract(year) counts BC years negative without a year 0; ISO 8601 has year 0 (1 BC).
  const year = `(extract(year from ${value})::int + (extract(year from ${value}) < 0)::int)`;
  const yearText =
    `CASE WHEN ${year} BETWEEN 0 AND 9999 THEN lpad(${year}::text, 4, '0') ` +
    `WHEN ${year} < 0 THEN '-' || lpad((-${year})::text, 6, '0') ELSE '+' || lpad(${year}::text, 6, '0') END`;
  const tz = `abs(extract(timezone from ${value})::int)`;
  const offset = utc
    ? "'Z'"
    : `CASE WHEN extract(timezone from ${value}) < 0 THEN '-' ELSE '+' END || lpad((${tz} / 3600)::text, 2, '0')` +
      ` || ':' || lpad((${tz} / 60 % 60)::text, 2, '0')` +
      ` || CASE WHEN ${tz} % 60 <> 0 THEN ':' || lpad((${tz} % 60)::text, 2, '0') ELSE '' END`;
  const slow =
    `CASE WHEN NOT isfinite(${value}) THEN ${value}::text ` +
    `ELSE ${yearText} || to_char(${value}, '-MM-DD"T"HH24:MI:SS.US') || ${offset} END`;
  return `CASE WHEN ${value} >= ${literal(window.low)} AND ${value} < ${literal(window.high)} THEN ${fast} ELSE ${slow} END`;
}

/** What the column expressions of one read depend on besides the column. */
interface Shape {
  request: ExportRequest;
  types: SourceTypes;
  localZone: string;
  /** The range alone keeps the time column's values inside FAST_WINDOW. */
  timeInWindow: boolean;
  timeColumn: string;
}

function timestampOf(c: DatasetColumnConfig, shape: Shape): string {
  const col = quoteIdent(c.column);
  const value = instantOf(col, shape.types.get(c.column), shape.localZone);
  const inWindow = shape.timeInWindow && c.column === shape.timeColumn && value === col;
  return timestampText(value, shape.request.timezone === "UTC", inWindow);
}

/**
 * A JSON column as JSON text, as stored: a `json` column keeps its own text (duplicate keys, key
 * order, \u0000 escapes, numbers of any size: jsonb would refuse or change some of them), a `jsonb`
 * column its canonical text, a text column is checked to be JSON (::json, which changes nothing).
 * `oneLine`: JSONL, where the raw line breaks json keeps between tokens must go — outside strings
 * (where JSON allows no raw control characters) they are only whitespace. Tabs between tokens stay
 * (COPY escapes them, the scanner undoes it); no other control character can be in valid JSON.
 */
function jsonText(c: DatasetColumnConfig, shape: Shape, oneLine: boolean): string {
  const col = quoteIdent(c.column);
  const oid = shape.types.get(c.column);
  if (oid === OID.jsonb) return `${col}::text`;
  const text = oid === OID.json ? `${col}::text` : `${col}::json::text`;
  return oneLine ? `translate(${text}, E'\\n\\r', '  ')` : text;
}

/** A column as text for CSV: COPY's own output for numbers (exact digits), true/false for booleans. */
function csvExpression(c: DatasetColumnConfig, shape: Shape): string {
  const col = quoteIdent(c.column);
  const csv: Record<ColumnType, () => string> = {
    string: () => `${col}::text`,
    integer: () => col,
    number: () => col,
    boolean: () => `${col}::text`,
    timestamp: () => timestampOf(c, shape),
    json: () => jsonText(c, shape, false),
  };
  const text = csv[c.type]();
  if (!shape.request.csv.formulaGuard || !FORMULA_GUARDED_TYPES.has(c.type)) return text;
  // The formula guard, with the JS encoder's characters: a leading ' keeps a spreadsheet from running it.
  const starts = FORMULA_STARTS.map((ch) => literal(ch)).join(", ");
  return `CASE WHEN left(${text}, 1) IN (${starts}) THEN '''' || ${text} ELSE ${text} END`;
}

/**
 * A column as JSON text for JSONL. Numbers JSON cannot write (NaN, ±Infinity) become strings
 * (to_json's own rule), -0 stays -0; timestamps ±infinity are the strings "infinity", "-infinity".
 */
function jsonExpression(c: DatasetColumnConfig, shape: Shape): string {
  const col = quoteIdent(c.column);
  const json: Record<ColumnType, () => string> = {
    string: () => `to_json(${col}::text)::text`,
    integer: () => `to_json(${col})::text`,
    number: () => `to_json(${col})::text`,
    boolean: () => `to_json(${col})::text`,
    timestamp: () => `to_json(${timestampOf(c, shape)})::text`,
    json: () => jsonText(c, shape, true),
  };
  return `COALESCE(${json[c.type]()}, 'null')`;
}

/**
 * A failure of the source as the export should report it: a request PostgreSQL will always refuse
 * (SQLSTATE class 22 data exception, 42 undefined table or column or no privilege, 0A not supported,
 * 3F no such schema) or a connection it will always refuse (3D no such database, 28 no such role,
 * wrong password, no pg_hba.conf entry — SSL required included) fails at once as source_error, with
 * PostgreSQL's message (it names the column, value, database or role; never the SQL, the URL or the
 * password) and the source's name in the config file. Anything else — connection refused or lost
 * (class 08), server shutting down (57P), out of resources, serialization failures — is thrown as
 * is and retried; so is a syntax error (42601), which would be exportd's own bug and whose message
 * quotes the SQL.
 */
function sourceFailure(err: unknown, dataset: DatasetConfig): unknown {
  const { code, message, detail } = err as { code?: unknown; message?: string; detail?: string };
  if (typeof code !== "string" || !/^(22|42|0A|3F|3D|28)/.test(code) || code === "42601") return err;
  return new ExportFailure(
    "source_error",
    `The source "${dataset.source}" of ${dataset.name} refused the export: ${message}${detail ? ` (${detail})` : ""}.`,
  );
}

/** One JSON object per row, keys in the request's order, built in SQL: `{"a":1,"b":"x"}`. */
function jsonLine(columns: DatasetColumnConfig[], shape: Shape): string {
  const pieces = columns.map(
    (c, i) => `${literal(`${i === 0 ? "{" : ","}${JSON.stringify(c.name)}:`)} || ${jsonExpression(c, shape)}`,
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

  /** A pooled connection; a connection the server will never accept fails as source_error. */
  private async connect(): Promise<pg.PoolClient> {
    try {
      return await this.pool.connect();
    } catch (err) {
      throw sourceFailure(err, this.config);
    }
  }

  /**
   * The PostgreSQL types of the read's columns and the time column (a query that returns no rows),
   * checked against the declared types (ACCEPTED_TYPES).
   */
  private async sourceTypes(client: pg.PoolClient, columns: DatasetColumnConfig[]): Promise<SourceTypes> {
    const names = [...new Set([this.config.timeColumn, ...columns.map((c) => c.column)])];
    const result = await client.query(
      `SELECT ${names.map(quoteIdent).join(", ")} FROM ${quoteIdent(this.config.table)} LIMIT 0`,
    );
    const types = new Map(result.fields.map((f, i) => [names[i] as string, f.dataTypeID]));
    const declared = [
      { column: this.config.timeColumn, type: "timestamp" as ColumnType, name: this.config.timeColumn },
      ...columns.map((c) => ({ column: c.column, type: c.type, name: c.name })),
    ];
    for (const c of declared) {
      const field = result.fields[names.indexOf(c.column)];
      if (!field || acceptsType(c.type, field.dataTypeID, field.dataTypeModifier)) continue;
      const actual = await client.query<{ t: string }>("SELECT format_type($1, $2) AS t", [
        field.dataTypeID,
        field.dataTypeModifier,
      ]);
      throw new ExportFailure(
        "source_error",
        `Column "${c.name}" of ${this.config.name} is declared ${c.type} but is ${actual.rows[0]?.t} in the source; ` +
          `a ${c.type} column must be ${ACCEPTED_TYPES[c.type]?.names}.`,
      );
    }
    return types;
  }

  /**
   * The query scope. A `timestamp without time zone` (or `date`) time column is compared with
   * wall-clock bounds in the dataset's local_time_zone (pgWallBound: its index still serves the range)
   * and then exactly on the instant it is exported as — the same expression that writes it — so a
   * row is exported by the range its exported time is in, also in a repeated or skipped hour.
   */
  private scope(
    tenant: TenantRef,
    request: ExportRequest,
    after: string | null,
    types: SourceTypes,
  ): QueryScope {
    const cursor = after === null ? null : decodeCursor(after);
    const timeType = types.get(this.config.timeColumn);
    const local = timeType === OID.timestamp || timeType === OID.date;
    const zone = this.config.localTimeZone;
    const scope = scopeOf(
      this.config,
      request,
      tenant.name,
      cursor && { time: String(cursor.time), key: cursor.key },
      {
        time: local ? (ms, bound) => pgWallBound(ms, bound, zone, timeType === OID.date) : pgInstant,
        filterValue: (_type, value) => value,
      },
    );
    if (!local) return scope;
    const expression = instantOf(quoteIdent(this.config.timeColumn), timeType, zone);
    return { ...scope, instant: { expression, from: pgInstant(request.from), to: pgInstant(request.to) } };
  }

  /**
   * count(*) with the export's own WHERE: exact, and cheap with an index on (tenant, time, key). When
   * it takes longer than COUNT_TIMEOUT_MS (a huge range without a fitting index), EXPLAIN's row
   * estimate stands in — rough, but instant.
   */
  async estimateRows(tenant: TenantRef, request: ExportRequest): Promise<number | null> {
    const client = await this.connect();
    // statement_timeout is the server's: a connection that stopped answering (a frozen network)
    // never reports it. Dropping the connection fails the estimate and frees the pool's slot.
    const deadline = setTimeout(
      () => (client as unknown as pg.Client).connection.stream.destroy(),
      ESTIMATE_DEADLINE_MS,
    );
    const { bind, values } = placeholders("dollar");
    let sql = "";
    try {
      await client.query("BEGIN READ ONLY");
      await client.query("SELECT set_config('statement_timeout', $1, true)", [String(COUNT_TIMEOUT_MS)]);
      const types = await this.sourceTypes(client, []);
      sql = countQuery(this.config, this.scope(tenant, request, null, types), bind);
      const result = await client.query<{ n: string }>(sql, values);
      await client.query("COMMIT");
      return Number(result.rows[0]?.n ?? 0);
    } catch (err) {
      await client.query("ROLLBACK").catch(() => undefined);
      if ((err as { code?: string }).code !== "57014") throw sourceFailure(err, this.config); // not a statement timeout
      const plan = await client.query<{ "QUERY PLAN": [{ Plan: { "Plan Rows": number } }] }>(
        `EXPLAIN (FORMAT JSON) ${sql}`,
        values,
      );
      return plan.rows[0]?.["QUERY PLAN"][0].Plan["Plan Rows"] ?? null;
    } finally {
      clearTimeout(deadline);
      client.release();
    }
  }

  /**
   * The COPY statement: exported columns, then the time and key as cursor fields. The time is the
   * column itself, which COPY writes as exact ISO text with offset and never quotes (measured: half the
   * cost of extract(epoch …)); a text key could hold the delimiter or a quote, so it travels as hex.
   */
  private copyStatement(options: ReadOptions, types: SourceTypes): string {
    const { request } = options;
    const columns = chosenColumns(this.config, request.columns);
    const key = quoteIdent(this.config.keyColumn);
    const cursor = [
      quoteIdent(this.config.timeColumn),
      this.config.keyType === "integer" ? `${key}::int8` : `encode(convert_to(${key}::text, 'UTF8'), 'hex')`,
    ];
    const scope = this.scope(options.tenant, request, options.after, types);
    const window = request.timezone === "UTC" ? FAST_WINDOW.utc : FAST_WINDOW.zoned;
    const shape: Shape = {
      request,
      types,
      localZone: this.config.localTimeZone,
      timeInWindow: request.from >= window.lowMs && request.to <= FAST_WINDOW.highMs,
      timeColumn: this.config.timeColumn,
    };
    if (request.format === "csv" && this.cursorFields(request, types)) {
      const expressions = columns.map((c) => csvExpression(c, shape));
      const select = selectQuery(this.config, expressions, scope, literal);
      return `COPY (${select}) TO STDOUT WITH (FORMAT csv, DELIMITER ${literal(request.csv.delimiter)})`;
    }
    if (request.format === "jsonl") {
      const select = selectQuery(this.config, [jsonLine(columns, shape), ...cursor], scope, literal);
      return `COPY (${select}) TO STDOUT`;
    }
    const expressions = columns.map((c) => csvExpression(c, shape));
    const select = selectQuery(this.config, [...expressions, ...cursor], scope, literal);
    return `COPY (${select}) TO STDOUT WITH (FORMAT csv, DELIMITER ${literal(request.csv.delimiter)})`;
  }

  /**
   * Where a CSV row already holds its cursor, exactly: the time column (a timestamptz) exported in UTC
   * (to_char's `YYYY-MM-DD"T"HH24:MI:SS.US"Z"`, exact from year 1 on — the range keeps BC and infinity
   * out) and an integer key exported as is. Then COPY needs no cursor fields, which cost PostgreSQL
   * about a tenth of an export's time (timestamptz and int8 output for every row).
   */
  private cursorFields(request: ExportRequest, types: SourceTypes): { time: number; key: number } | null {
    if (request.format !== "csv" || request.timezone !== "UTC" || request.from < YEAR_ONE_MS) return null;
    if (this.config.keyType !== "integer") return null;
    if (types.get(this.config.timeColumn) !== OID.timestamptz) return null;
    const columns = chosenColumns(this.config, request.columns);
    const time = columns.findIndex((c) => c.column === this.config.timeColumn && c.type === "timestamp");
    const key = columns.findIndex((c) => c.column === this.config.keyColumn && c.type === "integer");
    return time < 0 || key < 0 ? null : { time, key };
  }

  async *read(options: ReadOptions): AsyncIterable<EncodedBatch> {
    const { request } = options;
    const decodeKey = (text: string) =>
      this.config.keyType === "integer" ? text : Buffer.from(text, "hex").toString("utf8");

    const client = await this.connect();
    let completed = false;
    let position = 0;
    // An abort (cancel, lost lease, the pipeline's stall guard) drops the connection itself: a source
    // that stopped answering would otherwise hold the query (and a half-closed socket) forever.
    const drop = () => (client as unknown as pg.Client).connection.stream.destroy();
    options.signal.addEventListener("abort", drop, { once: true });
    try {
      await client.query("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY");
      const settings: [string, string][] = [["TimeZone", request.timezone], ...PINNED_SETTINGS];
      await client.query(
        `SELECT ${settings.map((_, i) => `set_config($${2 * i + 1}, $${2 * i + 2}, true)`).join(", ")}`,
        settings.flat(),
      );
      const types = await this.sourceTypes(client, chosenColumns(this.config, request.columns));
      const scanner = new CopyScanner({
        format: request.format === "jsonl" ? "text" : "csv",
        delimiter: request.csv.delimiter,
        newline: request.format === "csv" && csvNewline(request.csv) === "\r\n" ? "\r\n" : "\n",
        cursorFields: this.cursorFields(request, types) ?? undefined,
      });
      // A deep read buffer lets PostgreSQL keep sending while the compressor works on the last batch.
      const stream = client.query(
        new CopyOut(this.copyStatement(options, types), { highWaterMark: 2 * SCAN_BYTES }),
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
          position = Math.max(
            position,
            positionAt(request, copyTimestampMs(lastTime, this.config.localTimeZone)) || 0,
          );
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
    } catch (err) {
      throw sourceFailure(err, this.config);
    } finally {
      options.signal.removeEventListener("abort", drop);
      // A COPY cut off midway (error, abort, or the pipeline stopping early) leaves the connection in
      // an unknown state: destroy it rather than hand it back to the pool.
      client.release(completed ? undefined : new Error("COPY did not complete"));
    }
  }
}
