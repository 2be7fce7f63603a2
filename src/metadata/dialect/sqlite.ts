/**
 * SQLite (better-sqlite3, WAL) under the metadata store. SQLite has a single writer, so claiming needs
 * no row locks: a plan runs in one immediate transaction, which holds the write lock from its start.
 * Several processes may share the file (the CLI writes keys while the server runs): busy_timeout
 * makes them wait for each other instead of failing.
 */
import fs from "node:fs";
import path from "node:path";
import Database from "better-sqlite3";
import type { Dialect, Driver, Mode, Params, Plan, Row } from "../sql.js";
import { storeError } from "../unavailable.js";

export const SQLITE: Dialect = {
  name: "sqlite",
  greatest: "MAX",
  bigint: "INTEGER",
  double: "REAL",
  forUpdate: "",
  skipLocked: "",
  // A list travels as one JSON parameter: one statement text whatever the list's length.
  inList: (column, param) => `${column} IN (SELECT value FROM json_each(@${param}))`,
  list: (values) => JSON.stringify(values),
  claimLock: null,
  migrationLock: null,
};

export class SqliteDriver implements Driver {
  readonly dialect = SQLITE;
  private readonly db: Database.Database;
  /** Prepared statements by SQL text: preparing costs more than running a small query. */
  private readonly statements = new Map<string, Database.Statement>();
  /** Runs a plan in one immediate transaction: the write lock from the first statement on. */
  private readonly transaction: Database.Transaction<(plan: Plan<unknown>) => unknown>;
  /**
   * SQLite's count of commits by other connections (PRAGMA data_version: unchanged by this
   * connection's own), and the change mark, moved by each of those and by each statement of ours
   * that may write (better-sqlite3 runs it to its end before anything else runs here).
   */
  private readonly dataVersion: Database.Statement;
  private otherCommits = -1;
  private mark = 0;
  /**
   * Whether otherCommits was read in this turn of the event loop: asking costs SQLite a read
   * transaction, so it is asked once per turn (reset in the turn's check phase) and the requests
   * handled in one turn share the answer. So a commit by another process is seen from the next
   * turn on: a read may miss one made during the current turn (well under a millisecond under
   * load); this process's own writes move the mark at once.
   */
  private askedThisTurn = false;
  private readonly nextTurn = () => {
    this.askedThisTurn = false;
  };

  constructor(file: string) {
    if (file !== ":memory:") fs.mkdirSync(path.dirname(file), { recursive: true });
    this.db = new Database(file);
    this.db.pragma("journal_mode = WAL");
    this.db.pragma("synchronous = NORMAL");
    this.db.pragma("busy_timeout = 5000");
    this.db.pragma("foreign_keys = ON");
    this.transaction = this.db.transaction((plan: Plan<unknown>) => this.drive(plan));
    this.dataVersion = this.db.prepare("PRAGMA data_version").pluck(true);
  }

  changeMark(): number {
    if (this.askedThisTurn) return this.mark;
    let commits: number;
    try {
      commits = this.dataVersion.get() as number;
    } catch (err) {
      throw storeError(err);
    }
    this.askedThisTurn = true;
    setImmediate(this.nextTurn);
    if (commits !== this.otherCommits) {
      this.otherCommits = commits;
      this.mark += 1;
    }
    return this.mark;
  }

  private statement(text: string, mode: Mode): Database.Statement {
    let statement = this.statements.get(text);
    if (!statement) {
      statement = this.db.prepare(text);
      // Arrays in SELECT-list order: no object per row.
      if (mode === "rows") statement.raw(true);
      this.statements.set(text, statement);
    }
    if (!statement.readonly) this.mark += 1;
    return statement;
  }

  private exec(text: string, params: Params, mode: Mode): unknown {
    if (mode === "script") {
      this.mark += 1;
      return this.db.exec(text);
    }
    const statement = this.statement(text, mode);
    return mode === "rows" ? statement.all(params) : statement.run(params).changes;
  }

  /** Runs a plan to its end synchronously, feeding each statement's result back in. */
  private drive<T>(plan: Plan<T>): T {
    let step = plan.next();
    while (!step.done) step = plan.next(this.exec(step.value.text, step.value.params, step.value.mode));
    return step.value;
  }

  /**
   * One statement outside a plan, done when this returns; a failure rejects with what storeError
   * makes of it (StoreUnavailableError for a busy, full or failing database).
   */
  private one(text: string, params: Params, mode: Mode | "row"): Promise<unknown> {
    try {
      return Promise.resolve(
        mode === "row" ? this.statement(text, "rows").get(params) : this.exec(text, params, mode),
      );
    } catch (err) {
      return Promise.reject(storeError(err));
    }
  }

  rows(text: string, params: Params): Promise<Row[]> {
    return this.one(text, params, "rows") as Promise<Row[]>;
  }

  row(text: string, params: Params): Promise<Row | undefined> {
    return this.one(text, params, "row") as Promise<Row | undefined>;
  }

  changes(text: string, params: Params): Promise<number> {
    return this.one(text, params, "changes") as Promise<number>;
  }

  /** Synchronous by nature: a plan is done when this returns (the caller may skip the await). */
  run<T>(plan: Plan<T>, transaction: boolean): Promise<T> {
    try {
      return Promise.resolve(transaction ? (this.transaction.immediate(plan) as T) : this.drive(plan));
    } catch (err) {
      return Promise.reject(storeError(err));
    }
  }

  async close(): Promise<void> {
    try {
      if (this.db.open) this.db.close();
    } catch (err) {
      throw storeError(err);
    }
  }
}
