/**
 * PostgreSQL (node-postgres) under the metadata store, for many API and worker processes. Claiming
 * takes the oldest runnable export with FOR UPDATE SKIP LOCKED, so concurrent workers never wait on,
 * or take, the same row. A trigger (migrations.ts) sends NOTIFY whenever an export is queued, so
 * idle workers in other processes start at once; `subscribe` listens for it.
 */
import pg from "pg";
import type { Dialect, Driver, Mode, Params, Plan, Row } from "../sql.js";
import { storeError } from "../unavailable.js";

export const QUEUE_CHANNEL = "exportd_export_queued";
/** NOTIFY channel of exports whose shown state changed, with the export id (migration 9's trigger). */
export const EXPORT_CHANGED_CHANNEL = "exportd_export_changed";
/** NOTIFY channel of webhook deliveries that became due (migration 7's trigger). */
export const WEBHOOK_CHANNEL = "exportd_webhook_due";
/** Serialise migrations, and claims, across processes (arbitrary constants for pg_advisory_xact_lock). */
const MIGRATION_LOCK = 7_231_001;
const CLAIM_LOCK = 7_231_002;

export const POSTGRES: Dialect = {
  name: "postgres",
  greatest: "GREATEST",
  bigint: "BIGINT",
  double: "DOUBLE PRECISION",
  forUpdate: "FOR UPDATE",
  skipLocked: "FOR UPDATE OF e SKIP LOCKED",
  inList: (column, param) => `${column} = ANY(@${param})`,
  list: (values) => values,
  // Claims take turns (a claim is a few milliseconds): the per-tenant running count is then exact,
  // where concurrent claims could each see one slot free.
  claimLock: `SELECT pg_advisory_xact_lock(${CLAIM_LOCK})`,
  migrationLock: `SELECT pg_advisory_xact_lock(${MIGRATION_LOCK})`,
};

/** BIGINT (oid 20) as a JS number: epoch milliseconds and row counts stay far below 2^53. */
const types = {
  getTypeParser: ((oid: number, format?: "text" | "binary") =>
    oid === 20
      ? (value: string) => Number(value)
      : pg.types.getTypeParser(oid, format)) as typeof pg.types.getTypeParser,
};

/**
 * How long opening a connection may take: while the server is down or unreachable, a request
 * answers 503 within this instead of hanging (pg waits forever by default).
 */
const CONNECT_TIMEOUT_MS = 3000;
/**
 * Bounds on the server's side for a store whose queries are indexed and take milliseconds: a lock
 * held by someone else (a `LOCK TABLE`, a long migration elsewhere) fails a query within
 * LOCK_TIMEOUT_MS (55P03) and any runaway within STATEMENT_TIMEOUT_MS (57014) — both read as
 * "unavailable" (503 + Retry-After, leased writes retried) instead of a request hanging as long
 * as the lock. A process frozen inside a transaction gives its row locks back after
 * IDLE_IN_TRANSACTION_MS, so claims and cancels elsewhere are not blocked by it.
 */
const LOCK_TIMEOUT_MS = 2000;
const STATEMENT_TIMEOUT_MS = 10_000;
const IDLE_IN_TRANSACTION_MS = 30_000;
/** LISTEN reconnects after its connection drops: first after this, doubling up to the cap. */
const RELISTEN_FIRST_MS = 200;
const RELISTEN_MAX_MS = 2000;

/** A query text compiled once: `@name` → `$n`, and the names in `$n` order. */
interface Compiled {
  name: string;
  text: string;
  names: string[];
}

/**
 * Listeners for errors a pool or client emits on its own (an idle connection terminated, the
 * server restarting): without one Node ends the process on the `error` event. The pool drops the
 * broken connection; the next query opens a new one or reports the outage to its caller.
 */
function survivePoolErrors(pool: pg.Pool): pg.Pool {
  const ignore = () => undefined;
  pool.on("error", ignore);
  // pg-pool listens on a client only while it is idle: one checked out (inside a transaction, a
  // COPY) would emit its connection error unheard.
  pool.on("connect", (client) => client.on("error", ignore));
  return pool;
}

type Queryable = pg.Pool | pg.PoolClient;

export class PostgresDriver implements Driver {
  readonly dialect = POSTGRES;
  private readonly pool: pg.Pool;
  private readonly compiled = new Map<string, Compiled>();
  /** The LISTEN connections (one per channel subscribed to). */
  private readonly listeners = new Set<pg.Client>();
  private closed = false;

  constructor(readonly url: string) {
    this.pool = survivePoolErrors(
      new pg.Pool({
        connectionString: url,
        max: 10,
        types,
        connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
        lock_timeout: LOCK_TIMEOUT_MS,
        statement_timeout: STATEMENT_TIMEOUT_MS,
        idle_in_transaction_session_timeout: IDLE_IN_TRANSACTION_MS,
        // Notice a peer that vanished without closing (a failover, a cut network) on idle sockets.
        keepAlive: true,
      }),
    );
  }

  private compile(text: string): Compiled {
    let c = this.compiled.get(text);
    if (!c) {
      const names: string[] = [];
      const sql = text.replace(/@(\w+)/g, (_, name: string) => {
        const at = names.indexOf(name);
        return `$${at >= 0 ? at + 1 : names.push(name)}`;
      });
      // A named statement is parsed and planned once per connection.
      c = { name: `exportd_${this.compiled.size}`, text: sql, names };
      this.compiled.set(text, c);
    }
    return c;
  }

  private async exec(on: Queryable, text: string, params: Params, mode: Mode): Promise<unknown> {
    if (mode === "script") return on.query(text);
    const c = this.compile(text);
    const values = c.names.map((n) => {
      if (!(n in params)) throw new Error(`no value for @${n}`);
      return params[n];
    });
    const result = await on.query({ name: c.name, text: c.text, values, rowMode: "array" });
    return mode === "rows" ? result.rows : (result.rowCount ?? 0);
  }

  private async drive<T>(plan: Plan<T>, on: Queryable): Promise<T> {
    let step = plan.next();
    while (!step.done)
      step = plan.next(await this.exec(on, step.value.text, step.value.params, step.value.mode));
    return step.value;
  }

  /**
   * One statement outside a plan; a failure rejects with what storeError makes of it
   * (StoreUnavailableError while the server is down, unreachable, restarting, failing over or too
   * slow to answer within its bounds).
   */
  private async one(text: string, params: Params, mode: Mode): Promise<unknown> {
    try {
      return await this.exec(this.pool, text, params, mode);
    } catch (err) {
      throw storeError(err);
    }
  }

  rows(text: string, params: Params): Promise<Row[]> {
    return this.one(text, params, "rows") as Promise<Row[]>;
  }

  async row(text: string, params: Params): Promise<Row | undefined> {
    return ((await this.one(text, params, "rows")) as Row[])[0];
  }

  changeMark(): null {
    return null;
  }

  changes(text: string, params: Params): Promise<number> {
    return this.one(text, params, "changes") as Promise<number>;
  }

  async run<T>(plan: Plan<T>, transaction: boolean, unbounded = false): Promise<T> {
    try {
      return await this.transact(plan, transaction, unbounded);
    } catch (err) {
      throw storeError(err);
    }
  }

  private async transact<T>(plan: Plan<T>, transaction: boolean, unbounded: boolean): Promise<T> {
    if (!transaction) return this.drive(plan, this.pool);
    const client = await this.pool.connect();
    try {
      await client.query("BEGIN");
      if (unbounded) await client.query("SET LOCAL statement_timeout = 0; SET LOCAL lock_timeout = 0");
      const result = await this.drive(plan, client);
      await client.query("COMMIT");
      return result;
    } catch (err) {
      await client.query("ROLLBACK").catch(() => undefined);
      throw err;
    } finally {
      client.release();
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    await Promise.all([...this.listeners].map((c) => c.end().catch(() => undefined)));
    this.listeners.clear();
    try {
      await this.pool.end();
    } catch (err) {
      throw storeError(err);
    }
  }

  /**
   * Calls `listener` whenever any process notifies `channel` (by default: queues an export; LISTEN/NOTIFY on a dedicated
   * connection). When that connection drops, it is opened again with back-off (RELISTEN_FIRST_MS
   * doubling to RELISTEN_MAX_MS) until the server answers — also when the first attempt fails;
   * `listener` is then called once without a payload, since notifications sent meanwhile are lost. `onConnection`
   * hears each loss and each return.
   */
  async subscribe(
    listener: (payload?: string) => void,
    onConnection: (connected: boolean, err?: unknown) => void = () => undefined,
    channel: string = QUEUE_CHANNEL,
  ): Promise<void> {
    const open = async (): Promise<void> => {
      const client = new pg.Client({
        connectionString: this.url,
        connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
        keepAlive: true,
      });
      client.on("notification", (message) => listener(message.payload));
      // Only a subscription that was up reconnects; a failed open is the caller's to retry.
      let live = false;
      const reconnect = (err?: unknown) => {
        if (!live || this.closed) return;
        live = false;
        this.listeners.delete(client);
        client.end().catch(() => undefined);
        onConnection(false, err);
        void retry(RELISTEN_FIRST_MS);
      };
      client.on("error", reconnect);
      client.on("end", () => reconnect());
      try {
        await client.connect();
        await client.query(`LISTEN ${channel}`);
      } catch (err) {
        client.end().catch(() => undefined);
        throw err;
      }
      if (this.closed) {
        await client.end().catch(() => undefined);
        return;
      }
      live = true;
      this.listeners.add(client);
    };
    const retry = async (delayMs: number): Promise<void> => {
      await new Promise((resolve) => setTimeout(resolve, delayMs).unref());
      if (this.closed) return;
      try {
        await open();
        onConnection(true);
        listener();
      } catch {
        await retry(Math.min(delayMs * 2, RELISTEN_MAX_MS));
      }
    };
    try {
      await open();
    } catch (err) {
      // The database went away between the start's migrations and here: keep trying.
      onConnection(false, err);
      void retry(RELISTEN_FIRST_MS);
    }
  }
}
