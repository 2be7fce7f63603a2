/**
 * Multi-dataset exports and their zip archive, end to end on the built CLI:
 * - an all-time `account` bundle of three SQL datasets (two PostgreSQL tables, one SQLite table),
 *   downloaded as one zip through its signed link and checked by `unzip -t` and Python's zipfile:
 *   every entry's bytes equal to the part downloaded on its own, the manifest's SHA-256 and CRC-32
 *   verified, the rows of each dataset as in the source;
 * - the archive fetched in two pieces, the second with `curl -C -` (a Range request), is the same
 *   archive byte for byte; HEAD, a range past the end (416) and If-None-Match (304);
 * - kill -9 while a two-dataset export runs in its second dataset: after the restart it goes on in
 *   that dataset after its last part, keeps every part published before the kill, and its archive
 *   checks out.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { gunzipSync } from "node:zlib";
import Database from "better-sqlite3";
import pg from "pg";
import { stringify } from "yaml";
import { createTestDatabase, type TestDatabase } from "../helpers/postgres.js";
import {
  api,
  createKey,
  type ServerProcess,
  startServer,
  stopAll,
  tempDataDir,
} from "../helpers/server-process.js";
import { pastMidnight, waitFor } from "../helpers/service.js";

const DAY = 86_400_000;
const sha256 = (bytes: Buffer) => createHash("sha256").update(bytes).digest("hex");

interface ManifestPart {
  index: number;
  path: string;
  rows: number;
  bytes: number;
  sha256: string;
  crc32: string;
}
interface Manifest {
  complete: boolean;
  range: { all_time: boolean };
  datasets: {
    name: string;
    columns: { name: string; type: string }[];
    rows: number;
    parts: ManifestPart[];
  }[];
}
interface View {
  id: string;
  status: string;
  dataset: string;
  progress: { rows: number; parts: number; bytes: number; dataset: string | null };
  parts: { index: number; dataset: string; rows: number; sha256: string; url: string | null }[];
  archive: { filename: string; bytes: number | null; url: string | null } | null;
  manifest: Manifest | null;
}

/**
 * Python's zipfile on the archive: testzip() (every CRC), and per entry its name, size, whether its
 * header needed ZIP64, and its bytes' SHA-256.
 */
function pythonZip(file: string): {
  bad: string | null;
  entries: { name: string; size: number; sha256: string }[];
} {
  const script = `
import hashlib, json, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    bad = z.testzip()
    out = [{"name": i.filename, "size": i.file_size, "sha256": hashlib.sha256(z.read(i)).hexdigest()} for i in z.infolist()]
print(json.dumps({"bad": bad, "entries": out}))
`;
  return JSON.parse(execFileSync("python3", ["-c", script, file], { encoding: "utf8" }));
}

/** Checks an archive file against its manifest and against the parts downloaded one by one. */
async function checkArchive(file: string, view: View): Promise<Manifest> {
  const unzip = execFileSync("unzip", ["-t", file], { encoding: "utf8" });
  assert.match(unzip, /No errors detected/);
  const py = pythonZip(file);
  assert.equal(py.bad, null, "every CRC-32 matches (Python)");
  const bytes = fs.readFileSync(file);
  const manifestEntry = py.entries[0];
  assert.equal(manifestEntry?.name, "manifest.json", "the manifest comes first");
  const manifest = JSON.parse(
    execFileSync("unzip", ["-p", file, "manifest.json"], { encoding: "utf8" }),
  ) as Manifest;
  assert.deepEqual(manifest, view.manifest, "the manifest in the archive is the one in the status");
  assert.equal(manifest.complete, true);
  const byName = new Map(py.entries.map((e) => [e.name, e]));
  const parts = manifest.datasets.flatMap((d) => d.parts);
  assert.equal(py.entries.length, parts.length + 1, "the manifest and every part, nothing else");
  for (const part of parts) {
    const entry = byName.get(part.path);
    assert.ok(entry, `${part.path} is in the archive`);
    assert.equal(entry.size, part.bytes);
    assert.equal(entry.sha256, part.sha256, `${part.path}: the manifest's SHA-256`);
    // The entry's bytes are the part's bytes, downloaded on its own through its own signed link.
    const own = view.parts.find((p) => p.index === part.index);
    assert.ok(own?.url);
    const alone = Buffer.from(await (await fetch(own.url)).arrayBuffer());
    assert.equal(sha256(alone), part.sha256, `${part.path} equals part ${part.index}`);
    const crc = execFileSync(
      "python3",
      ["-c", "import sys,zlib;print('%08x'%zlib.crc32(sys.stdin.buffer.read()))"],
      {
        input: alone,
        encoding: "utf8",
      },
    ).trim();
    assert.equal(crc, part.crc32, `${part.path}: the manifest's CRC-32`);
  }
  assert.equal(bytes.length, view.archive?.bytes, "the announced length");
  return manifest;
}

describe("zip archives of multi-dataset exports", () => {
  let db: TestDatabase;
  let server: ServerProcess;
  let dir: string;
  let key: string;
  const ROWS = { users: 130, orders: 170, messages: 90 };

  before(async () => {
    db = await createTestDatabase();
    const client = new pg.Client({ connectionString: db.url });
    await client.connect();
    await client.query(`
      CREATE TABLE users (id bigint PRIMARY KEY, tenant text NOT NULL, created_at timestamptz NOT NULL, name text);
      CREATE TABLE orders (id bigint PRIMARY KEY, tenant text NOT NULL, placed_at timestamptz NOT NULL, total bigint, note text);
      INSERT INTO users SELECT g, CASE WHEN g % 10 = 0 THEN 'other' ELSE 'acme' END,
        timestamptz '1960-01-01' + g * interval '97 days', 'user ' || g || ' "quoted", comma'
        FROM generate_series(1, 144) g;
      INSERT INTO orders SELECT g, 'acme', timestamptz '2020-01-01' + g * interval '1 hour', g * 100, 'ünïcødé ' || g
        FROM generate_series(1, ${ROWS.orders}) g;`);
    await client.end();
    dir = tempDataDir("exportd-archives-");
    const lite = new Database(path.join(dir, "messages.sqlite"));
    lite.exec(
      "CREATE TABLE messages (id INTEGER PRIMARY KEY, tenant TEXT NOT NULL, sent_at INTEGER NOT NULL, body TEXT)",
    );
    const insert = lite.prepare("INSERT INTO messages VALUES (?, ?, ?, ?)");
    for (let i = 1; i <= ROWS.messages; i++)
      insert.run(i, "acme", Date.UTC(2024, 0, 1) + i * 60_000, `message ${i}`);
    lite.close();
    const table = (
      source: string,
      name: string,
      time: string,
      columns: { name: string; type: string }[],
    ) => ({
      source,
      table: name,
      tenant_column: "tenant",
      time_column: time,
      key_column: "id",
      columns,
    });
    const config = {
      sources: { pg: { type: "postgres", url: db.url }, lite: { type: "sqlite", file: "messages.sqlite" } },
      datasets: {
        users: table("pg", "users", "created_at", [
          { name: "id", type: "integer" },
          { name: "created_at", type: "timestamp" },
          { name: "name", type: "string" },
        ]),
        orders: table("pg", "orders", "placed_at", [
          { name: "id", type: "integer" },
          { name: "placed_at", type: "timestamp" },
          { name: "total", type: "integer" },
          { name: "note", type: "string" },
        ]),
        messages: table("lite", "messages", "sent_at", [
          { name: "id", type: "integer" },
          { name: "sent_at", type: "timestamp" },
          { name: "body", type: "string" },
        ]),
      },
      bundles: { account: { datasets: ["users", "orders", "messages"], all_time: true } },
    };
    fs.writeFileSync(path.join(dir, "exportd.yaml"), stringify(config));
    server = await startServer({
      env: {
        EXPORTD_CONFIG: path.join(dir, "exportd.yaml"),
        EXPORTD_LEASE_SECONDS: "2",
        EXPORTD_WORKER_CONCURRENCY: "1",
      },
    });
    key = createKey(server.dataDir, "acme");
  });

  after(async () => {
    await stopAll();
    await db?.dispose();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  let account: View;
  let archiveFile: string;

  test("an all-time account bundle of three datasets downloads as one zip that unzip and Python accept", async () => {
    const http = api(server.url, key);
    // A dry run estimates the whole bundle (the sum of its datasets' counts).
    const dry = await http.post<{ dataset: string; estimated_rows: number }>("/v1/exports", {
      bundle: "account",
      dry_run: true,
    });
    assert.equal(dry.status, 200, JSON.stringify(dry.json));
    assert.equal(dry.json.dataset, "account");
    assert.equal(dry.json.estimated_rows, ROWS.users + ROWS.orders + ROWS.messages);
    const created = await http.post("/v1/exports", { bundle: "account", part_max_rows: 50 });
    assert.equal(created.status, 202, JSON.stringify(created.json));
    const view = (await waitFor(
      async () => (await http.get<View>(`/v1/exports/${created.json.id}`)).json,
      (e: View) => e.status !== "queued" && e.status !== "running",
      60_000,
    )) as View;
    assert.equal(view.status, "succeeded", JSON.stringify(view));
    assert.equal(view.dataset, "account");
    assert.equal(view.progress.rows, ROWS.users + ROWS.orders + ROWS.messages);
    assert.ok(view.archive?.url, "a signed link to the archive");
    assert.equal(view.manifest?.range.all_time, true);
    assert.deepEqual(
      view.manifest?.datasets.map((d) => [d.name, d.rows, d.parts.length]),
      [
        ["users", ROWS.users, 3],
        ["orders", ROWS.orders, 4],
        ["messages", ROWS.messages, 2],
      ],
    );
    assert.deepEqual(view.manifest?.datasets[1]?.columns[2], { name: "total", type: "integer" });
    archiveFile = path.join(dir, "account.zip");
    const res = await fetch(view.archive.url);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("content-type"), "application/zip");
    assert.equal(Number(res.headers.get("content-length")), view.archive.bytes);
    fs.writeFileSync(archiveFile, Buffer.from(await res.arrayBuffer()));
    const manifest = await checkArchive(archiveFile, view);
    // The rows are the source's: users from 1960 on (before the epoch, all time), in time order.
    const users = execFileSync("unzip", ["-p", archiveFile, "users/part-000.csv.gz"]);
    const lines = gunzipSync(users).toString("utf8").trim().split("\r\n");
    assert.equal(lines[0], "id,created_at,name");
    assert.match(lines[1] ?? "", /^1,1960-04-07T00:00:00(\.0+)?Z,"user 1 ""quoted"", comma"$/);
    assert.equal(manifest.datasets[0]?.parts[0]?.rows, 50);
    account = view;
  });

  test("the archive resumes with Range (curl -C -) into the identical bytes; HEAD, 416 and 304 answer as for a part", async () => {
    const url = account.archive?.url as string;
    const partial = path.join(dir, "partial.zip");
    const cut = Math.floor((account.archive?.bytes as number) / 3);
    execFileSync("curl", ["-sS", "-f", "-r", `0-${cut - 1}`, "-o", partial, url]);
    assert.equal(fs.statSync(partial).size, cut);
    execFileSync("curl", ["-sS", "-f", "-C", "-", "-o", partial, url]);
    assert.ok(fs.readFileSync(partial).equals(fs.readFileSync(archiveFile)), "resumed archive is identical");

    const head = await fetch(url, { method: "HEAD" });
    assert.equal(head.status, 200);
    assert.equal(Number(head.headers.get("content-length")), account.archive?.bytes);
    const etag = head.headers.get("etag") as string;
    assert.match(etag, /^"zip-/);
    const tail = await fetch(url, { headers: { range: "bytes=-22" } });
    assert.equal(tail.status, 206);
    const end = Buffer.from(await tail.arrayBuffer());
    assert.equal(end.readUInt32LE(0), 0x06054b50, "the last 22 bytes are the end of central directory");
    const past = await fetch(url, { headers: { range: `bytes=${account.archive?.bytes}-` } });
    assert.equal(past.status, 416);
    assert.equal(past.headers.get("content-range"), `bytes */${account.archive?.bytes}`);
    assert.equal(((await past.json()) as { error: { code: string } }).error.code, "range_not_satisfiable");
    const same = await fetch(url, { headers: { "if-none-match": etag } });
    assert.equal(same.status, 304);
    // The download route redirects to the archive too.
    const link = await api(server.url, key).get<{ filename: string }>(
      `/v1/exports/${account.id}/download?archive=zip&redirect=false`,
    );
    assert.equal(link.status, 200);
    assert.equal(link.json.filename, account.archive?.filename);
    // An altered link is refused like a part's.
    const altered = url.replace(/signature=[^&]+/, "signature=AAAA");
    assert.equal((await fetch(altered)).status, 403);
  });

  test("kill -9 in the second dataset: the restarted export goes on there and keeps every earlier part", async () => {
    const to = pastMidnight();
    let http = api(server.url, key);
    const created = await http.post("/v1/exports", {
      datasets: [{ name: "orders" }, { name: "events", columns: ["id", "occurred_at", "type"] }],
      from: new Date(to - 8 * DAY).toISOString().replace("T00:00:00.000Z", ""),
      to: new Date(to).toISOString().replace("T00:00:00.000Z", ""),
      part_max_rows: 40_000,
    });
    // orders has no rows in this range: its one part holds just the header.
    assert.equal(created.status, 202, JSON.stringify(created.json));
    const id = created.json.id as string;
    const running = (await waitFor(
      async () => (await http.get<View>(`/v1/exports/${id}`)).json,
      (e: View) => (e.status !== "running" && e.status !== "queued" ? true : e.progress.parts >= 3),
      60_000,
    )) as View;
    assert.equal(running.status, "running", "still running when killed");
    assert.equal(running.progress.dataset, "events");
    const before = new Map(running.parts.map((p) => [p.index, p.sha256]));
    await server.kill9();
    server = await startServer({
      dataDir: server.dataDir,
      env: {
        EXPORTD_CONFIG: path.join(dir, "exportd.yaml"),
        EXPORTD_LEASE_SECONDS: "2",
        EXPORTD_WORKER_CONCURRENCY: "1",
      },
    });
    http = api(server.url, key);
    const done = (await waitFor(
      async () => (await http.get<View>(`/v1/exports/${id}`)).json,
      (e: View) => e.status !== "queued" && e.status !== "running",
      90_000,
    )) as View;
    assert.equal(done.status, "succeeded", JSON.stringify(done).slice(0, 500));
    for (const [index, hash] of before) {
      assert.equal(done.parts.find((p) => p.index === index)?.sha256, hash, `part ${index} kept`);
    }
    const eventsRows = (8 * DAY) / 2000;
    assert.equal(done.progress.rows, eventsRows);
    assert.deepEqual(
      done.parts.map((p) => p.dataset),
      ["orders", ...Array.from({ length: Math.ceil(eventsRows / 40_000) }, () => "events")],
    );
    const file = path.join(dir, "killed.zip");
    execFileSync("curl", ["-sS", "-f", "-o", file, done.archive?.url as string]);
    await checkArchive(file, done);
  });
});
