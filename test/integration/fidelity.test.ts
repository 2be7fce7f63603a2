/**
 * Every value exported as stored, in every zone, on PostgreSQL and SQLite, in CSV and JSONL: local
 * days that do not start at midnight, canonical zone names, timestamps outside four-digit years and
 * whole-minute offsets, special numbers and infinities, json as stored, zone-less timestamps (also
 * around Lord Howe's half-hour DST shift), value text whatever the database's settings, and failures
 * that can never succeed (source_error at once): values that do not fit their declared type, JSON5,
 * text that is not UTF-8, timestamps outside Date's range, missing databases, roles and files. Read back with csv-parse, JSON.parse and an
 * independent timestamp parser (test/helpers/iso-time.ts).
 */
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import Database from "better-sqlite3";
import { parse } from "csv-parse/sync";
import pg from "pg";
import { stringify } from "yaml";
import { injectClient } from "../helpers/inject-client.js";
import { intlOffsetSeconds, parseTimestamp } from "../helpers/iso-time.js";
import { createTestDatabase, type TestDatabase } from "../helpers/postgres.js";
import { startTestService, type TestService, tempDir } from "../helpers/service.js";

interface ExportView {
  id: string;
  status: string;
  attempts: number;
  request: { timezone: string };
  error: { code: string; message: string; retryable: boolean } | null;
}

const T0 = Date.UTC(2026, 5, 1);
/** Epoch ms of an astronomical year (0 = 1 BC) at a month, day and time, in UTC. */
function utcMs(year: number, month: number, day: number, h = 0, mi = 0, s = 0, ms = 0): number {
  const d = new Date(0);
  d.setUTCFullYear(year, month - 1, day);
  d.setUTCHours(h, mi, s, ms);
  return d.getTime();
}

/** Instants both sources hold (whole milliseconds), by row id. */
const SHARED_TIMES: [number, number][] = [
  [1, utcMs(1890, 6, 1, 12)], // Europe/Berlin's local mean time, +00:53:28
  [2, utcMs(-43, 3, 15, 12)], // 44 BC
  [3, utcMs(1, 1, 1)],
  [4, utcMs(99, 12, 31, 23, 59, 59, 999)],
  [5, utcMs(1000, 1, 1)],
  [6, utcMs(9999, 12, 31, 23, 59, 59, 999)],
  [7, utcMs(0, 6, 1)], // 1 BC
  [8, utcMs(10000, 1, 1)],
  [9, utcMs(50, 7, 1, 6)], // Date.UTC would read year 50 as 1950
  [10, Date.UTC(2026, 5, 1, 12)],
  [11, utcMs(1960, 6, 1)], // Africa/Monrovia -00:44:30
];

/** PostgreSQL's text for an instant (BC years, no expanded years), as a literal for INSERT. */
function pgLiteral(ms: number): string {
  const iso = new Date(ms).toISOString();
  const dash = iso.indexOf("-", 1);
  const year = Number(iso.slice(0, dash));
  if (year >= 1 && year <= 9999) return iso;
  return year < 1 ? `${String(1 - year).padStart(4, "0")}${iso.slice(dash)} BC` : `${year}${iso.slice(dash)}`;
}

const PG_SETUP = `
  CREATE TABLE fid (id bigint PRIMARY KEY, tenant text NOT NULL, t timestamptz NOT NULL, ts timestamptz,
    tl timestamp, f float8, n numeric, j json, jb jsonb, s text);
  CREATE TABLE fid_local (id bigint PRIMARY KEY, tenant text NOT NULL, t timestamp NOT NULL);
  CREATE TABLE fid_date (id bigint PRIMARY KEY, tenant text NOT NULL, t date NOT NULL);
  INSERT INTO fid_date VALUES (1, 'a', '2026-06-01'), (2, 'a', '2026-06-02');
  CREATE TABLE fid_drop (id bigint PRIMARY KEY, tenant text NOT NULL, t timestamptz NOT NULL, s text);
  INSERT INTO fid_drop VALUES (1, 'a', '2026-06-01T00:00:00Z', 'x');
  CREATE TABLE fid_edge (id bigint PRIMARY KEY, tenant text NOT NULL, t timestamptz NOT NULL, f8 float8,
    f4 real, j json, jt text, iv interval, by bytea, ni numeric(12, 0), nm numeric(10, 3), b text);
  INSERT INTO fid_edge VALUES
    (1, 'a', '2026-06-01T00:01:00Z', 1.7976931348623157e308, 3.4028235e38, E'{"a":\\t1,\\n"b":\\t[2]}',
      E'{"b":\\t2}', '1 day 02:00:00', '\\x00ff', 12, 0.000, E'tab\\there'),
    (2, 'a', '2026-06-01T00:02:00Z', 5e-324, 0.1, NULL, '{a:1}', NULL, NULL, NULL, NULL, NULL);
  -- Lord Howe: 01:30-02:00 on 5 April 2026 is repeated, 02:00-02:30 on 4 October skipped.
  CREATE TABLE fid_lh (id bigint PRIMARY KEY, tenant text NOT NULL, t timestamp NOT NULL);
  INSERT INTO fid_lh VALUES (1, 'a', '2026-04-05 01:45'), (2, 'a', '2026-10-04 02:15'),
    (3, 'a', '2026-04-05 01:20'), (4, 'a', '2026-04-05 02:10');`;

/** Settings of the test's database that would change value text unless an export pins them. */
const HOSTILE_SETTINGS = ["extra_float_digits = 0", "IntervalStyle = iso_8601", "bytea_output = escape"];

/** PostgreSQL-only values: ±infinity, NaN, json as typed. */
const PG_ROWS: Record<number, Partial<Record<"ts" | "tl" | "f" | "n" | "j" | "jb" | "s", string>>> = {
  1: { f: "NaN", n: "NaN", j: '{"a":"\\u0000"}', jb: '{"k":1}', s: "x" },
  2: { f: "Infinity", n: "Infinity", j: '{"a":1,"a":2}', s: "" },
  3: { f: "-Infinity", n: "-Infinity", j: '{"b":1,"a":2}' },
  4: { f: "-0", n: "-0.000", j: '{\n  "big": 1e400,\r\n  "n": 123456789012345678901234567890\n}' },
  6: { tl: "2026-06-01 12:00:00" },
  // Zone-less times in Berlin's skipped and repeated hours.
  10: { tl: "2026-03-29 02:30:00" },
  11: { tl: "2026-10-25 02:30:00" },
  12: { ts: "infinity" },
  13: { ts: "-infinity" },
};

const SQLITE_SETUP = `
  CREATE TABLE fid (id INTEGER PRIMARY KEY, tenant TEXT NOT NULL, t INTEGER NOT NULL, ts, tl TEXT, f, n REAL,
    j TEXT, s TEXT);
  CREATE TABLE fid_text_time (id INTEGER PRIMARY KEY, tenant TEXT NOT NULL, t, s TEXT);
  INSERT INTO fid_text_time VALUES (1, 'a', '2026-06-01 00:00:00', 'x');
  CREATE TABLE fid_loose (id INTEGER PRIMARY KEY, tenant TEXT NOT NULL, t INTEGER NOT NULL, b, s);
  INSERT INTO fid_loose VALUES (1, 'a', 1780272000000, 'false', CAST('héllo' AS BLOB)),
    (2, 'a', 1780272000001, 'TRUE', -0.0), (3, 'a', 1780272000002, 0, 'x');
  CREATE TABLE fid_bad_blob (id INTEGER PRIMARY KEY, tenant TEXT NOT NULL, t INTEGER NOT NULL, s);
  INSERT INTO fid_bad_blob VALUES (1, 'a', 1780272000000, X'FF00FE');
  CREATE TABLE fid_bad (id INTEGER PRIMARY KEY, tenant TEXT NOT NULL, t INTEGER NOT NULL, j TEXT, s TEXT,
    i, n, ts);
  INSERT INTO fid_bad (id, tenant, t, j, s, i, n, ts) VALUES
    (1, 'a', 1780272000001, '{a:1, b:Infinity, c:NaN, d:0x10,}', NULL, NULL, NULL, NULL),
    (2, 'a', 1780272000002, 'NaN', NULL, NULL, NULL, NULL),
    (3, 'a', 1780272000003, '''single''', NULL, NULL, NULL, NULL),
    (4, 'a', 1780272000004, NULL, CAST(X'61FF62EDA08063' AS TEXT), NULL, NULL, NULL),
    (5, 'a', 1780272000005, NULL, CAST(X'EDA080' AS TEXT), NULL, NULL, NULL),
    (6, 'a', 1780272000006, NULL, NULL, 12.5, NULL, NULL),
    (7, 'a', 1780272000007, NULL, NULL, NULL, 'abc', NULL),
    (8, 'a', 1780272000008, NULL, NULL, NULL, NULL, 10000000000000000),
    (9, 'a', 1780272000009, NULL, NULL, NULL, NULL, -8640000000000001),
    (10, 'a', 1780272000010, '{"a":' || char(9) || '1}', 'ok' || char(65533), 3.0, 1.5, 0),
    (11, 'a', 1780272000011, 'null', NULL, NULL, NULL, NULL);`;

const SQLITE_ROWS: Record<number, Partial<Record<"ts" | "tl" | "f" | "n" | "j" | "s", unknown>>> = {
  1: { f: Number.POSITIVE_INFINITY, j: '{"a":"\\u0000","a":2}', s: "nul\u0000inside" },
  2: { f: Number.NEGATIVE_INFINITY, n: -0 },
  3: { f: -0 }, // kept as REAL -0.0: the column has no type, so no affinity turns it into 0
  6: { tl: "2026-06-01 12:00:00" },
  7: { tl: "2026-06-01T12:00:00.123456+05:30" },
  10: { tl: "2026-03-29 02:30:00" },
  11: { tl: "2026-10-25 02:30:00" },
};

const HAVANA = [
  [20, Date.UTC(2026, 2, 8, 4, 30)], // 23:30 on 7 March in Havana
  [21, Date.UTC(2026, 2, 8, 5, 30)], // 01:30 on 8 March: the day began at 01:00 (05:00Z)
] as const;

async function loadPostgres(url: string): Promise<void> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query(PG_SETUP);
    const database = new URL(url).pathname.slice(1);
    for (const setting of HOSTILE_SETTINGS) await client.query(`ALTER DATABASE ${database} SET ${setting}`);
    const rows: [number, string, string, string | null][] = SHARED_TIMES.map(([id, ms]) => [
      id,
      "a",
      new Date(T0 + id * 60_000).toISOString(),
      pgLiteral(ms),
    ]);
    rows.push([12, "a", new Date(T0 + 12 * 60_000).toISOString(), "infinity"]);
    rows.push([13, "a", new Date(T0 + 13 * 60_000).toISOString(), "-infinity"]);
    for (const [id, ms] of HAVANA) rows.push([id, "havana", new Date(ms).toISOString(), null]);
    for (const [id, tenant, t, ts] of rows) {
      const v = PG_ROWS[id] ?? {};
      await client.query("INSERT INTO fid VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)", [
        id,
        tenant,
        t,
        v.ts ?? ts,
        v.tl ?? null,
        v.f ?? null,
        v.n ?? null,
        v.j ?? null,
        v.jb ?? null,
        v.s ?? null,
      ]);
    }
    // Local wall times in Europe/Berlin (the dataset's local_time_zone): 00:30 on 1 June is 31 May 22:30Z.
    await client.query(
      "INSERT INTO fid_local VALUES (1, 'a', '2026-06-01 00:30:00'), (2, 'a', '2026-06-01 23:30:00')",
    );
  } finally {
    await client.end();
  }
}

function loadSqlite(file: string): void {
  const db = new Database(file);
  db.exec(SQLITE_SETUP);
  const insert = db.prepare("INSERT INTO fid VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)");
  for (const [id, ms] of SHARED_TIMES) {
    const v = SQLITE_ROWS[id] ?? {};
    insert.run(
      id,
      "a",
      T0 + id * 60_000,
      ms,
      v.tl ?? null,
      v.f ?? null,
      v.n ?? null,
      v.j ?? null,
      v.s ?? null,
    );
  }
  for (const [id, ms] of HAVANA) insert.run(id, "havana", ms, null, null, null, null, null, null);
  db.close();
}

const base = {
  tenant_column: "tenant",
  time_column: "t",
  key_column: "id",
  local_time_zone: "Europe/Berlin",
};
const idCol = { name: "id", type: "integer" };

/** `url` with a part changed (database, user). */
function withUrl(url: string, change: (u: URL) => void): string {
  const u = new URL(url);
  change(u);
  return u.toString();
}

describe("fidelity: values exported exactly as stored", () => {
  let db: TestDatabase;
  let svc: TestService;
  let dir: string;
  let key: string;
  let havanaKey: string;

  before(async () => {
    db = await createTestDatabase();
    dir = tempDir("exportd-fidelity-");
    await loadPostgres(db.url);
    loadSqlite(path.join(dir, "lite.sqlite"));
    fs.writeFileSync(path.join(dir, "not-a-database.sqlite"), "x".repeat(4096));
    const configFile = path.join(dir, "exportd.yaml");
    const pgColumns = [
      idCol,
      ...["ts", "tl"].map((name) => ({ name, type: "timestamp" })),
      { name: "f", type: "number" },
      { name: "n", type: "number" },
      { name: "j", type: "json" },
      { name: "jb", type: "json" },
      { name: "s", type: "string" },
    ];
    fs.writeFileSync(
      configFile,
      stringify({
        sources: {
          pg: { type: "postgres", url: db.url },
          lite: { type: "sqlite", file: "lite.sqlite" },
          pg_nodb: { type: "postgres", url: withUrl(db.url, (u) => (u.pathname = "/exportd_no_such_db")) },
          pg_norole: { type: "postgres", url: withUrl(db.url, (u) => (u.username = "exportd_no_such_role")) },
          lite_nofile: { type: "sqlite", file: "missing.sqlite" },
          lite_notadb: { type: "sqlite", file: "not-a-database.sqlite" },
        },
        datasets: {
          pg_fid: {
            ...base,
            source: "pg",
            table: "fid",
            columns: pgColumns,
            filters: { id: { type: "integer" } },
          },
          lite_fid: {
            ...base,
            source: "lite",
            table: "fid",
            columns: pgColumns.filter((c) => c.name !== "jb"),
          },
          pg_local: {
            ...base,
            source: "pg",
            table: "fid_local",
            columns: [idCol, { name: "t", type: "timestamp" }],
          },
          pg_date: {
            ...base,
            source: "pg",
            table: "fid_date",
            columns: [idCol, { name: "t", type: "timestamp" }],
          },
          pg_no_table: { ...base, source: "pg", table: "fid_missing", columns: [idCol] },
          pg_no_column: {
            ...base,
            source: "pg",
            table: "fid_drop",
            columns: [idCol, { name: "gone", type: "string" }],
          },
          pg_bad_type: {
            ...base,
            source: "pg",
            table: "fid_drop",
            columns: [idCol, { name: "s", type: "timestamp" }],
          },
          lite_no_table: { ...base, source: "lite", table: "fid_missing", columns: [idCol] },
          lite_no_column: {
            ...base,
            source: "lite",
            table: "fid",
            columns: [idCol, { name: "gone", type: "string" }],
          },
          lite_loose: {
            ...base,
            source: "lite",
            table: "fid_loose",
            columns: [idCol, { name: "b", type: "boolean" }, { name: "s", type: "string" }],
          },
          lite_bad_blob: {
            ...base,
            source: "lite",
            table: "fid_bad_blob",
            columns: [idCol, { name: "s", type: "string" }],
          },
          lite_text_time: { ...base, source: "lite", table: "fid_text_time", columns: [idCol] },
          pg_edge: {
            ...base,
            source: "pg",
            table: "fid_edge",
            columns: [
              idCol,
              { name: "f8", type: "number" },
              { name: "f4", type: "number" },
              { name: "j", type: "json" },
              { name: "jt", type: "json" },
              { name: "iv", type: "string" },
              { name: "by", type: "string" },
              { name: "ni", type: "integer" },
            ],
            filters: { id: { type: "integer" } },
          },
          pg_text_bool: {
            ...base,
            source: "pg",
            table: "fid_edge",
            columns: [idCol, { name: "b", type: "boolean" }],
          },
          pg_numeric_int: {
            ...base,
            source: "pg",
            table: "fid_edge",
            columns: [idCol, { name: "nm", type: "integer" }],
          },
          pg_lh: {
            ...base,
            source: "pg",
            table: "fid_lh",
            local_time_zone: "Australia/Lord_Howe",
            columns: [idCol, { name: "t", type: "timestamp" }],
          },
          pg_no_database: { ...base, source: "pg_nodb", table: "fid", columns: [idCol] },
          pg_no_role: { ...base, source: "pg_norole", table: "fid", columns: [idCol] },
          lite_no_file: { ...base, source: "lite_nofile", table: "fid", columns: [idCol] },
          lite_not_a_database: { ...base, source: "lite_notadb", table: "fid", columns: [idCol] },
          lite_bad: {
            ...base,
            source: "lite",
            table: "fid_bad",
            columns: [
              idCol,
              { name: "j", type: "json" },
              { name: "s", type: "string" },
              { name: "i", type: "integer" },
              { name: "n", type: "number" },
              { name: "ts", type: "timestamp" },
            ],
            filters: { id: { type: "integer" } },
          },
        },
      }),
    );
    svc = await startTestService({ EXPORTD_CONFIG: configFile, EXPORTD_RETRY_BASE_MS: "1" });
    key = await svc.key("a");
    havanaKey = await svc.key("havana");
  });

  after(async () => {
    await svc?.dispose();
    await db?.dispose();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  async function create(body: Record<string, unknown>, apiKey = key) {
    return svc.app!.inject({
      method: "POST",
      url: "/v1/exports",
      headers: { authorization: `Bearer ${apiKey}` },
      payload: { from: "2026-06-01T00:00:00Z", to: "2026-06-02T00:00:00Z", compression: "none", ...body },
    });
  }

  async function run(
    body: Record<string, unknown>,
    apiKey = key,
  ): Promise<{ view: ExportView; text: string }> {
    const res = await create(body, apiKey);
    assert.equal(res.statusCode, 202, res.body);
    const id = (res.json() as ExportView).id;
    const view = await injectClient<ExportView>(svc, apiKey).settled(id, 30_000);
    if (view.status !== "succeeded") return { view, text: "" };
    const tenantName = apiKey === key ? "a" : "havana";
    const record = await svc.store.getExport((await svc.store.findTenantByName(tenantName))!.id, id);
    const text = record!.parts
      .map((p) => fs.readFileSync(path.join(svc.dataDir, "objects", p.objectKey), "utf8"))
      .join("");
    return { view, text };
  }

  /** Rows as objects: CSV with NULL (empty) told apart from "" (quoted); JSONL values as JSON texts. */
  async function rowsOf(
    dataset: string,
    format: "csv" | "jsonl",
    body: Record<string, unknown> = {},
    apiKey = key,
  ) {
    const { view, text } = await run({ dataset, format, ...body }, apiKey);
    assert.equal(view.status, "succeeded", JSON.stringify(view.error));
    if (format === "csv") {
      const [header, ...rows] = parse(text, {
        cast: (value, context) => (context.quoting ? value : value === "" ? null : value),
      }) as (string | null)[][];
      return rows.map((r) => Object.fromEntries(r.map((v, i) => [header?.[i] as string, v])));
    }
    return text
      .split("\n")
      .filter(Boolean)
      .map((line) => JSON.parse(line) as Record<string, unknown>);
  }

  for (const source of ["pg", "lite"] as const) {
    const dataset = `${source}_fid`;
    for (const format of ["csv", "jsonl"] as const) {
      test(`${source} ${format}: a local day that starts at 01:00 (America/Havana, 2026-03-08) holds exactly its rows`, async () => {
        const day = async (from: string, to: string) =>
          (
            await rowsOf(
              dataset,
              format,
              { from, to, timezone: "America/Havana", columns: ["id"] },
              havanaKey,
            )
          ).map((r) => String(r.id));
        assert.deepEqual(await day("2026-03-07", "2026-03-08"), ["20"]);
        assert.deepEqual(await day("2026-03-08", "2026-03-09"), ["21"]);
        // A local date-time in the skipped hour reads as Temporal's "compatible": 00:30 → 01:30 (05:30Z).
        assert.deepEqual(await day("2026-03-08T00:30", "2026-03-08T01:31"), ["21"]);
      });

      for (const zone of ["Europe/Berlin", "UTC", "America/Havana", "Africa/Monrovia"]) {
        test(`${source} ${format} ${zone}: every timestamp parses back to the stored instant with the zone's exact offset`, async () => {
          const rows = await rowsOf(dataset, format, { timezone: zone, columns: ["id", "ts"] });
          const byId = new Map(rows.map((r) => [String(r.id), r.ts]));
          for (const [id, ms] of SHARED_TIMES) {
            const text = byId.get(String(id));
            assert.equal(typeof text, "string", `row ${id}`);
            const parsed = parseTimestamp(text as string);
            assert.equal(parsed.micros, BigInt(ms) * 1000n, `row ${id}: ${text}`);
            assert.equal(
              parsed.offset,
              zone === "UTC" ? null : intlOffsetSeconds(ms, zone),
              `offset of ${text}`,
            );
          }
          if (source === "pg") {
            assert.equal(byId.get("12"), "infinity");
            assert.equal(byId.get("13"), "-infinity");
          }
        });
      }
    }

    test(`${source}: both formats write special numbers one way, never as NULL`, async () => {
      const csv = new Map(
        (await rowsOf(dataset, "csv", { columns: ["id", "f", "n"] })).map((r) => [String(r.id), r]),
      );
      const jsonl = new Map(
        (await rowsOf(dataset, "jsonl", { columns: ["id", "f", "n"] })).map((r) => [String(r.id), r]),
      );
      const cases: [string, "f" | "n", string, unknown][] =
        source === "pg"
          ? [
              ["1", "f", "NaN", "NaN"],
              ["1", "n", "NaN", "NaN"],
              ["2", "f", "Infinity", "Infinity"],
              ["2", "n", "Infinity", "Infinity"],
              ["3", "f", "-Infinity", "-Infinity"],
              ["3", "n", "-Infinity", "-Infinity"],
              ["4", "f", "-0", -0],
            ]
          : [
              ["1", "f", "Infinity", "Infinity"],
              ["2", "f", "-Infinity", "-Infinity"],
              ["3", "f", "-0", -0],
            ];
      for (const [id, column, csvText, jsonValue] of cases) {
        assert.equal(csv.get(id)?.[column], csvText, `CSV ${column} of ${id}`);
        assert.ok(
          Object.is(jsonl.get(id)?.[column], jsonValue),
          `JSONL ${column} of ${id}: ${jsonl.get(id)?.[column]}`,
        );
      }
      assert.equal(csv.get("5")?.f, null);
      assert.equal(jsonl.get("5")?.f, null);
    });

    test(`${source}: a zone-less timestamp is a wall-clock time in the dataset's local_time_zone`, async () => {
      for (const [zone, expected] of [
        ["UTC", "2026-06-01T10:00:00.000000Z"],
        ["Europe/Berlin", "2026-06-01T12:00:00.000000+02:00"],
        ["America/Havana", "2026-06-01T06:00:00.000000-04:00"],
      ]) {
        for (const format of ["csv", "jsonl"] as const) {
          const rows = await rowsOf(dataset, format, { timezone: zone, columns: ["id", "tl"] });
          if (zone === "UTC") {
            // Both sources read them as PostgreSQL does: forward by the gap, the later of a repeated hour.
            assert.equal(rows.find((r) => String(r.id) === "10")?.tl, "2026-03-29T01:30:00.000000Z");
            assert.equal(rows.find((r) => String(r.id) === "11")?.tl, "2026-10-25T01:30:00.000000Z");
          }
          assert.equal(rows.find((r) => String(r.id) === "6")?.tl, expected, `${format} ${zone}`);
          if (source === "lite") {
            // Text with an offset keeps it, microseconds included.
            assert.equal(
              parseTimestamp(rows.find((r) => String(r.id) === "7")?.tl as string).micros,
              BigInt(Date.UTC(2026, 5, 1, 6, 30)) * 1000n + 123_456n,
            );
          }
        }
      }
    });

    test(`${source}: failures that can never succeed fail at once as source_error, naming what is wrong`, async () => {
      type Case = [string, RegExp, Record<string, unknown>?];
      const bad = (id: number) => ({ filters: { id: String(id) } });
      const cases: Case[] = [
        [`${source}_no_table`, /fid_missing/],
        [`${source}_no_column`, /gone/],
        ...(source === "pg"
          ? ([
              ["pg_bad_type", /"s".*declared timestamp.*text/],
              ["pg_text_bool", /"b".*declared boolean but is text/],
              ["pg_numeric_int", /"nm".*declared integer but is numeric\(10,3\)/],
              // PostgreSQL's json refuses JSON5, as SQLite datasets do.
              ["pg_edge", /invalid input syntax for type json/, bad(2)],
              ["pg_no_database", /source "pg_nodb".*"exportd_no_such_db" does not exist/],
              ["pg_no_role", /source "pg_norole".*exportd_no_such_role/],
            ] as Case[])
          : ([
              ["lite_text_time", /2026-06-01 00:00:00.*epoch milliseconds/],
              ["lite_bad_blob", /"s" of the row with key "1" holds a BLOB of 3 bytes that are not UTF-8/],
              ["lite_no_file", /source "lite_nofile".*unable to open/],
              ["lite_not_a_database", /source "lite_notadb".*not a database/],
              ...[1, 2, 3].map((id) => [
                "lite_bad",
                new RegExp(`"j" of the row with key "${id}" holds text that is not JSON`),
                bad(id),
              ]),
              ...[4, 5].map((id) => [
                "lite_bad",
                new RegExp(`"s" of the row with key "${id}" holds a BLOB of \\d+ bytes that are not UTF-8`),
                bad(id),
              ]),
              ["lite_bad", /"i" of the row with key "6" holds the number 12.5/, bad(6)],
              ["lite_bad", /"n" of the row with key "7" holds the text "abc"/, bad(7)],
              [
                "lite_bad",
                /"ts" of the row with key "8" holds 10000000000000000 \(epoch milliseconds\), outside/,
                bad(8),
              ],
              [
                "lite_bad",
                /"ts" of the row with key "9" holds -8640000000000001 \(epoch milliseconds\), outside/,
                bad(9),
              ],
            ] as Case[])),
      ];
      for (const [name, names, body] of cases) {
        for (const format of ["csv", "jsonl"] as const) {
          const { view } = await run({ dataset: name, format, ...body });
          assert.equal(view.status, "failed", `${name} ${JSON.stringify(body)}`);
          assert.equal(view.attempts, 1, `${name} is not retried: ${view.error?.message}`);
          assert.equal(view.error?.code, "source_error", name);
          assert.equal(view.error?.retryable, false);
          assert.match(view.error?.message ?? "", names);
          assert.doesNotMatch(view.error?.message ?? "", /SELECT|COPY|postgres:\/\//);
        }
      }
    });
  }

  test("both sources write the same text for the same instant, in every format and zone", async () => {
    for (const zone of ["UTC", "Europe/Berlin", "America/Havana", "Africa/Monrovia", "Asia/Kathmandu"]) {
      for (const format of ["csv", "jsonl"] as const) {
        const texts = async (dataset: string) =>
          new Map(
            (await rowsOf(dataset, format, { timezone: zone, columns: ["id", "ts"] })).map((r) => [
              String(r.id),
              r.ts,
            ]),
          );
        const [pgTexts, liteTexts] = [await texts("pg_fid"), await texts("lite_fid")];
        for (const [id] of SHARED_TIMES) {
          assert.equal(pgTexts.get(String(id)), liteTexts.get(String(id)), `${format} ${zone} row ${id}`);
        }
      }
    }
  });

  test("pg: json is exported as stored — NUL escapes, duplicate keys, key order, huge numbers; jsonb as jsonb writes it", async () => {
    for (const format of ["csv", "jsonl"] as const) {
      const rows = new Map(
        (await rowsOf("pg_fid", format, { columns: ["id", "j", "jb"] })).map((r) => [String(r.id), r]),
      );
      if (format === "csv") {
        assert.equal(rows.get("1")?.j, '{"a":"\\u0000"}');
        assert.equal(rows.get("2")?.j, '{"a":1,"a":2}');
        assert.equal(rows.get("3")?.j, '{"b":1,"a":2}');
        assert.equal(rows.get("4")?.j, PG_ROWS[4]?.j);
        assert.equal(rows.get("1")?.jb, '{"k": 1}');
      } else {
        assert.deepEqual(rows.get("1")?.j, { a: "\u0000" });
        assert.deepEqual(Object.keys(rows.get("3")?.j as object), ["b", "a"]);
        assert.deepEqual(rows.get("1")?.jb, { k: 1 });
      }
    }
    // The raw JSONL line keeps json's own text (only its line breaks become spaces).
    const { text } = await run({ dataset: "pg_fid", format: "jsonl", columns: ["id", "j"] });
    assert.ok(text.includes('{"id":2,"j":{"a":1,"a":2}}\n'), text);
    assert.ok(text.includes('"big": 1e400,  '), text);
    assert.ok(text.includes("123456789012345678901234567890"));
  });

  test("lite: text with NUL and json with \\u0000 and duplicate keys are exported as stored", async () => {
    const csv = (await rowsOf("lite_fid", "csv", { columns: ["id", "j", "s"] })).find((r) => r.id === "1");
    assert.equal(csv?.s, "nul\u0000inside");
    assert.equal(csv?.j, '{"a":"\\u0000","a":2}');
    const { text } = await run({ dataset: "lite_fid", format: "jsonl", columns: ["id", "j", "s"] });
    assert.ok(
      text.startsWith('{"id":1,"j":{"a":"\\u0000","a":2},"s":"nul\\u0000inside"}\n'),
      text.slice(0, 200),
    );
  });

  test("lite: values SQLite stores loosely — booleans as text, text as a UTF-8 BLOB, -0.0 in a text column", async () => {
    for (const format of ["csv", "jsonl"] as const) {
      const rows = (await rowsOf("lite_loose", format)).map((r) => [String(r.id), String(r.b), r.s]);
      assert.deepEqual(rows, [
        ["1", "false", "héllo"],
        ["2", "true", "-0"],
        ["3", "false", "x"],
      ]);
    }
  });

  test("pg: a timestamp-without-time-zone or date time column is ranged in its local_time_zone", async () => {
    // Rows at 00:30 and 23:30 Berlin time on 1 June (22:30Z on 31 May, 21:30Z on 1 June).
    const ids = async (zone: string) =>
      (await rowsOf("pg_local", "csv", { timezone: zone, from: "2026-06-01", to: "2026-06-02" })).map((r) => [
        r.id,
        r.t,
      ]);
    assert.deepEqual(await ids("Europe/Berlin"), [
      ["1", "2026-06-01T00:30:00.000000+02:00"],
      ["2", "2026-06-01T23:30:00.000000+02:00"],
    ]);
    assert.deepEqual(await ids("UTC"), [["2", "2026-06-01T21:30:00.000000Z"]]);
    // A date column: each date is its midnight in local_time_zone; a range starting after a midnight excludes it.
    const dates = await rowsOf("pg_date", "csv", {
      timezone: "Europe/Berlin",
      from: "2026-06-01T10:00",
      to: "2026-06-03",
    });
    assert.deepEqual(
      dates.map((r) => [r.id, r.t]),
      [["2", "2026-06-02T00:00:00.000000+02:00"]],
    );
  });

  test("pg: value text does not depend on the database's settings (extra_float_digits, IntervalStyle, bytea_output)", async () => {
    const one = { filters: { id: "1" } };
    const csv = (await rowsOf("pg_edge", "csv", one))[0];
    assert.deepEqual(csv, {
      id: "1",
      f8: "1.7976931348623157e+308",
      f4: "3.4028235e+38",
      j: '{"a":\t1,\n"b":\t[2]}',
      jt: '{"b":\t2}',
      iv: "1 day 02:00:00",
      by: "\\x00ff",
      ni: "12",
    });
    const jsonl = (await rowsOf("pg_edge", "jsonl", one))[0];
    assert.deepEqual(jsonl, {
      ...csv,
      id: 1,
      f8: 1.7976931348623157e308,
      f4: 3.4028235e38,
      j: { a: 1, b: [2] },
      jt: { b: 2 },
      ni: 12,
    });
    const smallest = await rowsOf("pg_edge", "jsonl", { filters: { id: "2" }, columns: ["id", "f8", "f4"] });
    assert.deepEqual(smallest, [{ id: 2, f8: 5e-324, f4: 0.1 }]);
    // json keeps its tabs between tokens in JSONL too; only its line break becomes a space.
    const { text } = await run({ dataset: "pg_edge", format: "jsonl", columns: ["j", "jt"], ...one });
    assert.equal(text, '{"j":{"a":\t1, "b":\t[2]},"jt":{"b":\t2}}\n');
  });

  test("lite: valid JSON with tabs, a stored U+FFFD, integral REALs in integer columns are exported; JSON null is null", async () => {
    for (const format of ["csv", "jsonl"] as const) {
      const [row] = await rowsOf("lite_bad", format, { filters: { id: "10" } });
      const [nullJson] = await rowsOf("lite_bad", format, { filters: { id: "11" }, columns: ["id", "j"] });
      if (format === "csv") {
        assert.deepEqual(row, {
          id: "10",
          j: '{"a":1}',
          s: "ok\uFFFD",
          i: "3",
          n: "1.5",
          ts: "1970-01-01T00:00:00.000000Z",
        });
        assert.deepEqual(nullJson, { id: "11", j: "null" });
      } else {
        assert.deepEqual(row, {
          id: 10,
          j: { a: 1 },
          s: "ok\uFFFD",
          i: 3,
          n: 1.5,
          ts: "1970-01-01T00:00:00.000000Z",
        });
        // JSONL cannot tell a json column's JSON null from SQL NULL (README "Files").
        assert.deepEqual(nullJson, { id: 11, j: null });
      }
    }
  });

  test("pg: a zone-less time column with a 30-minute DST shift (Lord Howe) exports each row in the range its exported time is in", async () => {
    // Stored wall times → instants (PostgreSQL's rule): 2026-04-05 01:20 → 14:20Z (+11), 01:45 (repeated,
    // the later) → 15:15Z (+10:30), 02:10 → 15:40Z; 2026-10-04 02:15 (skipped) → 15:45Z on 3 October.
    const cases: [string, string, [string, string][]][] = [
      ["2026-04-04T14:30:00Z", "2026-04-04T14:50:00Z", []],
      [
        "2026-04-04T14:00:00Z",
        "2026-04-04T15:30:00Z",
        [
          ["3", "2026-04-04T14:20:00.000000Z"],
          ["1", "2026-04-04T15:15:00.000000Z"],
        ],
      ],
      [
        "2026-04-04T15:15:00Z",
        "2026-04-04T16:00:00Z",
        [
          ["1", "2026-04-04T15:15:00.000000Z"],
          ["4", "2026-04-04T15:40:00.000000Z"],
        ],
      ],
      ["2026-10-03T15:00:00Z", "2026-10-03T15:30:00Z", []],
      ["2026-10-03T15:30:00Z", "2026-10-03T16:00:00Z", [["2", "2026-10-03T15:45:00.000000Z"]]],
    ];
    for (const format of ["csv", "jsonl"] as const) {
      for (const [from, to, expected] of cases) {
        const rows = await rowsOf("pg_lh", format, { from, to, timezone: "UTC" });
        assert.deepEqual(
          rows.map((r) => [String(r.id), r.t]).sort((a, b) => String(a[1]).localeCompare(String(b[1]))),
          expected,
          `${format} ${from}–${to}`,
        );
      }
    }
    // The estimate counts with the same WHERE: exact.
    for (const [from, to, expected] of cases) {
      const res = await create({ dataset: "pg_lh", format: "csv", from, to, timezone: "UTC", dry_run: true });
      assert.equal(res.json().estimated_rows, expected.length, `${from}–${to}: ${res.body}`);
    }
  });

  test("zones: canonical names in any case are accepted and echoed canonically; links and abbreviations are a 400", async () => {
    for (const [asked, echoed] of [
      ["europe/berlin", "Europe/Berlin"],
      ["Asia/Kolkata", "Asia/Kolkata"],
      ["utc", "UTC"],
      ["America/Argentina/Buenos_Aires", "America/Argentina/Buenos_Aires"],
    ]) {
      const res = await create({ dataset: "pg_fid", timezone: asked, columns: ["id"] });
      assert.equal(res.statusCode, 202, res.body);
      assert.equal((res.json() as ExportView).request.timezone, echoed);
    }
    for (const zone of [
      "IST",
      "BST",
      "EST",
      "Asia/Calcutta",
      "US/Eastern",
      "Etc/UTC",
      "GMT",
      "Z",
      "Etc/GMT+5",
      "Mars/Olympus",
    ]) {
      const res = await create({ dataset: "lite_fid", timezone: zone });
      assert.equal(res.statusCode, 400, zone);
      const details = res.json().error.details as { field: string; message: string }[];
      assert.deepEqual(
        details.map((d) => d.field),
        ["timezone"],
        zone,
      );
    }
    const calcutta = await create({ dataset: "pg_fid", timezone: "Asia/Calcutta" });
    assert.match(calcutta.json().error.details[0].message, /Asia\/Kolkata/);
  });

  test("zones: PostgreSQL knows every accepted zone name, with the same offset now", async () => {
    const { timeZoneNames } = await import("../../src/domain/time.js");
    const client = new pg.Client({ connectionString: db.url });
    await client.connect();
    try {
      const known = new Map(
        (
          await client.query<{ name: string; s: number }>(
            "SELECT name, extract(epoch from utc_offset)::int AS s FROM pg_timezone_names",
          )
        ).rows.map((r) => [r.name, r.s]),
      );
      const now = Date.now();
      const names = [...timeZoneNames().values()];
      assert.ok(names.length > 400);
      for (const name of names) {
        assert.ok(known.has(name), `PostgreSQL does not know ${name}`);
        assert.equal(known.get(name), intlOffsetSeconds(now, name), `offset of ${name}`);
      }
    } finally {
      await client.end();
    }
  });

  test("filters: an integer filter value outside 64 bits is a 400 at create", async () => {
    for (const value of ["abc", "9223372036854775808", "-9223372036854775809"]) {
      const res = await create({ dataset: "pg_fid", filters: { id: value } });
      assert.equal(res.statusCode, 400, value);
      assert.equal(res.json().error.details[0].field, "filters.id");
    }
    const ok = await create({ dataset: "pg_fid", filters: { id: "9223372036854775807" }, columns: ["id"] });
    assert.equal(ok.statusCode, 202);
  });
});
