/**
 * Dependencies that hang instead of going down: a TCP proxy that stops forwarding (and reading) in
 * front of a PostgreSQL source and of s3rver, a redis-server paused with SIGSTOP, an objects folder
 * that is a file. Every request answers within its bound, a stalled run is noticed and resumed
 * from its last published part, and every export ends succeeded with all its rows.
 */
import assert from "node:assert/strict";
import type { ChildProcess } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { after, describe, test } from "node:test";
import pg from "pg";
import { stringify } from "yaml";
import { S3ObjectStore } from "../../src/object-store/s3.js";
import { type FreezableProxy, startFreezableProxy } from "../helpers/freezable-proxy.js";
import { freePort } from "../helpers/net.js";
import { createTestDatabase, type TestDatabase } from "../helpers/postgres.js";
import { spawnRedisServer } from "../helpers/redis.js";
import { startTestS3, type TestS3 } from "../helpers/s3.js";
import { pastMidnight, startTestService, type TestService, tempDir, waitFor } from "../helpers/service.js";

interface View {
  id: string;
  status: string;
  attempts: number;
  progress: { parts: number; estimated_rows: number | null };
  error: { code: string; message: string; retryable: boolean } | null;
  parts: { index: number; rows: number; url: string | null }[];
}

const DAY = 86_400_000;
const isFinal = (v: View) => v.status !== "queued" && v.status !== "running";
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** The time `run` takes, in ms, with its result. */
async function timed<T>(run: () => Promise<T>): Promise<[T, number]> {
  const started = Date.now();
  const result = await run();
  return [result, Date.now() - started];
}

function client(svc: TestService, key: string) {
  const headers = { authorization: `Bearer ${key}` };
  return {
    create: (payload: Record<string, unknown>) =>
      svc.app!.inject({ method: "POST", url: "/v1/exports", headers, payload }),
    get: async (id: string) => {
      const res = await svc.app!.inject({ method: "GET", url: `/v1/exports/${id}`, headers });
      assert.equal(res.statusCode, 200, res.body);
      return res.json() as View;
    },
    /** The export once it is final, polled 4 times a second (the key's rate limit is 600 a minute). */
    async final(id: string, timeoutMs = 60_000): Promise<View> {
      return waitFor(
        async () => {
          await sleep(250);
          return this.get(id);
        },
        isFinal,
        timeoutMs,
      );
    },
    cancel: (id: string) => svc.app!.inject({ method: "POST", url: `/v1/exports/${id}/cancel`, headers }),
    list: () => svc.app!.inject({ method: "GET", url: "/v1/exports", headers }),
  };
}

describe("a PostgreSQL source that hangs", () => {
  const ROWS = 30_000;
  const FROM = Date.UTC(2026, 0, 1);
  let db: TestDatabase;
  let proxy: FreezableProxy;
  let svc: TestService;
  let dir: string;
  let api: ReturnType<typeof client>;
  const cleanup: (() => Promise<unknown>)[] = [];
  after(async () => {
    proxy?.thaw();
    await svc?.dispose();
    await proxy?.close();
    for (const c of cleanup) await c();
    await db?.dispose();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  const body = { dataset: "pg_events", from: "2026-01-01", to: "2026-02-01", compression: "none" };

  /** Every id from 1 to ROWS exactly once, read from the export's part files. */
  async function assertAllRows(view: View) {
    assert.equal(view.status, "succeeded", JSON.stringify(view.error));
    const tenant = (await svc.store.findTenantByName("acme"))!;
    const record = (await svc.store.getExport(tenant.id, view.id))!;
    const ids = record.parts.flatMap((p) =>
      fs
        .readFileSync(path.join(svc.dataDir, "objects", p.objectKey), "utf8")
        .split("\n")
        .slice(1)
        .filter((line) => line !== "")
        .map((line) => Number(line.split(",")[0])),
    );
    assert.equal(ids.length, ROWS, "every row once");
    assert.deepEqual(
      [...new Set(ids)].sort((a, b) => a - b),
      Array.from({ length: ROWS }, (_, i) => i + 1),
    );
  }

  test("setup: a database on the shared server behind a freezable proxy", async () => {
    db = await createTestDatabase();
    const admin = new pg.Client({ connectionString: db.url });
    await admin.connect();
    try {
      await admin.query(`
        CREATE TABLE events (id bigint PRIMARY KEY, tenant text NOT NULL, at timestamptz NOT NULL, payload text);
        CREATE INDEX events_scope ON events (tenant, at, id);
        INSERT INTO events
          SELECT i, 'acme', to_timestamp(${FROM / 1000} + i * 60), repeat(md5(i::text), 3)
          FROM generate_series(1, ${ROWS}) AS i;`);
    } finally {
      await admin.end();
    }
    const url = new URL(db.url);
    proxy = await startFreezableProxy({ host: url.hostname, port: Number(url.port || 5432) });
    url.host = `127.0.0.1:${proxy.port}`;
    dir = tempDir("exportd-hangs-");
    const configFile = path.join(dir, "exportd.yaml");
    const dataset = (table: string) => ({
      source: "pg",
      table,
      tenant_column: "tenant",
      time_column: "at",
      key_column: "id",
      columns: [
        { name: "id", column: "id", type: "integer" },
        { name: "at", column: "at", type: "timestamp" },
        { name: "payload", column: "payload", type: "string" },
      ],
      limits: { max_range_days: 366 },
    });
    fs.writeFileSync(
      configFile,
      stringify({
        sources: { pg: { type: "postgres", url: url.toString() } },
        datasets: { pg_events: dataset("events"), pg_missing: dataset("no_such_table") },
      }),
    );
    svc = await startTestService({
      EXPORTD_CONFIG: configFile,
      EXPORTD_SOURCE_STALL_SECONDS: "1",
      EXPORTD_STORAGE_RETRY_SECONDS: "60",
    });
    api = client(svc, await svc.key("acme"));
    const dry = await api.create({ ...body, dry_run: true });
    assert.equal(dry.statusCode, 200, dry.body);
    assert.equal(dry.json().estimated_rows, ROWS);
  });

  test("dry run of a missing table: 502 source_error, not 503", async () => {
    const res = await api.create({ ...body, dataset: "pg_missing", dry_run: true });
    assert.equal(res.statusCode, 502, res.body);
    assert.equal(res.json().error.code, "source_error");
    assert.equal(res.headers["retry-after"], undefined);
  });

  test("source frozen: dry run 503 with Retry-After and create 202 within the estimate wait; the run waits and succeeds after the thaw", async (t) => {
    proxy.freeze();
    const [dry, dryMs] = await timed(() => api.create({ ...body, dry_run: true }));
    assert.equal(dry.statusCode, 503, dry.body);
    assert.equal(dry.json().error.code, "service_unavailable");
    assert.ok(Number(dry.headers["retry-after"]) > 0, "Retry-After");
    const [created, createMs] = await timed(() => api.create(body));
    assert.equal(created.statusCode, 202, created.body);
    assert.equal(created.json().progress.estimated_rows, null, "queued without an estimate");
    t.diagnostic(`frozen source: dry run answered in ${dryMs} ms, create in ${createMs} ms`);
    assert.ok(dryMs < 15_000 && createMs < 15_000, "bounded (4 s estimate wait; generous for liveness)");

    const id = created.json().id as string;
    await sleep(4000);
    assert.equal((await api.get(id)).status, "running", "waits for the source, no failed attempt");
    proxy.thaw();
    const [done, afterThaw] = await timed(() => api.final(id, 60_000));
    t.diagnostic(`succeeded ${afterThaw} ms after the thaw`);
    assert.equal(done.attempts, 1, "the frozen source used up no attempt");
    await assertAllRows(done);
  });

  test("a COPY frozen mid-stream is aborted after the stall time and resumed from its last part on a new connection", async (t) => {
    const created = await api.create({ ...body, part_max_rows: 5000 });
    assert.equal(created.statusCode, 202, created.body);
    const id = created.json().id as string;
    // Hang the connections open once about two parts' worth of COPY output has come back.
    proxy.freezeAfter(1_500_000);
    await waitFor(
      () => proxy.frozen,
      (f) => f,
      30_000,
    );
    const frozenAt = Date.now();
    const done = await api.final(id, 60_000);
    t.diagnostic(`succeeded ${Date.now() - frozenAt} ms after its connection froze (stall 1 s)`);
    assert.equal(done.attempts, 1);
    assert.ok(done.parts.length >= 6, `${done.parts.length} parts`);
    await assertAllRows(done);
  });

  test("source down (connection refused) for a few seconds: ridden out on the first attempt", async (t) => {
    const port = proxy.port;
    await proxy.close();
    const created = await api.create(body);
    assert.equal(created.statusCode, 202, created.body);
    const id = created.json().id as string;
    await sleep(3000);
    assert.equal((await api.get(id)).status, "running");
    proxy = await startFreezableProxy(
      { host: new URL(db.url).hostname, port: Number(new URL(db.url).port || 5432) },
      port,
    );
    const [done, afterUp] = await timed(() => api.final(id, 60_000));
    t.diagnostic(`succeeded ${afterUp} ms after the source came back`);
    assert.equal(done.attempts, 1);
    await assertAllRows(done);
  });
});

test("a source that stays down past the retry budget on every attempt: failed, source_unavailable, retryable", async (t) => {
  const dir = tempDir("exportd-hangs-down-");
  const closedPort = await freePort(); // nothing listens there: connection refused
  const configFile = path.join(dir, "exportd.yaml");
  fs.writeFileSync(
    configFile,
    stringify({
      sources: { pg: { type: "postgres", url: `postgres://postgres@127.0.0.1:${closedPort}/none` } },
      datasets: {
        pg_down: {
          source: "pg",
          table: "events",
          tenant_column: "tenant",
          time_column: "at",
          key_column: "id",
          columns: [{ name: "id", column: "id", type: "integer" }],
        },
      },
    }),
  );
  const svc = await startTestService({
    EXPORTD_CONFIG: configFile,
    EXPORTD_STORAGE_RETRY_SECONDS: "1",
    EXPORTD_MAX_ATTEMPTS: "2",
    EXPORTD_RETRY_BASE_MS: "50",
  });
  try {
    const api = client(svc, await svc.key("acme"));
    const created = await api.create({ dataset: "pg_down", from: "2026-01-01", to: "2026-01-02" });
    assert.equal(created.statusCode, 202, created.body);
    const [done, ms] = await timed(() => api.final(created.json().id, 30_000));
    t.diagnostic(`failed after ${ms} ms (2 attempts × 1 s budget)`);
    assert.equal(done.status, "failed");
    assert.equal(done.attempts, 2);
    assert.equal(done.error?.code, "source_unavailable");
    assert.equal(done.error?.retryable, true);
  } finally {
    await svc.dispose();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

describe("Redis paused with SIGSTOP", () => {
  let redis: ChildProcess | null = null;
  let svc: TestService | null = null;
  after(async () => {
    await svc?.dispose();
    if (redis && redis.exitCode === null) {
      redis.kill("SIGCONT");
      redis.kill("SIGKILL");
      await new Promise((r) => redis!.once("exit", r));
    }
  });

  test("authenticated requests answer within the command timeout, counted per process; shared again after SIGCONT", async (t) => {
    const port = await freePort();
    redis = await spawnRedisServer(port);
    svc = await startTestService({ EXPORTD_REDIS_URL: `redis://127.0.0.1:${port}`, EXPORTD_ROLE: "api" });
    const api = client(svc, await svc.key("acme"));
    const metric = async (name: string) =>
      Number(
        new RegExp(`^${name} (\\S+)`, "m").exec((await svc!.app!.inject({ url: "/metrics" })).body)?.[1],
      );
    const sharedAgain = () =>
      waitFor(
        async () => {
          await sleep(100);
          const res = await api.list();
          assert.equal(res.statusCode, 200, res.body);
          return metric("exportd_redis_up");
        },
        (up) => up === 1,
        10_000,
      );
    // The client connects in the background: wait until requests count in Redis.
    await sharedAgain();
    const fallbacksBefore = await metric("exportd_rate_limit_fallbacks_total");

    redis.kill("SIGSTOP");
    try {
      const times: number[] = [];
      for (let i = 0; i < 5; i++) {
        const [res, ms] = await timed(() => api.list());
        assert.equal(res.statusCode, 200, res.body);
        times.push(ms);
      }
      const ready = await svc.app!.inject({ url: "/readyz" });
      assert.equal(ready.statusCode, 503, "readyz names redis while it does not answer");
      t.diagnostic(`GET /v1/exports during the pause: ${times.join(", ")} ms`);
      assert.ok(Math.max(...times) < 5000, "no request waits for the paused Redis (bound 300 ms)");
      assert.ok(
        (await metric("exportd_rate_limit_fallbacks_total")) > fallbacksBefore,
        "counted per process",
      );
      assert.equal(await metric("exportd_redis_up"), 0);
    } finally {
      redis.kill("SIGCONT");
    }
    await sleep(1100); // past the 1 s before a request tries Redis again
    await sharedAgain();
  });
});

describe("an S3 server that stops answering", () => {
  let s3: TestS3;
  let proxy: FreezableProxy;
  let svc: TestService;
  after(async () => {
    proxy?.thaw();
    await svc?.dispose();
    await proxy?.close();
    await s3?.stop();
  });

  test("the stall becomes retries from the last part; the export succeeds after the thaw; cancel answers at once", async (t) => {
    s3 = await startTestS3("stall");
    proxy = await startFreezableProxy({
      host: "127.0.0.1",
      port: Number(new URL(s3.settings.endpoint!).port),
    });
    svc = await startTestService({
      ...s3.env,
      EXPORTD_S3_ENDPOINT: `http://127.0.0.1:${proxy.port}`,
      EXPORTD_S3_IDLE_TIMEOUT_SECONDS: "1",
      EXPORTD_STORAGE_RETRY_SECONDS: "60",
      EXPORTD_WORKER_CONCURRENCY: "2",
      EXPORTD_SWEEP_INTERVAL_SECONDS: "0.5",
    });
    await svc.store.ensureTenant("acme", Date.now());
    await svc.store.updateTenant("acme", { overrides: { maxRunning: 2 } });
    const api = client(svc, await svc.key("acme"));
    const to = pastMidnight();
    const ids: string[] = [];
    for (let i = 0; i < 2; i++) {
      const created = await api.create({
        dataset: "events",
        from: new Date(to - (4 + i) * DAY).toISOString(),
        to: new Date(to - i * DAY).toISOString(),
        part_max_rows: 40_000,
      });
      assert.equal(created.statusCode, 202, created.body);
      ids.push(created.json().id as string);
    }
    const [keep, doomed] = ids as [string, string];
    await waitFor(
      async () => {
        await sleep(100);
        return Promise.all(ids.map((id) => api.get(id)));
      },
      (vs) => vs.every((v) => v.progress.parts >= 1),
      60_000,
    );
    proxy.freeze();
    const [canceled, cancelMs] = await timed(() => api.cancel(doomed));
    assert.equal(canceled.statusCode, 200, canceled.body);
    const retries = async () =>
      Number(
        /^exportd_storage_retries_total (\d+)/m.exec((await svc.app!.inject({ url: "/metrics" })).body)?.[1],
      );
    const [, toRetry] = await timed(() => waitFor(retries, (n) => n >= 1, 60_000));
    t.diagnostic(`cancel answered in ${cancelMs} ms; first retry pass ${toRetry} ms into the stall`);
    assert.ok(cancelMs < 5000, "cancel does not wait on the hung object store");
    assert.equal((await api.get(keep)).status, "running");
    proxy.thaw();
    const done = await api.final(keep, 90_000);
    assert.equal(done.status, "succeeded", JSON.stringify(done.error));
    assert.equal(done.attempts, 1);
    assert.equal(
      done.parts.reduce((sum, p) => sum + p.rows, 0),
      4 * (DAY / 2000),
      "every demo row (one per 2 s) once",
    );
    // The purge the cancel left behind is done in the background or by the sweeper.
    const store = new S3ObjectStore(s3.settings);
    try {
      await waitFor(
        async () => (await store.list("exports/")).filter((k) => k.includes(doomed)),
        (keys) => keys.length === 0,
        60_000,
      );
    } finally {
      await store.close();
    }
    assert.equal((await api.get(doomed)).status, "canceled");
  });
});

describe("local storage that cannot be read", () => {
  let svc: TestService;
  after(async () => svc?.dispose());

  test("objects folder replaced by a file (ENOTDIR): signed links answer 503 with Retry-After, then 200 once it is back", async () => {
    svc = await startTestService();
    const api = client(svc, await svc.key("acme"));
    const to = pastMidnight();
    const created = await api.create({
      dataset: "events",
      from: new Date(to - DAY).toISOString(),
      to: new Date(to).toISOString(),
    });
    assert.equal(created.statusCode, 202, created.body);
    const done = await api.final(created.json().id);
    assert.equal(done.status, "succeeded");
    const link = new URL(done.parts[0]!.url!);
    const objects = path.join(svc.dataDir, "objects");
    fs.renameSync(objects, `${objects}.away`);
    fs.writeFileSync(objects, "not a folder");
    try {
      const res = await svc.app!.inject({ url: link.pathname + link.search });
      assert.equal(res.statusCode, 503, res.body);
      assert.equal(res.json().error.code, "service_unavailable");
      assert.ok(Number(res.headers["retry-after"]) > 0);
    } finally {
      fs.rmSync(objects);
      fs.renameSync(`${objects}.away`, objects);
    }
    const back = await svc.app!.inject({ url: link.pathname + link.search });
    assert.equal(back.statusCode, 200);
  });
});
