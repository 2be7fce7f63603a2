/**
 * When the metadata store cannot serve — PostgreSQL down, restarting, failing over, a connection
 * cut; SQLite busy, its disk full or failing — every store method throws one error type,
 * StoreUnavailableError, which the HTTP layer answers with 503 service_unavailable and Retry-After
 * and the worker treats as an outage to wait out. Anything else (a bad query, a constraint) stays
 * what it was: a bug, answered 500.
 */

/** The metadata store cannot serve right now; `cause` is the driver's error. */
export class StoreUnavailableError extends Error {
  constructor(cause: unknown) {
    super(`metadata store unavailable: ${(cause as Error)?.message ?? String(cause)}`, { cause });
    this.name = "StoreUnavailableError";
  }
}

/** Socket errors of a server that is down, unreachable or went away mid-connection. */
const NETWORK_CODES = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ECONNABORTED",
  "EPIPE",
  "ETIMEDOUT",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "ENOTFOUND",
  "EAI_AGAIN",
]);

/**
 * PostgreSQL SQLSTATEs (Appendix A of its manual) that say "not now" rather than "wrong request":
 * 57P01 admin_shutdown (pg_terminate_backend, fast shutdown), 57P02 crash_shutdown, 57P03
 * cannot_connect_now (starting up or shutting down), 53300 too_many_connections, 25006
 * read_only_sql_transaction (a failover left us on a standby), 57014 query_canceled (our
 * statement_timeout: the database is too slow or blocked right now), 55P03 lock_not_available (our
 * lock_timeout: someone holds a lock we need). Class 08 (connection exception) is matched as a whole.
 */
const POSTGRES_CODES = new Set(["57P01", "57P02", "57P03", "53300", "25006", "57014", "55P03"]);

/**
 * SQLite result codes (sqlite.org/rescode.html) of a database that cannot serve now: locked by
 * another writer past busy_timeout, disk full, I/O errors (extended codes SQLITE_IOERR_*), a file
 * that cannot be opened or has become read-only.
 */
const SQLITE_PREFIXES = [
  "SQLITE_BUSY",
  "SQLITE_LOCKED",
  "SQLITE_FULL",
  "SQLITE_IOERR",
  "SQLITE_CANTOPEN",
  "SQLITE_READONLY",
  "SQLITE_PROTOCOL",
  "SQLITE_NOMEM",
];

/** node-postgres and pg-pool raise these as plain Errors, identified only by their message. */
const PG_MESSAGES = [
  "Connection terminated",
  "timeout exceeded when trying to connect",
  "Client has encountered a connection error",
  "Query read timeout",
  "timeout expired",
];

/**
 * Whether `err` means the database is unreachable or refuses to serve for now (as opposed to a
 * query that is wrong). Looks through `cause` and AggregateError's `errors` (a connect that tried
 * IPv4 and IPv6).
 */
export function isUnavailable(err: unknown, depth = 0): boolean {
  if (!err || typeof err !== "object" || depth > 4) return false;
  if (err instanceof StoreUnavailableError) return true;
  const { code, message, cause, errors } = err as {
    code?: unknown;
    message?: unknown;
    cause?: unknown;
    errors?: unknown;
  };
  if (typeof code === "string") {
    if (NETWORK_CODES.has(code) || POSTGRES_CODES.has(code) || /^08[0-9A-Z]{3}$/.test(code)) return true;
    if (SQLITE_PREFIXES.some((prefix) => code.startsWith(prefix))) return true;
  }
  if (typeof message === "string" && PG_MESSAGES.some((m) => message.startsWith(m))) return true;
  if (Array.isArray(errors) && errors.some((e) => isUnavailable(e, depth + 1))) return true;
  return isUnavailable(cause, depth + 1);
}

/**
 * What a driver throws for `err`, a failure of its database call: StoreUnavailableError (with `err`
 * as its cause) when the database cannot serve, else `err` itself. Both drivers pass every failure
 * through it, so every store method throws one error type for an outage, whatever the engine, and
 * no caller has to know SQLSTATEs or SQLite codes.
 */
export function storeError(err: unknown): unknown {
  return isUnavailable(err) && !(err instanceof StoreUnavailableError) ? new StoreUnavailableError(err) : err;
}
