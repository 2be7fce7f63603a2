/**
 * A table full of hard values, loaded into PostgreSQL and SQLite alike, and the exported text each
 * row must become — computed here independently of exportd's own formatting code.
 */
import Database from "better-sqlite3";
import pg from "pg";

export const HARD_TEXT = [
  "plain",
  'say "hi"',
  "a,b",
  "semi;colon",
  "tab\there",
  "pipe|here",
  "line\nbreak", // index 6: a part of 7 rows ends right after this row
  "carriage\rreturn",
  "crlf\r\ninside",
  "back\\slash",
  "double \\\\ and \\n that is no newline",
  "control \u0001\u001f\u007f chars",
  "naïve café — ünïcödé",
  "emoji 🎉👩‍💻",
  '"',
  "",
  "=SUM(A1:A2)",
  "+1",
  "-2",
  "@cmd",
  "\tstarts with tab",
  "' OR 1=1 --",
  "\\.",
];

export const TENANTS = ["acme", "globex", "o'hara"];
export const ROWS_PER_TENANT = 60;

export interface HardRow {
  id: number;
  tenant: string;
  /** Epoch microseconds. */
  micros: bigint;
  label: string;
  kind: string;
  big: bigint;
  /** Exact decimal text (PostgreSQL numeric). */
  amount: string;
  flag: boolean | null;
  props: unknown;
  note: string | null;
}

const SPRING = Date.UTC(2026, 2, 29, 0, 30); // Europe/Berlin jumps 02:00 → 03:00 at 01:00Z
const AUTUMN = Date.UTC(2026, 9, 25, 0, 10); // and 03:00 → 02:00 at 01:00Z

export function hardRows(): HardRow[] {
  const rows: HardRow[] = [];
  let id = 1;
  for (let j = 0; j < ROWS_PER_TENANT; j++) {
    for (const [t, tenant] of TENANTS.entries()) {
      const half = j < ROWS_PER_TENANT / 2;
      // Every fifth row shares the previous row's time: the key decides the order then.
      const step = j % 5 === 4 ? j - 1 : j;
      const ms = (half ? SPRING : AUTUMN) + (half ? step : step - ROWS_PER_TENANT / 2) * 7 * 60_000;
      const label = HARD_TEXT[j % HARD_TEXT.length] as string;
      rows.push({
        id: id++,
        tenant,
        micros: BigInt(ms) * 1000n + BigInt((step * 123_457) % 1000) * (half ? 1000n : 1n) + BigInt(t),
        label,
        kind: `${tenant}-kind-${j % 3}`,
        big: j % 2 ? 2n ** 62n + BigInt(j) : -(2n ** 53n) - BigInt(j),
        amount: j % 4 === 0 ? "12345678901234567890.000000001" : `${j}.${"0".repeat(j % 3)}5`,
        flag: j % 3 === 0 ? null : j % 2 === 0,
        props: j % 7 === 3 ? null : { label, j, nested: [label, { deep: j % 2 === 0 }], 'key "q"': "v" },
        note: j % 5 === 0 ? null : j % 5 === 1 ? "" : (HARD_TEXT[(j * 7) % HARD_TEXT.length] as string),
      });
    }
  }
  return rows;
}

function isoMicros(micros: bigint): string {
  const ms = micros / 1000n;
  return new Date(Number(ms)).toISOString().replace("Z", `${String(micros % 1000n).padStart(3, "0")}Z`);
}

export async function loadPostgres(url: string, rows: HardRow[]): Promise<void> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query(`
      CREATE TABLE hard_rows (
        id bigint PRIMARY KEY, tenant text NOT NULL, occurred_at timestamptz NOT NULL, label text,
        kind text, big bigint, amount numeric, flag boolean, props jsonb, note text);
      CREATE INDEX hard_rows_scope ON hard_rows (tenant, occurred_at, id);`);
    for (const r of rows) {
      await client.query(
        "INSERT INTO hard_rows VALUES ($1, $2, $3::timestamptz, $4, $5, $6, $7::numeric, $8, $9::jsonb, $10)",
        [
          r.id,
          r.tenant,
          isoMicros(r.micros),
          r.label,
          r.kind,
          r.big.toString(),
          r.amount,
          r.flag,
          r.props === null ? null : JSON.stringify(r.props),
          r.note,
        ],
      );
    }
  } finally {
    await client.end();
  }
}

/** SQLite keeps times as epoch milliseconds and amounts as REAL (it has no exact decimals). */
export function loadSqlite(file: string, rows: HardRow[]): void {
  const db = new Database(file);
  db.exec(`
    CREATE TABLE hard_rows (
      id INTEGER PRIMARY KEY, tenant TEXT NOT NULL, occurred_at INTEGER NOT NULL, label TEXT,
      kind TEXT, big INTEGER, amount REAL, flag INTEGER, props TEXT, note TEXT);
    CREATE INDEX hard_rows_scope ON hard_rows (tenant, occurred_at, id);`);
  const insert = db.prepare("INSERT INTO hard_rows VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
  db.transaction(() => {
    for (const r of rows) {
      insert.run(
        r.id,
        r.tenant,
        Number(r.micros / 1000n),
        r.label,
        r.kind,
        r.big,
        sqliteAmount(r),
        r.flag === null ? null : r.flag ? 1 : 0,
        r.props === null ? null : JSON.stringify(r.props),
        r.note,
      );
    }
  })();
  db.close();
}

export function sqliteAmount(r: HardRow): number {
  return r.id + 0.25;
}

/** ISO 8601 with the zone's offset and six fractional digits, via Intl (not exportd's formatter). */
export function expectedTime(micros: bigint, zone: string): string {
  const ms = Number(micros / 1000n);
  const fraction = String(micros % 1_000_000n).padStart(6, "0");
  const parts = Object.fromEntries(
    new Intl.DateTimeFormat("en-US", {
      timeZone: zone,
      hourCycle: "h23",
      year: "numeric",
      month: "2-digit",
      day: "2-digit",
      hour: "2-digit",
      minute: "2-digit",
      second: "2-digit",
      timeZoneName: "longOffset",
    })
      .formatToParts(new Date(ms))
      .map((p) => [p.type, p.value]),
  );
  const name = parts.timeZoneName as string;
  const offset = zone === "UTC" ? "Z" : name === "GMT" ? "+00:00" : name.slice(3);
  return `${parts.year}-${parts.month}-${parts.day}T${parts.hour}:${parts.minute}:${parts.second}.${fraction}${offset}`;
}
