/**
 * The built CLI as a real server process with a config file: a PostgreSQL dataset exported over
 * HTTP and downloaded through its signed link; a bad config file stops the start naming the key.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { gunzipSync } from "node:zlib";
import { parse } from "csv-parse/sync";
import pg from "pg";
import { stringify } from "yaml";
import { createTestDatabase, type TestDatabase } from "../helpers/postgres.js";
import { CLI, createKey, type ServerProcess, startServer, stopAll } from "../helpers/server-process.js";
import { tempDir, waitFor } from "../helpers/service.js";

interface ExportView {
  status: string;
  progress: { rows: number };
  parts: { url: string }[];
}

describe("exportd serve with EXPORTD_CONFIG", () => {
  let db: TestDatabase;
  let dir: string;
  let server: ServerProcess;

  before(async () => {
    db = await createTestDatabase();
    dir = tempDir("exportd-e2e-");
    const client = new pg.Client({ connectionString: db.url });
    await client.connect();
    await client.query(`
      CREATE TABLE orders (id bigint PRIMARY KEY, account text NOT NULL, created_at timestamptz NOT NULL, note text);
      INSERT INTO orders
      SELECT g, CASE WHEN g % 2 = 0 THEN 'acme' ELSE 'globex' END, timestamptz '2026-11-01' + g * interval '1 minute',
             'note ' || g || E',\\n"quoted"'
      FROM generate_series(1, 5000) g;`);
    await client.end();
  });

  after(async () => {
    await stopAll();
    await db?.dispose();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  test("a PostgreSQL dataset exported end to end, only the caller's rows", async () => {
    const config = path.join(dir, "exportd.yaml");
    fs.writeFileSync(
      config,
      stringify({
        demo: false,
        sources: { main: { type: "postgres", url: db.url } },
        datasets: {
          orders: {
            source: "main",
            table: "orders",
            tenant_column: "account",
            time_column: "created_at",
            key_column: "id",
            columns: [
              { name: "id", type: "integer" },
              { name: "created_at", type: "timestamp" },
              { name: "note", type: "string" },
            ],
          },
        },
      }),
    );
    const env = { EXPORTD_CONFIG: config };
    const dataDir = path.join(dir, "data");
    const key = createKey(dataDir, "acme", undefined, env);
    server = await startServer({ dataDir, env });
    const base = server.url;
    const headers = { authorization: `Bearer ${key}`, "content-type": "application/json" };
    const datasets = (await (await fetch(`${base}/v1/datasets`, { headers })).json()) as {
      data: { name: string }[];
    };
    assert.deepEqual(
      datasets.data.map((d) => d.name),
      ["orders"],
    );
    const created = await fetch(`${base}/v1/exports`, {
      method: "POST",
      headers,
      body: JSON.stringify({ dataset: "orders", from: "2026-11-01", to: "2026-11-05", part_max_rows: 1000 }),
    });
    assert.equal(created.status, 202);
    const { id } = (await created.json()) as { id: string };
    const done = await waitFor(
      async () => (await (await fetch(`${base}/v1/exports/${id}`, { headers })).json()) as ExportView,
      (e) => e.status !== "queued" && e.status !== "running",
    );
    assert.equal(done.status, "succeeded");
    assert.equal(done.progress.rows, 2500);
    assert.equal(done.parts.length, 3);
    const ids: number[] = [];
    for (const part of done.parts) {
      const body = gunzipSync(Buffer.from(await (await fetch(part.url)).arrayBuffer())).toString("utf8");
      const rows = parse(body, { columns: true }) as { id: string; note: string; created_at: string }[];
      for (const row of rows) {
        ids.push(Number(row.id));
        assert.equal(row.note, `note ${row.id},\n"quoted"`);
        assert.match(row.created_at, /^2026-11-0\dT\d\d:\d\d:00\.000000Z$/);
      }
    }
    assert.equal(ids.length, 2500);
    assert.ok(ids.every((n, i) => n % 2 === 0 && (i === 0 || n > (ids[i - 1] as number))));
    await server.stop();
  });

  test("a bad config file stops the start and names the key", () => {
    const bad = path.join(dir, "bad.yaml");
    fs.writeFileSync(
      bad,
      "datasets:\n  orders:\n    source: main\n    columns:\n      - { name: id, type: date }\n",
    );
    const result = spawnSync(process.execPath, [CLI, "serve"], {
      env: { ...process.env, EXPORTD_CONFIG: bad, EXPORTD_DATA_DIR: path.join(dir, "bad-data") },
      encoding: "utf8",
    });
    assert.equal(result.status, 2);
    assert.match(result.stderr, /datasets\.orders\.columns\[0\]\.type: must be one of string, integer/);
    assert.match(result.stderr, /datasets\.orders\.source: no source "main"/);
  });
});
