/**
 * PostgreSQL faults against real exportd processes: an API process and a worker process (the built
 * CLI) on a throwaway PostgreSQL server that this file terminates connections of, and crashes and
 * restarts on the same port. No process may exit; while the database is away every /v1 answer is
 * a 503 service_unavailable with Retry-After (never a 500, never a refused connection); afterwards
 * running exports finish whole and NOTIFY still wakes the worker.
 */
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { after, before, test } from "node:test";
import { gunzipSync } from "node:zlib";
import pg from "pg";
import { type RestartablePostgres, startRestartablePostgres } from "../helpers/restartable-postgres.js";
import {
  api,
  CLI,
  cli,
  createKey,
  type ErrorBody,
  type ExportView,
  type ServerProcess,
  startServer,
  stopAll,
  tempDataDir,
} from "../helpers/server-process.js";
import { pastMidnight, waitFor } from "../helpers/service.js";

let server: RestartablePostgres;
let dbUrl: string;
let apiProcess: ServerProcess;
let worker: ChildProcess;
let workerLog = "";
let http: ReturnType<typeof api>;
const dataDir = tempDataDir("exportd-pg-faults-");
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const to = pastMidnight();

const alive = (child: ChildProcess) => child.exitCode === null && child.signalCode === null;

before(async () => {
  server = await startRestartablePostgres();
  dbUrl = await server.createDatabase("exportd");
  const env = {
    EXPORTD_DATABASE_URL: dbUrl,
    // Short leases: an export whose heartbeats cannot get through is resumed soon after the outage.
    EXPORTD_LEASE_SECONDS: "3",
    EXPORTD_RETRY_BASE_MS: "200",
  };
  apiProcess = await startServer({ dataDir, env: { ...env, EXPORTD_ROLE: "api" } });
  // The worker polls once a minute: an export it starts within seconds was announced by NOTIFY.
  worker = spawn(process.execPath, [CLI, "serve", "--role", "worker"], {
    env: {
      ...process.env,
      ...env,
      EXPORTD_DATA_DIR: dataDir,
      EXPORTD_WORKER_POLL_MS: "60000",
      EXPORTD_LOG_LEVEL: "info",
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  worker.stdout?.on("data", (d: Buffer) => {
    workerLog += d.toString();
  });
  worker.stderr?.on("data", (d: Buffer) => {
    workerLog += d.toString();
  });
  const key = createKey(dataDir, "acme", undefined, env);
  cli(dataDir, ["tenants", "set", "acme", "--max-running", "10", "--requests-per-minute", "100000"], env);
  http = api(apiProcess.url, key);
  // Let the worker subscribe to NOTIFY and go idle.
  await sleep(1000);
  assert.ok(alive(worker), workerLog);
});

after(async () => {
  if (worker && alive(worker)) {
    worker.kill("SIGKILL");
    await new Promise((r) => worker.once("exit", r));
  }
  await stopAll();
  await server?.dispose();
});

function createBody(hours: number, partMaxRows = 10_000) {
  return {
    dataset: "events",
    from: new Date(to - hours * 3_600_000).toISOString(),
    to: new Date(to).toISOString(),
    part_max_rows: partMaxRows,
  };
}

/** Creates an export and returns how long the worker took to start it (ms, by the server's clock). */
async function pickupMs(): Promise<number> {
  const created = await http.post("/v1/exports", createBody(1));
  assert.equal(created.status, 202, JSON.stringify(created.json));
  const started = await waitFor(
    () =>
      http.get<ExportView & { created_at: string; started_at: string | null }>(
        `/v1/exports/${created.json.id}`,
      ),
    (r) => r.json.status === "succeeded",
    20_000,
  );
  return Date.parse(started.json.started_at as string) - Date.parse(started.json.created_at);
}

/** Every part downloads with its sha256 and row count; the rows add up to the range (one per 2 s). */
async function assertWhole(view: ExportView, hours: number): Promise<void> {
  assert.equal(view.status, "succeeded", JSON.stringify(view.error));
  assert.deepEqual(
    view.parts.map((p) => p.index),
    view.parts.map((_, i) => i),
    "each part index once, none missing",
  );
  let rows = 0;
  for (const part of view.parts) {
    const bytes = Buffer.from(await (await fetch(part.url)).arrayBuffer());
    assert.equal(createHash("sha256").update(bytes).digest("hex"), part.sha256, `part ${part.index} sha256`);
    const lines = gunzipSync(bytes).toString().trimEnd().split("\r\n");
    assert.equal(lines.length - 1, part.rows, `part ${part.index} rows (header + rows)`);
    rows += part.rows;
  }
  assert.equal(rows, hours * 1800, "every row of the range, once");
}

test("terminated connections (pg_terminate_backend): both processes survive, answer, and NOTIFY still wakes the worker", async () => {
  // Fill the API's pool with idle connections.
  const warm = await Promise.all(Array.from({ length: 8 }, () => http.get("/v1/exports")));
  for (const r of warm) assert.equal(r.status, 200);
  const admin = new pg.Client({ connectionString: server.url() });
  await admin.connect();
  let terminated: number;
  try {
    const r = await admin.query(
      "SELECT count(pg_terminate_backend(pid))::int AS n FROM pg_stat_activity WHERE datname = 'exportd' AND pid <> pg_backend_pid()",
    );
    terminated = r.rows[0].n;
  } finally {
    await admin.end();
  }
  assert.ok(terminated >= 3, `the API pool, the worker pool and LISTEN were connected (${terminated})`);
  await sleep(500);
  assert.ok(alive(apiProcess.child), `the API process is alive:\n${apiProcess.stderr()}`);
  assert.ok(alive(worker), `the worker process is alive:\n${workerLog}`);
  const list = await http.get("/v1/exports");

  assert.equal(list.status, 200, JSON.stringify(list.json));
  await waitFor(
    () => workerLog,
    (log) => log.includes("queue notifications restored"),
    10_000,
  );
  const ms = await pickupMs();
  console.log(`pickup after pg_terminate_backend: ${ms} ms (poll interval 60 s)`);
  assert.ok(ms < 10_000, `picked up through NOTIFY, not the minute poll (${ms} ms)`);
});

test("PostgreSQL crashes for 6 s while exports run: 503 with Retry-After, nothing refused, no exit; afterwards everything finishes whole", async () => {
  const sizes = [240, 12, 6];
  const ids: string[] = [];
  for (const hours of sizes) {
    const created = await http.post("/v1/exports", createBody(hours, 20_000));
    assert.equal(created.status, 202, JSON.stringify(created.json));
    ids.push(created.json.id);
  }
  // Crash while the large one is running with a part published.
  await waitFor(
    () => http.get(`/v1/exports/${ids[0]}`),
    (r) => r.json.status === "running" && r.json.progress.parts >= 1,
    30_000,
  );
  await server.crash();
  const outageStarted = Date.now();

  const answers: { status: number; code: string | null; retryAfter: string | null }[] = [];
  let refused = 0;
  let readyDuring: { status: number; body: ErrorBody } | null = null;
  // Past the API's one-second caches of keys and tenants, every /v1 request needs the database.
  await sleep(1100);
  while (Date.now() - outageStarted < 6000) {
    for (const send of [
      () => http.get(`/v1/exports/${ids[0]}`),
      () => http.get("/v1/exports"),
      () => http.post("/v1/exports", createBody(1)),
    ]) {
      try {
        const r = await send();
        const body = r.json as unknown as ErrorBody;
        answers.push({
          status: r.status,
          code: body?.error?.code ?? null,
          retryAfter: r.headers.get("retry-after"),
        });
      } catch {
        refused++;
      }
    }
    if (!readyDuring) {
      const r = await fetch(`${apiProcess.url}/readyz`);
      readyDuring = { status: r.status, body: (await r.json()) as ErrorBody };
      const metrics = await fetch(`${apiProcess.url}/metrics`);
      assert.equal(metrics.status, 200, "a scrape works without the database");
      assert.match(await metrics.text(), /exportd_parts_published_total/);
    }
    await sleep(200);
  }
  assert.equal(refused, 0, "no request was refused");
  assert.ok(answers.length >= 9, `requests were answered during the outage (${answers.length})`);
  for (const a of answers) {
    assert.deepEqual(
      { status: a.status, code: a.code, retryAfter: a.retryAfter !== null },
      { status: 503, code: "service_unavailable", retryAfter: true },
    );
  }
  assert.equal(readyDuring?.status, 503);
  assert.equal(readyDuring?.body.error.code, "service_unavailable");
  assert.deepEqual(
    readyDuring?.body.error.details.map((d) => d.field),
    ["database"],
  );

  await server.start();
  const back = Date.now();
  await waitFor(
    () => http.get("/v1/exports"),
    (r) => r.status === 200,
    20_000,
  );
  const firstOk = Date.now() - back;
  console.log(
    `outage ${back - outageStarted} ms: ${answers.length} answered 503, ${refused} refused; first 200 ${firstOk} ms after PostgreSQL was back`,
  );
  assert.ok(alive(apiProcess.child), `the API process is alive:\n${apiProcess.stderr()}`);
  assert.ok(alive(worker), `the worker process is alive:\n${workerLog}`);

  const views = await waitFor(
    () => Promise.all(ids.map((id) => http.get(`/v1/exports/${id}`))),
    (all) => all.every((r) => r.json.status !== "queued" && r.json.status !== "running"),
    60_000,
  );
  const resumed = Date.now() - back;
  console.log(`all exports finished ${resumed} ms after PostgreSQL was back`);
  for (const [i, r] of views.entries()) await assertWhole(r.json, sizes[i] as number);

  // Logged once per outage, not once per poll.
  const claimingLines = workerLog.split("\n").filter((l) => l.includes("claiming waits for it"));
  assert.equal(claimingLines.length, 1, "one log line for the outage of the claim loop");
  assert.match(workerLog, /metadata store reachable again; claiming resumes/);
  await waitFor(
    () => workerLog,
    (log) => log.includes("queue notifications restored"),
    10_000,
  );
  const ms = await pickupMs();
  console.log(`pickup after the restart: ${ms} ms (poll interval 60 s)`);
  assert.ok(ms < 10_000, `picked up through NOTIFY, not the minute poll (${ms} ms)`);
});
