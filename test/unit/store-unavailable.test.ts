import assert from "node:assert/strict";
import path from "node:path";
import { test } from "node:test";
import { PostgresDriver } from "../../src/metadata/dialect/postgres.js";
import { SqliteDriver } from "../../src/metadata/dialect/sqlite.js";
import { changes } from "../../src/metadata/sql.js";
import { isUnavailable, StoreUnavailableError } from "../../src/metadata/unavailable.js";
import { freePort } from "../helpers/net.js";
import { tempDir } from "../helpers/service.js";

const withCode = (code: string, message = "x") => Object.assign(new Error(message), { code });

test("connection faults of PostgreSQL, the network and SQLite are unavailable; query errors are not", () => {
  for (const err of [
    withCode("ECONNREFUSED"),
    withCode("ECONNRESET"),
    withCode("57P01", "terminating connection due to administrator command"),
    withCode("57P03", "the database system is starting up"),
    withCode("08006"),
    withCode("25006", "cannot execute INSERT in a read-only transaction"),
    withCode("SQLITE_FULL"),
    withCode("SQLITE_BUSY"),
    withCode("SQLITE_IOERR_WRITE"),
    new Error("Connection terminated unexpectedly"),
    new Error("timeout exceeded when trying to connect"),
    new AggregateError([withCode("ECONNREFUSED")], "connect failed"),
    new Error("wrapped", { cause: withCode("57P02") }),
  ]) {
    assert.equal(isUnavailable(err), true, String((err as { code?: string }).code ?? err.message));
  }
  for (const err of [
    withCode("23505", "duplicate key value"),
    withCode("42P01", "relation does not exist"),
    withCode("SQLITE_CONSTRAINT_UNIQUE"),
    withCode("SQLITE_CORRUPT"),
    new TypeError("x is undefined"),
    null,
    "ECONNREFUSED",
  ]) {
    assert.equal(isUnavailable(err), false, String(err));
  }
});

test("both drivers throw StoreUnavailableError for faults and pass other errors through", async () => {
  // SQLite: a real database file that may not grow past its pages (SQLITE_FULL), through every call.
  const sqlite = new SqliteDriver(path.join(tempDir(), "meta.sqlite"));
  await sqlite.changes("CREATE TABLE t (v TEXT)", {});
  await sqlite.rows("PRAGMA max_page_count = 2", {});
  const fill = { v: "x".repeat(100_000) };
  const full = (err: unknown) => {
    assert.ok(err instanceof StoreUnavailableError, String(err));
    assert.match((err.cause as { code: string }).code, /^SQLITE_FULL/);
    return true;
  };
  await assert.rejects(sqlite.changes("INSERT INTO t (v) VALUES (@v)", fill), full);
  await assert.rejects(sqlite.run(changes("INSERT INTO t (v) VALUES (@v)", fill), true), full);
  await assert.rejects(sqlite.rows("SELEC 1", {}), (err: unknown) => !(err instanceof StoreUnavailableError));
  assert.deepEqual(await sqlite.row("SELECT count(*) FROM t", {}), [0], "a fault changes nothing");
  await sqlite.close();

  // PostgreSQL: a port nothing listens on (ECONNREFUSED), for single statements and plans alike.
  const pg = new PostgresDriver(`postgres://postgres@127.0.0.1:${await freePort()}/postgres`);
  const refused = (err: unknown) => {
    assert.ok(err instanceof StoreUnavailableError, String(err));
    assert.equal(isUnavailable(err.cause), true);
    return true;
  };
  await assert.rejects(pg.row("SELECT 1", {}), refused);
  await assert.rejects(pg.run(changes("SELECT 1"), true), refused);
  await pg.close();
});
