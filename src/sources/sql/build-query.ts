/**
 * The SQL that SQL datasets run, shared by PostgreSQL and SQLite. exportd writes every query itself:
 * identifiers come from the validated config file (plain names, quoted anyway), values only ever
 * through a Binder — a bound parameter, or an escaped literal where PostgreSQL's COPY takes none.
 * Every query is scoped to the caller's tenant and the time range, in (time, key) order.
 */
import type { DatasetConfig } from "../../config/file.js";
import type { FilterType } from "../../domain/dataset.js";
import type { ExportRequest } from "../../domain/export.js";

export type SqlValue = string | number | bigint;

/** Turns a value into SQL text: a placeholder (remembering the value) or an escaped literal. */
export type Binder = (value: SqlValue) => string;

/** `"name"`, or `"schema"."table"`; a double quote inside is doubled (config allows none anyway). */
export function quoteIdent(name: string): string {
  return name
    .split(".")
    .map((part) => `"${part.replaceAll('"', '""')}"`)
    .join(".");
}

/** Where a read starts, as the source's own values: time and key of the last row already exported. */
export interface KeysetAfter {
  time: SqlValue;
  key: SqlValue;
}

/** The values a query is scoped by, already converted for the source's driver. */
export interface QueryScope {
  tenant: string;
  from: SqlValue;
  to: SqlValue;
  filters: { column: string; values: SqlValue[] }[];
  after: KeysetAfter | null;
  /**
   * Where `from`/`to` only narrow the time column's stored values (wall-clock times widened to
   * cover every offset), the exact range on the instant each row is exported as: `expression`
   * (SQL of that instant) in [from, to).
   */
  instant?: { expression: string; from: SqlValue; to: SqlValue };
}

/**
 * Builds the scope of a request. `time` converts an instant (epoch ms) and `filterValue` a filter's
 * text value to what the driver compares with the column.
 */
export function scopeOf(
  dataset: DatasetConfig,
  request: ExportRequest,
  tenantName: string,
  after: KeysetAfter | null,
  convert: {
    time(ms: number, bound: "from" | "to"): SqlValue;
    filterValue(type: FilterType, value: string): SqlValue;
  },
): QueryScope {
  const byName = new Map(dataset.filters.map((f) => [f.name, f]));
  return {
    tenant: tenantName,
    from: convert.time(request.from, "from"),
    to: convert.time(request.to, "to"),
    filters: Object.entries(request.filters).flatMap(([name, values]) => {
      const spec = byName.get(name);
      return spec
        ? [{ column: spec.column, values: values.map((v) => convert.filterValue(spec.type, v)) }]
        : [];
    }),
    after,
  };
}

/**
 * The WHERE clause. The tenant condition comes first and is never optional: it is what keeps one
 * tenant's rows from another's. Filters only narrow it further (AND), whatever their values.
 * The keyset condition `(time, key) > (t, k)` resumes after the last exported row without OFFSET,
 * and an index on (tenant, time, key) serves the whole query.
 */
export function whereClause(dataset: DatasetConfig, scope: QueryScope, bind: Binder): string {
  const time = quoteIdent(dataset.timeColumn);
  const conditions = [
    `${quoteIdent(dataset.tenantColumn)} = ${bind(scope.tenant)}`,
    // Resuming, the last row's time is the lower bound: SQLite seeks the index on it, not on the
    // row-value comparison below (which alone made it scan from the start of the range each time).
    `${time} >= ${bind(scope.after ? scope.after.time : scope.from)}`,
    `${time} < ${bind(scope.to)}`,
    ...scope.filters.map((f) => `${quoteIdent(f.column)} IN (${f.values.map(bind).join(", ")})`),
  ];
  if (scope.instant) {
    const { expression, from, to } = scope.instant;
    conditions.push(`${expression} >= ${bind(from)}`, `${expression} < ${bind(to)}`);
  }
  if (scope.after) {
    conditions.push(
      `(${time}, ${quoteIdent(dataset.keyColumn)}) > (${bind(scope.after.time)}, ${bind(scope.after.key)})`,
    );
  }
  return conditions.join(" AND ");
}

/** SELECT of the exported expressions in (time, key) order: the order resuming depends on. */
export function selectQuery(
  dataset: DatasetConfig,
  expressions: string[],
  scope: QueryScope,
  bind: Binder,
): string {
  return (
    `SELECT ${expressions.join(", ")} FROM ${quoteIdent(dataset.table)}` +
    ` WHERE ${whereClause(dataset, scope, bind)}` +
    ` ORDER BY ${quoteIdent(dataset.timeColumn)}, ${quoteIdent(dataset.keyColumn)}`
  );
}

/** The rows an export would produce: the same WHERE as the export itself, so the count is exact. */
export function countQuery(dataset: DatasetConfig, scope: QueryScope, bind: Binder): string {
  return `SELECT count(*) AS n FROM ${quoteIdent(dataset.table)} WHERE ${whereClause(dataset, scope, bind)}`;
}

/** A placeholder binder: `$1, $2, …` (PostgreSQL) or `?` (SQLite), collecting the values to bind. */
export function placeholders(style: "dollar" | "question"): { bind: Binder; values: SqlValue[] } {
  const values: SqlValue[] = [];
  const bind: Binder = (value) => {
    values.push(value);
    return style === "dollar" ? `$${values.length}` : "?";
  };
  return { bind, values };
}

/** Cursors of SQL datasets: the (time, key) of the last exported row, as JSON text. */
export function encodeCursor(time: string | number, key: string): string {
  return JSON.stringify([time, key]);
}

export function decodeCursor(cursor: string): { time: string | number; key: string } {
  const parsed: unknown = JSON.parse(cursor);
  if (!Array.isArray(parsed) || parsed.length !== 2 || typeof parsed[1] !== "string") {
    throw new Error(`not a SQL dataset cursor: ${cursor.slice(0, 100)}`);
  }
  return { time: parsed[0] as string | number, key: parsed[1] };
}

/** Share of the range covered once rows up to `timeMs` are read, 0–1. */
export function positionAt(request: ExportRequest, timeMs: number): number {
  return Math.min(1, Math.max(0, (timeMs - request.from) / Math.max(1, request.to - request.from)));
}
