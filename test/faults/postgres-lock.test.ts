/**
 * The metadata store's tables locked by another session (a `LOCK TABLE`, a long migration run by
 * hand): requests must not wait as long as the lock. Reads and creates answer 503
 * service_unavailable with Retry-After within the lock timeout, /readyz says the database cannot
 * serve, and everything answers 200 again once the lock is gone.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import pg from "pg";
import { createTestDatabase, type TestDatabase } from "../helpers/postgres.js";
import { pastMidnight, startTestService, type TestService, waitFor } from "../helpers/service.js";

let db: TestDatabase;
let svc: TestService;
let key: string;
let exportId: string;

const inject = (method: "GET" | "POST", url: string, payload?: object) =>
  svc.app!.inject({
    method,
    url,
    headers: { authorization: `Bearer ${key}`, ...(payload ? { "content-type": "application/json" } : {}) },
    ...(payload ? { payload } : {}),
  });

const to = pastMidnight();
const createBody = {
  dataset: "events",
  from: new Date(to - 3_600_000).toISOString(),
  to: new Date(to).toISOString(),
};

before(async () => {
  db = await createTestDatabase();
  svc = await startTestService({ EXPORTD_DATABASE_URL: db.url });
  key = await svc.key("locked");
  const created = await inject("POST", "/v1/exports", createBody);
  assert.equal(created.statusCode, 202);
  exportId = created.json<{ id: string }>().id;
  await waitFor(
    async () => (await inject("GET", `/v1/exports/${exportId}`)).json<{ status: string }>().status,
    (s) => s === "succeeded",
  );
});
after(async () => {
  await svc?.dispose();
  await db?.dispose();
});

test("the exports table locked by another session: 503 with Retry-After within seconds, /readyz 503, then 200 once released", {
  timeout: 60_000,
}, async () => {
  const locker = new pg.Client({ connectionString: db.url });
  await locker.connect();
  try {
    await locker.query("BEGIN");
    await locker.query("LOCK TABLE exports IN ACCESS EXCLUSIVE MODE");
    // A final export may be served from the one-second cache: wait it out so the store is asked.
    await new Promise((r) => setTimeout(r, 1_100));
    for (const [method, url, body] of [
      ["GET", `/v1/exports/${exportId}`, undefined],
      ["GET", "/v1/exports", undefined],
      ["POST", "/v1/exports", createBody],
    ] as const) {
      const started = Date.now();
      const res = await inject(method, url, body);
      const ms = Date.now() - started;
      assert.equal(res.statusCode, 503, `${method} ${url}: ${res.body}`);
      assert.equal(res.json<{ error: { code: string } }>().error.code, "service_unavailable");
      assert.ok(Number(res.headers["retry-after"]) > 0, "Retry-After");
      assert.ok(ms < 8_000, `${method} ${url} answered after ${ms} ms; the lock was held for the whole test`);
    }
    const ready = await svc.app!.inject({ method: "GET", url: "/readyz" });
    assert.equal(ready.statusCode, 503);
    assert.match(ready.body, /database/);
  } finally {
    await locker.query("ROLLBACK").catch(() => undefined);
    await locker.end();
  }
  assert.equal((await inject("GET", `/v1/exports/${exportId}`)).statusCode, 200);
  assert.equal((await inject("POST", "/v1/exports", createBody)).statusCode, 202);
  assert.equal((await svc.app!.inject({ method: "GET", url: "/readyz" })).statusCode, 200);
});
