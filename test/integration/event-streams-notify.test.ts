/**
 * Progress streams across API processes on PostgreSQL: a stream held by one API service sees a
 * change made through another at once, by the NOTIFY of migration 9. Both poll the store only once
 * a minute here (EXPORTD_EVENT_POLL_MS=60000), so an event before that can only come from NOTIFY.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import pg from "pg";
import { pino } from "pino";
import { loadConfig } from "../../src/config/index.js";
import { createService, type Service } from "../../src/service.js";
import { issueApiKey } from "../../src/usecases/api-keys.js";
import { createTestDatabase, type TestDatabase } from "../helpers/postgres.js";
import { pastMidnight, tempDir, waitFor } from "../helpers/service.js";

const POLL_MS = 60_000;

let db: TestDatabase;
const services: Service[] = [];

before(async () => {
  db = await createTestDatabase();
});
after(async () => {
  for (const s of services) await s.close();
  await db.dispose();
});

/** The events of a stream as they come: `next()` resolves with the next event's name and data. */
function events(body: ReadableStream<Uint8Array>) {
  const reader = body.getReader();
  let buffer = "";
  return {
    async next(): Promise<{ event: string; data: { status: string } } | null> {
      for (;;) {
        const end = buffer.indexOf("\n\n");
        if (end >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const event = /^event: (.*)$/m.exec(block)?.[1];
          const data = /^data: (.*)$/m.exec(block)?.[1];
          if (event && data) return { event, data: JSON.parse(data) };
          continue;
        }
        const { value, done } = await reader.read();
        if (done) return null;
        buffer += Buffer.from(value).toString();
      }
    },
    cancel: () => reader.cancel(),
  };
}

test("a stream on one API process sees changes made through another before its next poll", async () => {
  const env = {
    EXPORTD_DATABASE_URL: db.url,
    EXPORTD_DATA_DIR: tempDir(),
    EXPORTD_ROLE: "api",
    EXPORTD_EVENT_POLL_MS: String(POLL_MS),
    EXPORTD_LOG_LEVEL: "silent",
  };
  const one = await createService(loadConfig(env), pino({ level: "silent" }));
  services.push(one);
  const other = await createService(loadConfig(env), pino({ level: "silent" }));
  services.push(other);
  await other.app!.listen({ port: 0, host: "127.0.0.1" });
  const { port } = other.app!.server.address() as { port: number };

  const { key } = await issueApiKey(one.store, "acme", ["exports:read", "exports:write"], Date.now());
  const headers = { authorization: `Bearer ${key}` };
  const to = pastMidnight();
  const created = await one.app!.inject({
    method: "POST",
    url: "/v1/exports",
    headers,
    payload: {
      dataset: "events",
      from: new Date(to - 3_600_000).toISOString(),
      to: new Date(to).toISOString(),
    },
  });
  assert.equal(created.statusCode, 202, created.body);
  const id = created.json().id as string;

  const opened = Date.now();
  const res = await fetch(`http://127.0.0.1:${port}/v1/exports/${id}/events`, { headers });
  assert.equal(res.status, 200);
  const stream = events(res.body as ReadableStream<Uint8Array>);
  assert.equal((await stream.next())?.data.status, "queued");

  // The first stream makes its process LISTEN: wait for that before changing anything.
  const admin = new pg.Client({ connectionString: db.url });
  await admin.connect();
  try {
    await waitFor(
      async () =>
        (
          await admin.query(
            "SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND query = 'LISTEN exportd_export_changed'",
          )
        ).rows[0].n as number,
      (n) => n >= 1,
    );
  } finally {
    await admin.end();
  }

  // A worker of the first process takes it: running, on the other process's stream.
  const claimed = await one.store.claimExport({ owner: "test:1", now: Date.now(), leaseMs: 60_000 });
  assert.equal(claimed?.id, id);
  const running = await stream.next();
  assert.equal(running?.event, "progress");
  assert.equal(running?.data.status, "running");

  // Canceled through the first process's API: the final event, then the stream ends.
  const canceled = await one.app!.inject({ method: "POST", url: `/v1/exports/${id}/cancel`, headers });
  assert.equal(canceled.statusCode, 200, canceled.body);
  const final = await stream.next();
  assert.equal(final?.event, "status");
  assert.equal(final?.data.status, "canceled");
  assert.equal(await stream.next(), null);
  // Both arrived before the stream's first poll could have read them.
  assert.ok(Date.now() - opened < POLL_MS, "the events came from NOTIFY, not the poll");
});

test("the LISTEN connection terminated (pg_terminate_backend): one comes back and wakes streams again, none is left over", async () => {
  const env = {
    EXPORTD_DATABASE_URL: db.url,
    EXPORTD_DATA_DIR: tempDir(),
    EXPORTD_ROLE: "api",
    EXPORTD_EVENT_POLL_MS: String(POLL_MS),
    EXPORTD_LOG_LEVEL: "silent",
  };
  const svc = await createService(loadConfig(env), pino({ level: "silent" }));
  services.push(svc);
  await svc.app!.listen({ port: 0, host: "127.0.0.1" });
  const { port } = svc.app!.server.address() as { port: number };
  const { key } = await issueApiKey(svc.store, "relisten", ["exports:read", "exports:write"], Date.now());
  const headers = { authorization: `Bearer ${key}` };
  const to = pastMidnight();
  const ids: string[] = [];
  for (let i = 0; i < 2; i++) {
    const created = await svc.app!.inject({
      method: "POST",
      url: "/v1/exports",
      headers,
      payload: {
        dataset: "events",
        from: new Date(to - 3_600_000 * (i + 1)).toISOString(),
        to: new Date(to).toISOString(),
      },
    });
    assert.equal(created.statusCode, 202, created.body);
    ids.push(created.json().id as string);
  }
  const opened = Date.now();
  const streams = [];
  for (const id of ids) {
    const res = await fetch(`http://127.0.0.1:${port}/v1/exports/${id}/events`, { headers });
    assert.equal(res.status, 200);
    const stream = events(res.body as ReadableStream<Uint8Array>);
    assert.equal((await stream.next())?.data.status, "queued");
    streams.push(stream);
  }
  const admin = new pg.Client({ connectionString: db.url });
  await admin.connect();
  const listeners = async () =>
    (
      await admin.query(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND query = 'LISTEN exportd_export_changed'",
      )
    ).rows.map((r) => r.pid as number);
  try {
    // The first test's services are still open and listen too: every LISTEN on this test
    // database is terminated, and as many must come back under new pids.
    const before = await waitFor(listeners, (pids) => pids.length >= 1);
    await admin.query("SELECT pg_terminate_backend(pid) FROM unnest($1::int[]) AS pid", [before]);
    const again = await waitFor(
      listeners,
      (pids) => pids.length === before.length && pids.every((p) => !before.includes(p)),
      30_000,
    );
    assert.equal(again.length, before.length, "one LISTEN connection per process, none left over");

    // Both exports change at once: each stream hears its own, before any poll.
    for (const _ of ids) {
      const claimed = await svc.store.claimExport({
        owner: "test:relisten",
        now: Date.now(),
        leaseMs: 60_000,
      });
      assert.ok(claimed);
    }
    for (const stream of streams) {
      const running = await stream.next();
      assert.equal(running?.data.status, "running");
      await stream.cancel();
    }
    assert.ok(Date.now() - opened < POLL_MS, "the events came from NOTIFY, not the poll");
    assert.deepEqual((await listeners()).length, before.length);
  } finally {
    await admin.end();
  }
});
