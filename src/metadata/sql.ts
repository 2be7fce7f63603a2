/**
 * The query layer of the metadata store, written once for PostgreSQL and SQLite. Every query is one
 * SQL text with named parameters (`@name`); what the engines spell differently comes from a small
 * Dialect, and a Driver runs the text (SQLite: a prepared better-sqlite3 statement; PostgreSQL: the
 * text compiled once to `$n` placeholders, a named prepared statement on each connection). Rows come
 * back as arrays in the order of the SELECT list, so reading one makes no per-row object.
 *
 * A method that runs several statements is a Plan: a generator that yields each statement and gets
 * its result back. The SQLite driver runs a plan synchronously inside one immediate transaction
 * (better-sqlite3 is synchronous, SQLite has one writer); the PostgreSQL driver runs it on one
 * client between BEGIN and COMMIT. So the logic of a transaction exists once, for both.
 */
import { EXPORT_STATUSES, type ExportStatus } from "../domain/export.js";

/** Named parameter values; SQLite binds them as they are, PostgreSQL by position. */
export type Params = Record<string, unknown>;

/** A row in the order of its SELECT list. */
export type Row = readonly unknown[];

/** What the engines spell differently. Everything else in a query is the same text. */
export interface Dialect {
  readonly name: "postgres" | "sqlite";
  /** The larger of two values: GREATEST in PostgreSQL, the two-argument MAX in SQLite. */
  readonly greatest: string;
  /** Type names in DDL for epoch milliseconds and row counts, and for fractions. */
  readonly bigint: string;
  readonly double: string;
  /**
   * Locks the rows a SELECT reads until the transaction ends (PostgreSQL `FOR UPDATE`); empty in
   * SQLite, whose immediate transactions already hold the database's only write lock.
   */
  readonly forUpdate: string;
  /**
   * The claim's row lock: concurrent PostgreSQL claims pass over rows another transaction holds
   * (SKIP LOCKED) instead of waiting on them or taking the same one. Empty in SQLite.
   */
  readonly skipLocked: string;
  /** `column IN (the values of list parameter @param)`; the parameter's value comes from `list`. */
  inList(column: string, param: string): string;
  /** The value bound for a list parameter: an array for PostgreSQL, JSON text for SQLite. */
  list(values: readonly string[]): unknown;
  /**
   * Statements a transaction runs first to take its turn across processes (PostgreSQL advisory
   * locks); null where the engine's own locking is enough.
   */
  readonly claimLock: string | null;
  readonly migrationLock: string | null;
}

/** How a statement's result is read: its rows, or how many rows it changed, or nothing (DDL scripts). */
export type Mode = "rows" | "changes" | "script";

export interface Step {
  text: string;
  params: Params;
  mode: Mode;
}

/** A sequence of statements with logic in between; see the module comment. */
export type Plan<T> = Generator<Step, T, unknown>;

/** The rows of one statement, inside a plan. */
export function* rows(text: string, params: Params = {}): Plan<Row[]> {
  return (yield { text, params, mode: "rows" }) as Row[];
}

/** How many rows one statement changed, inside a plan. */
export function* changes(text: string, params: Params = {}): Plan<number> {
  return (yield { text, params, mode: "changes" }) as number;
}

/** A DDL script of several statements, inside a plan (migrations). */
export function* script(text: string): Plan<void> {
  yield { text, params: {}, mode: "script" };
}

/** Runs statements for the store; one per engine (dialect/). */
export interface Driver {
  readonly dialect: Dialect;
  /** One statement's rows, without a plan. */
  rows(text: string, params: Params): Promise<Row[]>;
  /** The first row of one statement (undefined: none): the hot path (status reads), no list built. */
  row(text: string, params: Params): Promise<Row | undefined>;
  /**
   * A number that is the same as an earlier one only if nothing was committed to the database in
   * between, by this process or (up to the current turn of the event loop) any other; take it
   * before the reads it vouches for. Null when the engine cannot tell cheaply (PostgreSQL: asking
   * costs the round trip a read costs).
   */
  changeMark(): number | null;
  /** One statement's changed-row count. */
  changes(text: string, params: Params): Promise<number>;
  /**
   * Runs a plan, in one transaction when `transaction`. `unbounded` lifts the per-statement time
   * limits for that transaction (migrations: an index build may take long).
   */
  run<T>(plan: Plan<T>, transaction: boolean, unbounded?: boolean): Promise<T>;
  close(): Promise<void>;
}

/**
 * Each status as an SQL literal, from the domain's table: queries interpolate these instead of
 * spelling a status, so the domain stays the one place that names them.
 */
export const STATUS = Object.fromEntries(EXPORT_STATUSES.map((s) => [s, `'${s}'`])) as Record<
  ExportStatus,
  string
>;

/** `status IN (…)` for a set of statuses from the domain (e.g. `fromStatesFor`). */
export function statusIn(statuses: readonly ExportStatus[], column = "status"): string {
  return `${column} IN (${statuses.map((s) => STATUS[s]).join(", ")})`;
}

/** Each status by its own name, for code that passes one to the domain (`fromStatesFor(NAMED.canceled)`). */
export const NAMED = Object.fromEntries(EXPORT_STATUSES.map((s) => [s, s])) as { [K in ExportStatus]: K };
