/**
 * Crashes of the process running an export, caused for real on the built CLI:
 * - SIGKILL four times during one export, restarted each time on the same data folder: the export
 *   succeeds with its attempt untouched, every part downloads whole (sha256, row count), and no
 *   part published before a kill was deleted or written again.
 * - An export that crashes its worker every time (one row larger than the worker's V8 heap, set
 *   with --max-old-space-size: the process dies of "JavaScript heap out of memory" on that row):
 *   after EXPORTD_MAX_TAKEOVERS takeovers it fails with worker_crashed instead of looping forever.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { after, test } from "node:test";
import { gunzipSync } from "node:zlib";
import Database from "better-sqlite3";
import { stringify } from "yaml";
import {
  api,
  createKey,
  type ExportView,
  filesUnder,
  type ServerProcess,
  startServer,
  stopAll,
  tempDataDir,
} from "../helpers/server-process.js";
import { pastMidnight, waitFor } from "../helpers/service.js";

after(() => stopAll());

const DAY = 86_400_000;
const sha256 = (bytes: Buffer) => createHash("sha256").update(bytes).digest("hex");
const isFinal = (e: ExportView) => e.status !== "queued" && e.status !== "running";

/** The export's counters as the metadata store keeps them (not all are in the API). */
function counters(dataDir: string, id: string): { attempts: number; takeovers: number; runs: number } {
  const db = new Database(path.join(dataDir, "exportd.sqlite"), { readonly: true });
  try {
    return db.prepare("SELECT attempts, takeovers, runs FROM exports WHERE id = ?").get(id) as {
      attempts: number;
      takeovers: number;
      runs: number;
    };
  } finally {
    db.close();
  }
}

test("SIGKILL four times during one export: it succeeds on its first attempt and keeps every published part", async (t) => {
  const env = { EXPORTD_LEASE_SECONDS: "2", EXPORTD_WORKER_CONCURRENCY: "1", EXPORTD_MAX_ATTEMPTS: "3" };
  const to = pastMidnight();
  const body = {
    dataset: "events",
    from: new Date(to - 20 * DAY).toISOString(),
    to: new Date(to).toISOString(),
    format: "csv",
    compression: "gzip",
    part_max_rows: 60_000,
  };
  const expectedRows = (20 * DAY) / 2000; // one demo event per 2-second slot
  let server: ServerProcess = await startServer({ env });
  const dataDir = server.dataDir;
  const key = createKey(dataDir, "acme");
  const created = await api(server.url, key).post("/v1/exports", body);
  assert.equal(created.status, 202, JSON.stringify(created.json));
  const id = created.json.id;

  // Parts seen published before each kill: they must come through every later run untouched.
  const publishedBeforeKills = new Map<number, string>();
  let killedAt = 0;
  for (let kill = 1; kill <= 4; kill++) {
    const http = api(server.url, key);
    const view = await waitFor(
      async () => (await http.get(`/v1/exports/${id}`)).json,
      (e) => isFinal(e) || (e.status === "running" && e.progress.parts > killedAt),
      60_000,
    );
    assert.equal(view.status, "running", `still running at kill ${kill}`);
    for (const p of view.parts) publishedBeforeKills.set(p.index, p.sha256);
    killedAt = view.progress.parts;
    await server.kill9();
    t.diagnostic(`kill ${kill} after ${killedAt} parts`);
    server = await startServer({ dataDir, env });
  }

  const http = api(server.url, key);
  const done = await waitFor(async () => (await http.get(`/v1/exports/${id}`)).json, isFinal, 120_000);
  assert.equal(done.status, "succeeded", JSON.stringify(done.error));
  assert.equal(done.attempts, 1, "four crashes used up no attempt");
  const stored = counters(dataDir, id);
  t.diagnostic(`after 4 kills: ${JSON.stringify(stored)}`);
  assert.deepEqual(stored, { attempts: 1, takeovers: 0, runs: 5 }, "five runs, takeovers reset by progress");

  assert.deepEqual(
    done.parts.map((p) => p.index),
    done.parts.map((_, i) => i),
    "part indexes 0..n-1, each once",
  );
  for (const [index, hash] of publishedBeforeKills) {
    assert.equal(done.parts[index]?.sha256, hash, `part ${index}, published before a kill, is unchanged`);
  }
  let rows = 0;
  for (const p of done.parts) {
    const res = await fetch(p.url);
    assert.equal(res.status, 200, `part ${p.index}`);
    const bytes = Buffer.from(await res.arrayBuffer());
    assert.equal(sha256(bytes), p.sha256, `part ${p.index} sha256`);
    const lines = gunzipSync(bytes).toString().split("\r\n").filter(Boolean);
    assert.equal(lines.length - 1, p.rows, `part ${p.index}: header + its rows`);
    rows += p.rows;
  }
  assert.equal(rows, expectedRows, "every row once");
  // The object store holds exactly the published parts: nothing deleted, nothing half-written.
  const files = filesUnder(path.join(dataDir, "objects")).sort();
  assert.deepEqual(files.length, done.parts.length, files.join(", "));
  assert.deepEqual(
    files.filter((f) => f.includes(".upload-")),
    [],
  );
});

test("an export that crashes its worker every time fails with worker_crashed after the takeover cap", async (t) => {
  // One row holds 80 MB of text; a worker with a 48 MB heap dies on it, every time.
  const dataDir = tempDataDir("exportd-oom-");
  const db = new Database(path.join(dataDir, "notes.sqlite"));
  db.exec(`CREATE TABLE notes (id INTEGER PRIMARY KEY, tenant TEXT NOT NULL, at INTEGER NOT NULL, body TEXT);
    INSERT INTO notes VALUES (1, 'acme', 1000, 'small');
    INSERT INTO notes VALUES (2, 'acme', 2000, hex(zeroblob(40000000)));`);
  db.close();
  const configFile = path.join(dataDir, "exportd.yaml");
  fs.writeFileSync(
    configFile,
    stringify({
      sources: { lite: { type: "sqlite", file: "notes.sqlite" } },
      datasets: {
        notes: {
          source: "lite",
          table: "notes",
          tenant_column: "tenant",
          time_column: "at",
          key_column: "id",
          columns: [
            { name: "id", type: "integer" },
            { name: "body", type: "string" },
          ],
        },
      },
    }),
  );
  const maxTakeovers = 2;
  const env = {
    EXPORTD_CONFIG: configFile,
    EXPORTD_LEASE_SECONDS: "2",
    EXPORTD_MAX_TAKEOVERS: String(maxTakeovers),
  };
  const nodeArgs = ["--max-old-space-size=48"];
  const first = await startServer({ dataDir, env, nodeArgs });
  const key = createKey(dataDir, "acme", undefined, { EXPORTD_CONFIG: configFile });
  const created = await api(first.url, key).post("/v1/exports", {
    dataset: "notes",
    from: "1970-01-01T00:00:00Z",
    to: "1970-01-02T00:00:00Z",
  });
  assert.equal(created.status, 202, JSON.stringify(created.json));
  const id = created.json.id;

  // Each process dies on the row; the next one takes the export over (its pid is gone) and dies
  // too, sometimes before it answers /healthz. The one after the cap fails the export and lives.
  let server: ServerProcess | null = first;
  let crashes = 0;
  for (;;) {
    if (server) {
      // Its output read to the end: the exit may be seen before the last of it.
      await server.closed;
      assert.match(server.output(), /heap out of memory/, `crash ${crashes + 1}: the worker's heap`);
    }
    crashes++;
    if (crashes > maxTakeovers) break;
    server = await startServer({ dataDir, env, nodeArgs }).catch((err: Error) => {
      assert.match(err.message, /heap out of memory/, `crash ${crashes + 1}, while starting`);
      return null;
    });
  }
  // The next process takes the export over once more, sees the cap passed and fails it.
  server = await startServer({ dataDir, env, nodeArgs });
  const http = api(server.url, key);
  const done = await waitFor(async () => (await http.get(`/v1/exports/${id}`)).json, isFinal, 30_000);
  t.diagnostic(`after ${crashes} crashes: ${JSON.stringify(done.error)}`);
  assert.equal(done.status, "failed");
  assert.equal(done.error?.code, "worker_crashed");
  assert.match(done.error?.message ?? "", new RegExp(`crashed its worker ${maxTakeovers + 1} times`));
  assert.equal(done.attempts, 1, "crashes are no failed attempts");
  assert.deepEqual(counters(dataDir, id), { attempts: 1, takeovers: maxTakeovers + 1, runs: crashes + 1 });
  assert.equal(server.child.exitCode, null, "the worker that gave up is alive and well");
  assert.deepEqual(filesUnder(path.join(dataDir, "objects")), [], "no file left behind");
});
