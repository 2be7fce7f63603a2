/**
 * Benchmark items 1 and 2: export throughput against the tools a user would script instead, and the
 * worker's memory. The real exportd server (dist/cli/main.js serve, a fresh process per export) is
 * timed end to end, POST /v1/exports to `succeeded`, against in the same round:
 *
 * - PostgreSQL csv.gz, 2M and 10M rows: `psql \copy (the same SELECT) to stdout with csv | gzip -1`;
 * - PostgreSQL jsonl.gz, 2M rows: `psql \copy (the same JSON-building SELECT) to stdout | gzip -1`;
 * - SQLite csv.gz, 2M rows: `sqlite3 -csv <db> "SELECT …" | gzip -1`.
 *
 * The PostgreSQL table is loaded once with 10M rows one second apart; the 2M cases are the first 2M
 * seconds of it. Peak RSS is the exportd process's VmHWM after the export.
 *
 *   npm run bench:export     # EXPORTD_TEST_DATABASE_URL=postgres://… or an embedded PostgreSQL
 *
 * Options (env): BENCH_ROUNDS (3), BENCH_ROUNDS_10M (BENCH_ROUNDS), BENCH_ROWS (2000000),
 * BENCH_BIG_ROWS (10000000); BENCH_DATABASE_URL reuses a database this script loaded before
 * (nothing loaded, nothing dropped);
 * BENCH_ONLY_CASES=pg-csv,pg-csv-10m,pg-jsonl,sqlite-csv runs some cases;
 * BENCH_NODE_ARGS adds flags to the exportd process (e.g. --cpu-prof --cpu-prof-dir=/tmp/prof).
 */
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import pg from "pg";
import { stringify } from "yaml";
import { createTestDatabase } from "../test/helpers/postgres.js";
import { tempDir } from "../test/helpers/service.js";
import { startCluster } from "./cluster.js";
import { type BenchSection, int, peakRssMb, ratioText, report, spread } from "./report.js";

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const ROUNDS_10M = Number(process.env.BENCH_ROUNDS_10M ?? ROUNDS);
const SMALL = Number(process.env.BENCH_ROWS ?? 2_000_000);
const BIG = Number(process.env.BENCH_BIG_ROWS ?? 10_000_000);
const FROM_MS = Date.parse("2026-01-01T00:00:00Z");
const FROM = new Date(FROM_MS).toISOString();
/** Row g (1…BIG) is at FROM + g seconds: [FROM, toOf(n)) holds rows 1…n. */
const toOf = (rows: number) => new Date(FROM_MS + (rows + 1) * 1000).toISOString();
const COMMAND = "npm run bench:export";

async function loadPostgres(url: string): Promise<void> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query(`
    CREATE TABLE events (
      id bigint PRIMARY KEY, tenant text NOT NULL, occurred_at timestamptz NOT NULL, type text NOT NULL,
      user_id text NOT NULL, properties jsonb, amount numeric(12, 2));
    INSERT INTO events
    SELECT g, 'bench', timestamptz '${FROM}' + g * interval '1 second',
           (ARRAY['page_view', 'click', 'purchase', 'signup', 'logout'])[1 + g % 5], 'user_' || (g % 5000),
           jsonb_build_object('path', '/docs/' || (g % 97), 'duration_ms', g % 30000, 'ok', g % 2 = 0),
           round((g % 100000) / 100.0, 2)
    FROM generate_series(1, ${BIG}) g;
    CREATE INDEX events_scope ON events (tenant, occurred_at, id);`);
    await client.query("VACUUM ANALYZE events");
  } finally {
    await client.end();
  }
}

/** The same rows in SQLite: times as epoch milliseconds, JSON as text (what exportd's SQLite source expects). */
function loadSqlite(file: string, rows: number): void {
  const sql = `PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF;
    CREATE TABLE events (id INTEGER PRIMARY KEY, tenant TEXT NOT NULL, occurred_at INTEGER NOT NULL,
      type TEXT NOT NULL, user_id TEXT NOT NULL, properties TEXT, amount REAL);
    WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < ${rows})
    INSERT INTO events SELECT n, 'bench', ${FROM_MS} + n * 1000,
      (CASE n % 5 WHEN 0 THEN 'page_view' WHEN 1 THEN 'click' WHEN 2 THEN 'purchase' WHEN 3 THEN 'signup' ELSE 'logout' END),
      'user_' || (n % 5000),
      json_object('path', '/docs/' || (n % 97), 'duration_ms', n % 30000, 'ok', json(CASE n % 2 WHEN 0 THEN 'true' ELSE 'false' END)),
      round((n % 100000) / 100.0, 2)
    FROM g;
    CREATE INDEX events_scope ON events (tenant, occurred_at, id);`;
  execFileSync("sqlite3", [file], { input: sql, stdio: ["pipe", "ignore", "inherit"] });
}

const COLUMNS = [
  { name: "id", type: "integer" },
  { name: "occurred_at", type: "timestamp" },
  { name: "type", type: "string" },
  { name: "user_id", type: "string" },
  { name: "properties", type: "json" },
  { name: "amount", type: "number" },
];

const scopeSql = (rows: number) =>
  `FROM events WHERE tenant = 'bench' AND occurred_at >= '${FROM}' AND occurred_at < '${toOf(rows)}' ORDER BY occurred_at, id`;
const pgTime = `to_char(occurred_at, 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`;

/** exportd's CSV select list for this dataset (postgres-dataset.ts), without its two cursor fields. */
const pgCsvSelect = (rows: number) =>
  `SELECT id, ${pgTime}, type::text, user_id::text, properties::text, amount ${scopeSql(rows)}`;

/**
 * exportd's JSONL line (postgres-dataset.ts jsonLine), without the cursor fields. COPY's text format
 * doubles backslashes, and the rows hold none, so psql writes exactly exportd's bytes.
 */
const pgJsonSelect = (rows: number) => {
  const values: Record<string, string> = {
    id: "to_json(id)::text",
    occurred_at: `to_json(${pgTime})::text`,
    type: "to_json(type::text)::text",
    user_id: "to_json(user_id::text)::text",
    properties: "properties::jsonb::text",
    amount: "to_json(amount)::text",
  };
  const line = COLUMNS.map(
    (c, i) => `'${i === 0 ? "{" : ","}"${c.name}":' || COALESCE(${values[c.name]}, 'null')`,
  ).join(" || ");
  return `SELECT ${line} || '}' ${scopeSql(rows)}`;
};

/** exportd's SQLite CSV in SQL: strftime's milliseconds plus three zeros are its microsecond ISO times. */
const sqliteSelect = (rows: number) =>
  `SELECT id, strftime('%Y-%m-%dT%H:%M:%f', occurred_at / 1000.0, 'unixepoch') || '000Z', type, user_id, json(properties), amount
  FROM events WHERE tenant = 'bench' AND occurred_at >= ${FROM_MS} AND occurred_at < ${FROM_MS + (rows + 1) * 1000}
  ORDER BY occurred_at, id`.replaceAll("\n", " ");

interface Measure {
  ms: number;
  bytes: number;
}

/** Runs a shell pipeline into `out`; returns its wall time and the output's size. */
function shell(script: string, out: string, env: NodeJS.ProcessEnv): Measure {
  const started = performance.now();
  execFileSync("bash", ["-o", "pipefail", "-c", script], {
    env: { ...process.env, ...env, OUT: out },
    stdio: ["ignore", "ignore", "inherit"],
  });
  const ms = performance.now() - started;
  const bytes = fs.statSync(out).size;
  fs.rmSync(out, { force: true });
  return { ms, bytes };
}

/** `\copy` must be one line of a psql script: a file spares the shell quoting. */
function psqlCopy(url: string, dir: string, select: string, options: string): Measure {
  const script = path.join(dir, "copy.psql");
  fs.writeFileSync(script, `\\copy (${select}) to stdout ${options}\n`);
  return shell(`psql "$URL" -X -q -f "$SCRIPT" | gzip -1 > "$OUT"`, path.join(dir, "anchor.gz"), {
    URL: url,
    SCRIPT: script,
    PGTZ: "UTC",
  });
}

interface ExportRun extends Measure {
  rssMb: number;
}

async function exportdRun(config: string, body: Record<string, unknown>, rows: number): Promise<ExportRun> {
  // The bench tenant's limits let the 20 ms polling of a 10M-row export through.
  const cluster = await startCluster({ workers: 0, env: { EXPORTD_CONFIG: config } });
  const server = cluster.api;
  try {
    const headers = { authorization: `Bearer ${cluster.key}`, "content-type": "application/json" };
    const started = performance.now();
    const created = await fetch(`${server.url}/v1/exports`, {
      method: "POST",
      headers,
      body: JSON.stringify({ from: FROM, to: toOf(rows), compression: "gzip", ...body }),
    });
    const { id } = (await created.json()) as { id: string };
    if (!id) throw new Error(`create failed: ${created.status}`);
    for (;;) {
      const view = (await (await fetch(`${server.url}/v1/exports/${id}`, { headers })).json()) as {
        status: string;
        progress: { rows: number };
        parts: { bytes: number }[];
        error: { message: string } | null;
      };
      if (view.status === "succeeded") {
        const ms = performance.now() - started;
        if (view.progress.rows !== rows) throw new Error(`exported ${view.progress.rows} rows, not ${rows}`);
        return {
          ms,
          rssMb: peakRssMb(server.child.pid as number),
          bytes: view.parts.reduce((s, p) => s + p.bytes, 0),
        };
      }
      if (view.status !== "running" && view.status !== "queued") {
        throw new Error(`export ${view.status}: ${view.error?.message ?? ""}\n${server.stderr()}`);
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  } finally {
    await cluster.stop();
  }
}

interface Case {
  id: string;
  label: string;
  anchorName: string;
  rows: number;
  rounds: number;
  anchor(): Measure;
  exportd(): Promise<ExportRun>;
}

interface CaseResult {
  c: Case;
  anchorRates: number[];
  exportdRates: number[];
  ratios: number[];
  rss: number[];
  anchorBytes: number;
  exportdBytes: number;
}

const started = performance.now();
const reuse = process.env.BENCH_DATABASE_URL;
const db = reuse ? { url: reuse, dispose: async () => undefined } : await createTestDatabase();
const dir = tempDir("exportd-bench-export-");
try {
  const t = performance.now();
  if (!reuse) await loadPostgres(db.url);
  const sqliteFile = path.join(dir, "events.sqlite");
  const sqliteLoad = performance.now();
  loadSqlite(sqliteFile, SMALL);
  console.log(
    `PostgreSQL: ${reuse ? "reused" : "loaded"} ${int(BIG)} rows in ${((sqliteLoad - t) / 1000).toFixed(1)} s; ` +
      `SQLite: ${int(SMALL)} rows in ${((performance.now() - sqliteLoad) / 1000).toFixed(1)} s`,
  );

  const config = path.join(dir, "exportd.yaml");
  const dataset = (source: string) => ({
    source,
    table: "events",
    tenant_column: "tenant",
    time_column: "occurred_at",
    key_column: "id",
    columns: COLUMNS,
    limits: { max_rows: 100_000_000, max_range_days: 366 },
  });
  fs.writeFileSync(
    config,
    stringify({
      demo: false,
      sources: { pg: { type: "postgres", url: db.url }, lite: { type: "sqlite", file: sqliteFile } },
      datasets: { events_pg: dataset("pg"), events_sqlite: dataset("lite") },
    }),
  );

  const pgCsv = (rows: number, rounds: number, id: string): Case => ({
    id,
    label: `PostgreSQL → csv.gz, ${int(rows)} rows`,
    anchorName: "psql \\copy … csv | gzip -1",
    rows,
    rounds,
    anchor: () => psqlCopy(db.url, dir, pgCsvSelect(rows), "with csv"),
    exportd: () => exportdRun(config, { dataset: "events_pg", format: "csv" }, rows),
  });
  const cases: Case[] = [
    pgCsv(SMALL, ROUNDS, "pg-csv"),
    pgCsv(BIG, ROUNDS_10M, "pg-csv-10m"),
    {
      id: "pg-jsonl",
      label: `PostgreSQL → jsonl.gz, ${int(SMALL)} rows`,
      anchorName: "psql \\copy (JSON text) | gzip -1",
      rows: SMALL,
      rounds: ROUNDS,
      anchor: () => psqlCopy(db.url, dir, pgJsonSelect(SMALL), ""),
      exportd: () => exportdRun(config, { dataset: "events_pg", format: "jsonl" }, SMALL),
    },
    {
      id: "sqlite-csv",
      label: `SQLite → csv.gz, ${int(SMALL)} rows`,
      anchorName: "sqlite3 -csv | gzip -1",
      rows: SMALL,
      rounds: ROUNDS,
      anchor: () =>
        shell(`sqlite3 -csv "$DB" "$SQL" | gzip -1 > "$OUT"`, path.join(dir, "anchor.gz"), {
          DB: sqliteFile,
          SQL: sqliteSelect(SMALL),
        }),
      exportd: () => exportdRun(config, { dataset: "events_sqlite", format: "csv" }, SMALL),
    },
  ];
  const only = process.env.BENCH_ONLY_CASES?.split(",").map((s) => s.trim());
  const results: CaseResult[] = [];
  for (const c of cases.filter((c) => !only || only.includes(c.id))) {
    const r: CaseResult = {
      c,
      anchorRates: [],
      exportdRates: [],
      ratios: [],
      rss: [],
      anchorBytes: 0,
      exportdBytes: 0,
    };
    for (let round = 1; round <= c.rounds; round++) {
      // Alternate which side goes first, so that neither always meets a warm (or busy) machine.
      let anchor: Measure;
      let run: ExportRun;
      if (round % 2) {
        anchor = c.anchor();
        run = await c.exportd();
      } else {
        run = await c.exportd();
        anchor = c.anchor();
      }
      const anchorRate = c.rows / (anchor.ms / 1000);
      const exportdRate = c.rows / (run.ms / 1000);
      r.anchorRates.push(anchorRate);
      r.exportdRates.push(exportdRate);
      r.ratios.push(exportdRate / anchorRate);
      r.rss.push(run.rssMb);
      r.anchorBytes = anchor.bytes;
      r.exportdBytes = run.bytes;
      console.log(
        `${c.id} round ${round}: anchor ${int(anchorRate)} rows/s (${(anchor.bytes / 1e6).toFixed(1)} MB) | ` +
          `exportd ${int(exportdRate)} rows/s (${(run.bytes / 1e6).toFixed(1)} MB, ${(run.ms / 1000).toFixed(2)} s) | ` +
          `ratio ${(exportdRate / anchorRate).toFixed(2)} | peak RSS ${run.rssMb.toFixed(0)} MB`,
      );
    }
    results.push(r);
  }

  const mb = (n: number) => (n / 1e6).toFixed(1);
  const median = (v: number[]) => spread(v).median;
  const floorOf = (id: string) => (id.startsWith("pg-csv") ? "≥ 1.0× (issue)" : "≥ 1.0× (aim)");
  const section: BenchSection = {
    id: "1-export",
    title: "1. Export throughput",
    command: COMMAND,
    method:
      "The real exportd server, a fresh process per export, timed from POST /v1/exports to `succeeded` " +
      "(default CSV: header, CRLF; gzip level 1; local storage with fsync), against the anchor in the same " +
      "round, which side goes first alternating. The anchors run exportd's own SELECT (same expressions, " +
      "order and range, without exportd's two cursor fields) and gzip -1 in a pipe.",
    table: {
      columns: [
        "case",
        "anchor",
        "anchor rows/s",
        "exportd rows/s",
        "exportd / anchor",
        "gz MB anchor / exportd",
      ],
      rows: results.map((r) => [
        r.c.label,
        r.c.anchorName,
        int(median(r.anchorRates)),
        int(median(r.exportdRates)),
        ratioText(r.ratios),
        `${mb(r.anchorBytes)} / ${mb(r.exportdBytes)}`,
      ]),
    },
    floors: results.map((r) => ({
      name: `${r.c.label} rows/s vs ${r.c.anchorName}`,
      floor: floorOf(r.c.id),
      measured: ratioText(r.ratios),
      met: median(r.ratios) >= 1.0,
    })),
    notes: [
      "rows/s columns are medians; a floor counts as met when the median ratio reaches it.",
      "CSV bytes differ from psql's by exportd's header row and CRLF row ends (psql writes LF); the JSONL anchor " +
        "writes the same bytes as exportd (COPY text format would double backslashes, and the rows hold none).",
      "sqlite3 -csv writes CRLF like exportd; it prints whole REAL numbers as 5.0 where exportd writes 5.",
      `PostgreSQL ${int(BIG)} rows loaded once (generate_series), the ${int(SMALL)}-row cases are its first ${int(SMALL)} seconds.`,
    ],
  };

  const byId = new Map(results.map((r) => [r.c.id, r]));
  const small = byId.get("pg-csv");
  const big = byId.get("pg-csv-10m");
  const rssRow = (r: CaseResult) => {
    const s = spread(r.rss);
    return [r.c.label, `${s.min.toFixed(0)}–${s.max.toFixed(0)} MB (median ${s.median.toFixed(0)})`];
  };
  const memory: BenchSection = {
    id: "2-rss",
    title: "2. Worker memory",
    command: COMMAND,
    method:
      "Peak resident set (VmHWM) of the exportd server process, worker included, after each export of section 1; " +
      "a fresh process per export.",
    table: { columns: ["case", "peak RSS min–max (median)"], rows: results.map(rssRow) },
    floors:
      small && big
        ? [
            {
              name: `worker peak RSS at ${int(BIG)} rows`,
              floor: "< 200 MB",
              measured: `${spread(big.rss).max.toFixed(0)} MB (max of ${big.rss.length} runs)`,
              met: spread(big.rss).max < 200,
            },
            {
              name: `peak RSS ${int(BIG)} / ${int(SMALL)} rows (medians)`,
              floor: "flat (≤ 1.10)",
              measured: (median(big.rss) / median(small.rss)).toFixed(2),
              met: median(big.rss) / median(small.rss) <= 1.1,
            },
          ]
        : [],
  };
  report(section);
  report(memory);
  console.log(`\nwhole run ${((performance.now() - started) / 60_000).toFixed(1)} min`);
} finally {
  fs.rmSync(dir, { recursive: true, force: true });
  await db.dispose();
}
