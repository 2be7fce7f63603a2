/**
 * The scale-out layout in one process: an API-only service and a worker-only service sharing one
 * PostgreSQL database and one S3 bucket. The worker polls only once a minute here, so an export
 * that starts at once proves the NOTIFY path.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { after, before, test } from "node:test";
import { pino } from "pino";
import { loadConfig } from "../../src/config/index.js";
import { createService, type Service } from "../../src/service.js";
import { issueApiKey } from "../../src/usecases/api-keys.js";
import { createTestDatabase, type TestDatabase } from "../helpers/postgres.js";
import { startTestS3, type TestS3 } from "../helpers/s3.js";
import { pastMidnight, tempDir, waitFor } from "../helpers/service.js";

let db: TestDatabase;
let s3: TestS3;
const services: Service[] = [];

before(async () => {
  db = await createTestDatabase();
  s3 = await startTestS3();
});
after(async () => {
  for (const s of services) await s.close();
  await s3.stop();
  await db.dispose();
});

test("API and worker processes on PostgreSQL + S3: NOTIFY wakes the worker; the result downloads", async () => {
  const env = {
    ...s3.env,
    EXPORTD_DATABASE_URL: db.url,
    EXPORTD_DATA_DIR: tempDir(),
    EXPORTD_WORKER_POLL_MS: "60000",
    EXPORTD_LOG_LEVEL: "silent",
  };
  const api = await createService(loadConfig({ ...env, EXPORTD_ROLE: "api" }), pino({ level: "silent" }));
  services.push(api);
  const worker = await createService(
    loadConfig({ ...env, EXPORTD_ROLE: "worker" }),
    pino({ level: "silent" }),
  );
  services.push(worker);
  assert.equal(worker.app, null, "a worker serves no API");
  // Let the worker finish its first (empty) poll and go idle.
  await new Promise((r) => setTimeout(r, 300));

  // exports:download: the status carries signed links only for keys that may download.
  const { key } = await issueApiKey(
    api.store,
    "acme",
    ["exports:read", "exports:write", "exports:download"],
    Date.now(),
  );
  const headers = { authorization: `Bearer ${key}` };
  const to = pastMidnight();
  const created = await api.app!.inject({
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
  const get = async () =>
    (await api.app!.inject({ method: "GET", url: `/v1/exports/${created.json().id}`, headers })).json();
  const started = await waitFor(get, (e) => e.status !== "queued", 10_000);
  assert.ok(
    Date.parse(started.started_at) - Date.parse(started.created_at) < 10_000,
    "picked up long before the next poll",
  );
  const done = await waitFor(get, (e) => e.status === "succeeded", 30_000);
  const part = done.parts[0];
  const bytes = Buffer.from(await (await fetch(part.url)).arrayBuffer());
  assert.equal(createHash("sha256").update(bytes).digest("hex"), part.sha256);
  assert.equal(part.rows, 1800);
  const ready = await api.app!.inject({ method: "GET", url: "/readyz" });
  assert.deepEqual(ready.json().checks, { database: "ok", storage: "ok" });
});
