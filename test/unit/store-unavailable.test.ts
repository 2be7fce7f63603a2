import assert from "node:assert/strict";
import { test } from "node:test";
import { guardUnavailable, isUnavailable, StoreUnavailableError } from "../../src/metadata/unavailable.js";

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

test("a guarded store throws StoreUnavailableError for faults, sync and async, and passes other errors through", async () => {
  const store = guardUnavailable({
    syncFull(): number {
      throw withCode("SQLITE_FULL");
    },
    async refused(): Promise<number> {
      throw withCode("ECONNREFUSED");
    },
    async bug(): Promise<number> {
      throw withCode("42601", "syntax error");
    },
    async fine(): Promise<number> {
      return 1;
    },
  });
  assert.throws(() => store.syncFull(), StoreUnavailableError);
  await assert.rejects(store.refused(), (err: unknown) => {
    assert.ok(err instanceof StoreUnavailableError);
    assert.equal((err.cause as { code: string }).code, "ECONNREFUSED");
    return true;
  });
  await assert.rejects(store.bug(), (err: unknown) => !(err instanceof StoreUnavailableError));
  assert.equal(await store.fine(), 1);
});
