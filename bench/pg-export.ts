/**
 * Benchmark: a PostgreSQL table of 2,000,000 rows exported as csv.gz by the real exportd server
 * (dist/cli/main.js, end to end over HTTP) against `psql \copy (same SELECT) … | gzip -1`, in the same
 * run. Reports rows/s of each, their ratio and the exportd process's peak RSS (VmHWM).
 *
 *   npm run build && npm run bench:pg            # embedded PostgreSQL, or
 *   EXPORTD_TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres npm run bench:pg
 *
 * Options (env): BENCH_ROWS (2000000), BENCH_ROUNDS (3); BENCH_DATABASE_URL reuses a database this
 * script loaded before (no load, nothing dropped); BENCH_NODE_ARGS adds flags to the exportd process
 * (e.g. --cpu-prof --cpu-prof-dir=/tmp/prof).
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import pg from "pg";
import { stringify } from "yaml";
import { createTestDatabase } from "../test/helpers/postgres.js";
import { tempDir } from "../test/helpers/service.js";

const ROWS = Number(process.env.BENCH_ROWS ?? 2_000_000);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const FROM = "2026-01-01T00:00:00Z";
const TO = "2026-01-31T00:00:00Z";
const root = path.resolve(import.meta.dirname, "..");

async function load(url: string): Promise<void> {
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
    FROM generate_series(1, ${ROWS}) g;
    CREATE INDEX events_scope ON events (tenant, occurred_at, id);
    ANALYZE events;`);
    await client.query("VACUUM events");
  } finally {
    await client.end();
  }
}

/** The SELECT exportd runs (its CSV expressions, without the cursor fields), for psql. */
const PSQL_SELECT =
  `SELECT id, to_char(occurred_at, 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'), type::text, user_id::text,
  properties::text, amount FROM events WHERE tenant = 'bench' AND occurred_at >= '${FROM}' AND occurred_at < '${TO}'
  ORDER BY occurred_at, id`.replaceAll("\n", " ");

function psqlRun(url: string, out: string): number {
  const started = performance.now();
  execFileSync(
    "bash",
    [
      "-c",
      `psql "$URL" -X -q -c "\\copy (${PSQL_SELECT.replaceAll('"', '\\"')}) to stdout with csv" | gzip -1 > "$OUT"`,
    ],
    { env: { ...process.env, URL: url, OUT: out, PGTZ: "UTC" }, stdio: ["ignore", "ignore", "inherit"] },
  );
  return performance.now() - started;
}

function cli(args: string[], env: NodeJS.ProcessEnv): string {
  return execFileSync(process.execPath, [path.join(root, "dist/cli/main.js"), ...args], {
    env,
    encoding: "utf8",
  });
}

async function waitHealthy(base: string, child: ChildProcess): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if (child.exitCode !== null) throw new Error("exportd exited during start");
    try {
      if ((await fetch(`${base}/healthz`)).ok) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error("exportd did not start");
}

function peakRssMb(pid: number): number {
  const status = fs.readFileSync(`/proc/${pid}/status`, "utf8");
  return Number(/VmHWM:\s+(\d+) kB/.exec(status)?.[1]) / 1024;
}

async function exportdRun(
  url: string,
  dir: string,
  round: number,
): Promise<{ ms: number; runMs: number; rssMb: number; bytes: number }> {
  const dataDir = path.join(dir, `data-${round}`);
  const config = path.join(dir, "exportd.yaml");
  fs.writeFileSync(
    config,
    stringify({
      demo: false,
      sources: { main: { type: "postgres", url } },
      datasets: {
        events: {
          source: "main",
          table: "events",
          tenant_column: "tenant",
          time_column: "occurred_at",
          key_column: "id",
          columns: [
            { name: "id", type: "integer" },
            { name: "occurred_at", type: "timestamp" },
            { name: "type", type: "string" },
            { name: "user_id", type: "string" },
            { name: "properties", type: "json" },
            { name: "amount", type: "number" },
          ],
          limits: { max_rows: 100_000_000 },
        },
      },
    }),
  );
  const port = 18_000 + round;
  const env = {
    ...process.env,
    PORT: String(port),
    HOST: "127.0.0.1",
    EXPORTD_DATA_DIR: dataDir,
    EXPORTD_CONFIG: config,
    EXPORTD_LOG_LEVEL: "warn",
  };
  const key = cli(["keys", "create", "--tenant", "bench"], env).trim().split("\n").pop() as string;
  const nodeArgs = (process.env.BENCH_NODE_ARGS ?? "").split(" ").filter(Boolean);
  const child = spawn(process.execPath, [...nodeArgs, path.join(root, "dist/cli/main.js"), "serve"], {
    env,
    stdio: "inherit",
  });
  const base = `http://127.0.0.1:${port}`;
  try {
    await waitHealthy(base, child);
    const headers = { authorization: `Bearer ${key}`, "content-type": "application/json" };
    const started = performance.now();
    const created = await fetch(`${base}/v1/exports`, {
      method: "POST",
      headers,
      body: JSON.stringify({ dataset: "events", from: FROM, to: TO, format: "csv", compression: "gzip" }),
    });
    const { id } = (await created.json()) as { id: string };
    for (;;) {
      const view = (await (await fetch(`${base}/v1/exports/${id}`, { headers })).json()) as {
        status: string;
        progress: { rows: number };
        parts: { bytes: number }[];
        started_at: string;
        finished_at: string;
      };
      if (view.status === "succeeded") {
        const ms = performance.now() - started;
        if (view.progress.rows !== ROWS) throw new Error(`exported ${view.progress.rows} rows, not ${ROWS}`);
        return {
          ms,
          runMs: Date.parse(view.finished_at) - Date.parse(view.started_at),
          rssMb: peakRssMb(child.pid as number),
          bytes: view.parts.reduce((s, p) => s + p.bytes, 0),
        };
      }
      if (view.status !== "running" && view.status !== "queued") throw new Error(`export ${view.status}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  } finally {
    child.kill("SIGTERM");
    await new Promise((r) => child.once("exit", r));
    fs.rmSync(dataDir, { recursive: true, force: true });
  }
}

const reuse = process.env.BENCH_DATABASE_URL;
const db = reuse ? { url: reuse, dispose: async () => undefined } : await createTestDatabase();
const dir = tempDir("exportd-bench-");
try {
  const loadStart = performance.now();
  if (!reuse) await load(db.url);
  console.log(
    `${reuse ? "reused" : "loaded"} ${ROWS.toLocaleString("en-US")} rows in ${((performance.now() - loadStart) / 1000).toFixed(1)} s`,
  );
  const ratios: number[] = [];
  for (let round = 1; round <= ROUNDS; round++) {
    const psqlMs = psqlRun(db.url, path.join(dir, "psql.csv.gz"));
    const psqlBytes = fs.statSync(path.join(dir, "psql.csv.gz")).size;
    const run = await exportdRun(db.url, dir, round);
    const psqlRate = ROWS / (psqlMs / 1000);
    const exportdRate = ROWS / (run.ms / 1000);
    ratios.push(exportdRate / psqlRate);
    console.log(
      `round ${round}: psql ${Math.round(psqlRate).toLocaleString("en-US")} rows/s (${(psqlBytes / 1e6).toFixed(1)} MB) | ` +
        `exportd ${Math.round(exportdRate).toLocaleString("en-US")} rows/s (${(run.bytes / 1e6).toFixed(1)} MB, ` +
        `${(run.ms / 1000).toFixed(2)} s end to end, ${(run.runMs / 1000).toFixed(2)} s in the worker) | ` +
        `ratio ${(exportdRate / psqlRate).toFixed(2)} | exportd peak RSS ${run.rssMb.toFixed(0)} MB`,
    );
  }
  const sorted = [...ratios].sort((a, b) => a - b);
  console.log(
    `ratio exportd/psql over ${ROUNDS} rounds: ${sorted[0]?.toFixed(2)}–${sorted.at(-1)?.toFixed(2)}, ` +
      `median ${sorted[Math.floor(sorted.length / 2)]?.toFixed(2)}`,
  );
} finally {
  fs.rmSync(dir, { recursive: true, force: true });
  await db.dispose();
}
