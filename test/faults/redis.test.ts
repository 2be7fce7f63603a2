/**
 * Redis faults against a real exportd process: it starts while Redis is down, and Redis is then
 * started, killed with SIGKILL and started again on the same port. Authenticated requests keep
 * answering throughout (rate limits are counted per process while Redis is away, and still hold);
 * /readyz says 503 naming redis while it is down and 200 once it is back; /metrics follows it.
 */
import assert from "node:assert/strict";
import type { ChildProcess } from "node:child_process";
import { after, test } from "node:test";
import { freePort } from "../helpers/net.js";
import { spawnRedisServer } from "../helpers/redis.js";
import {
  api,
  cli,
  createKey,
  type ErrorBody,
  startServer,
  stopAll,
  tempDataDir,
} from "../helpers/server-process.js";
import { waitFor } from "../helpers/service.js";

let redis: ChildProcess | null = null;

after(async () => {
  await stopRedis("SIGTERM");
  await stopAll();
});

/** Our own redis-server (never the shared one): nothing kept on disk. Returns when it was spawned. */
async function startRedis(port: number): Promise<number> {
  const spawnedAt = Date.now();
  redis = await spawnRedisServer(port);
  return spawnedAt;
}

async function stopRedis(signal: NodeJS.Signals): Promise<void> {
  const child = redis;
  redis = null;
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  child.kill(signal);
  await new Promise((r) => child.once("exit", r));
}

async function metric(url: string, name: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith(`${name} `));
  return line ? Number(line.split(" ")[1]) : Number.NaN;
}

async function readyz(url: string): Promise<{ status: number; body: ErrorBody & { checks?: object } }> {
  const r = await fetch(`${url}/readyz`);
  return { status: r.status, body: (await r.json()) as ErrorBody & { checks?: object } };
}

test("Redis down at start, killed and back: requests keep answering, /readyz and /metrics tell the truth", async () => {
  const port = await freePort();
  const dataDir = tempDataDir("exportd-redis-faults-");
  const env = { EXPORTD_REDIS_URL: `redis://127.0.0.1:${port}` };
  const key = createKey(dataDir, "acme");
  const tight = createKey(dataDir, "tight");
  cli(dataDir, ["tenants", "set", "tight", "--requests-per-minute", "3"]);

  // Start-up with Redis down: the process starts and degrades instead of failing.
  const server = await startServer({ dataDir, env: { ...env, EXPORTD_LOG_LEVEL: "info" } });
  const http = api(server.url, key);
  assert.equal((await http.get("/v1/exports")).status, 200, "answers without Redis");
  const notReady = await readyz(server.url);
  assert.equal(notReady.status, 503);
  assert.equal(notReady.body.error.code, "service_unavailable");
  assert.deepEqual(
    notReady.body.error.details.map((d) => d.field),
    ["redis"],
  );
  assert.equal(await metric(server.url, "exportd_redis_up"), 0);

  let since = await startRedis(port);
  await waitFor(
    () => readyz(server.url),
    (r) => r.status === 200,
    10_000,
  );
  console.log(
    `/readyz 200 ${Date.now() - since} ms after redis-server was spawned (exportd started before it)`,
  );
  assert.equal(await metric(server.url, "exportd_redis_up"), 1);

  // Kill Redis: every request still answers; the per-process fallback still enforces limits.
  await stopRedis("SIGKILL");
  const fallbacksBefore = await metric(server.url, "exportd_rate_limit_fallbacks_total");
  const statuses: number[] = [];
  for (let i = 0; i < 20; i++) statuses.push((await http.get("/v1/exports")).status);
  assert.deepEqual(
    statuses,
    statuses.map(() => 200),
    "every request answered during the outage",
  );
  const tightStatuses: number[] = [];
  for (let i = 0; i < 4; i++) tightStatuses.push((await api(server.url, tight).get("/v1/exports")).status);
  assert.deepEqual(tightStatuses, [200, 200, 200, 429], "3 requests per minute still hold");
  const down = await readyz(server.url);
  assert.equal(down.status, 503);
  assert.deepEqual(
    down.body.error.details.map((d) => d.field),
    ["redis"],
  );
  assert.equal(await metric(server.url, "exportd_redis_up"), 0);
  assert.ok(
    (await metric(server.url, "exportd_rate_limit_fallbacks_total")) >= fallbacksBefore + 24,
    "each request counted in process is counted in the metric",
  );

  since = await startRedis(port);
  await waitFor(
    () => readyz(server.url),
    (r) => r.status === 200,
    10_000,
  );
  console.log(`/readyz 200 ${Date.now() - since} ms after redis-server was spawned again`);
  assert.equal(await metric(server.url, "exportd_redis_up"), 1);
  const fallbacksAfter = await metric(server.url, "exportd_rate_limit_fallbacks_total");
  assert.equal((await http.get("/v1/exports")).status, 200);
  assert.equal(
    await metric(server.url, "exportd_rate_limit_fallbacks_total"),
    fallbacksAfter,
    "counted in Redis again",
  );
  // The server's log arrives through a pipe, apart from its HTTP answers: wait for the line.
  const lines = (text: string, what: string) => text.split("\n").filter((l) => l.includes(what)).length;
  const log = await waitFor(
    () => server.output(),
    (text) => lines(text, "Redis reachable again") >= 2,
  );
  assert.equal(log.split("\n").filter((l) => l.includes("Redis unavailable")).length, 2, "once per outage");
  assert.equal(log.split("\n").filter((l) => l.includes("Redis reachable again")).length, 2);
  assert.equal(server.child.exitCode, null, "still running");
});
