/**
 * kill -9 of a worker process while webhook deliveries are pending, for real: PostgreSQL, an API
 * process and two worker processes of the built CLI (run `npm run build` first), a slow receiver
 * so deliveries are in flight when the kill lands. Every event is delivered — the survivor takes
 * over the dead worker's deliveries once their leases lapse — and the only duplicates are
 * deliveries repeated with the same webhook-id and the same body.
 */
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { after, test } from "node:test";
import { createTestDatabase, type TestDatabase } from "../helpers/postgres.js";
import { api, CLI, cli, createKey, startServer, stopAll, tempDataDir } from "../helpers/server-process.js";
import { pastMidnight, waitFor } from "../helpers/service.js";
import { assertSigned, Receiver } from "../helpers/webhook-receiver.js";

const HOUR = 3_600_000;
const EXPORTS = 30;
const children: ChildProcess[] = [];
let db: TestDatabase | null = null;
const receiver = new Receiver();

after(async () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
  await stopAll();
  await receiver.stop();
  await db?.dispose();
});

function worker(dataDir: string, env: Record<string, string>): ChildProcess {
  const child = spawn(process.execPath, [CLI, "serve", "--role", "worker"], {
    env: { ...process.env, ...env, EXPORTD_DATA_DIR: dataDir },
    stdio: ["ignore", "ignore", "ignore"],
  });
  children.push(child);
  return child;
}

test("kill -9 of a worker with deliveries in flight: every event arrives, duplicates only with the same id", async () => {
  db = await createTestDatabase();
  await receiver.start();
  receiver.delayMs = 150;
  const dataDir = tempDataDir("exportd-webhooks-crash-");
  const env = {
    EXPORTD_DATABASE_URL: db.url,
    EXPORTD_LOG_LEVEL: "warn",
    EXPORTD_WEBHOOK_ALLOW_HTTP: "true",
    EXPORTD_WEBHOOK_ALLOW_NETWORKS: "127.0.0.0/8",
    EXPORTD_WEBHOOK_SECRETS_KEY: "a-test-key-shared-by-every-process-0123456789",
    EXPORTD_WEBHOOK_TIMEOUT_SECONDS: "1",
    EXPORTD_WEBHOOK_RETRY_SCALE: "0.01",
    EXPORTD_WEBHOOK_CONCURRENCY: "4",
    EXPORTD_WORKER_POLL_MS: "200",
    EXPORTD_LEASE_SECONDS: "2",
  };
  cli(dataDir, ["migrate"], env);
  const server = await startServer({ dataDir, env: { ...env, EXPORTD_ROLE: "api" } });
  const key = createKey(dataDir, "crash", undefined, env);
  cli(dataDir, ["tenants", "set", "crash", "--max-running", "100", "--max-queued", "1000"], env);
  const client = api(server.url, key);
  const created = await client.post<{ id: string; secret: string }>("/v1/webhook_endpoints", {
    url: receiver.url,
    events: ["export.created", "export.succeeded"],
  });
  assert.equal(created.status, 201);
  const doomed = worker(dataDir, env);
  worker(dataDir, env);

  const to = pastMidnight();
  const ids: string[] = [];
  for (let i = 0; i < EXPORTS; i++) {
    const res = await client.post("/v1/exports", {
      dataset: "events",
      from: new Date(to - HOUR - i * 60_000).toISOString(),
      to: new Date(to - i * 60_000).toISOString(),
    });
    assert.equal(res.status, 202);
    ids.push(res.json.id);
  }
  await waitFor(
    () => receiver.received.length,
    (n) => n >= 8,
  );
  doomed.kill("SIGKILL");
  const inFlightAtKill = EXPORTS * 2 - receiver.received.length;
  assert.ok(inFlightAtKill > 0, "events were still pending at the kill");

  // The log agrees: every delivery delivered — also those the dead worker had sent but not
  // recorded, sent again by the survivor once their leases lapsed (the duplicates).
  const log = await waitFor(
    () =>
      client.get<{ data: { state: string }[] }>(
        `/v1/webhook_endpoints/${created.json.id}/deliveries?limit=100`,
      ),
    (res) => res.json.data.length === EXPORTS * 2 && res.json.data.every((d) => d.state === "delivered"),
    60_000,
  );
  assert.equal(log.json.data.length, EXPORTS * 2);
  assert.equal(new Set(receiver.received.map((r) => r.id)).size, EXPORTS * 2);
  const byId = new Map<string, string>();
  for (const r of receiver.received) {
    assertSigned(created.json.secret, r);
    const seen = byId.get(r.id);
    if (seen !== undefined) assert.equal(r.body, seen, "a duplicate carries the same id and body");
    byId.set(r.id, r.body);
  }
  const exportOf = (type: string) =>
    receiver.ofType(type).map((r) => (r.json.data as { export: { id: string } }).export.id);
  assert.deepEqual([...new Set(exportOf("export.created"))].sort(), [...ids].sort());
  assert.deepEqual([...new Set(exportOf("export.succeeded"))].sort(), [...ids].sort());
  process.stdout.write(
    `# ${receiver.received.length} requests for ${EXPORTS * 2} events (${receiver.received.length - EXPORTS * 2} duplicates), ${inFlightAtKill} not yet received at the kill\n`,
  );
});
