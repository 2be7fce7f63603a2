/**
 * What every benchmark hands to `npm run bench` (bench/all.ts): one section per pair, written as
 * a JSON line to $BENCH_RESULT when that is set, and printed as a table either way. Also the small
 * statistics every pair needs (ratios over repeated runs, percentiles, a process's peak RSS).
 */
import fs from "node:fs";

export interface Floor {
  /** What is compared, e.g. "export rows/s vs psql | gzip -1". */
  name: string;
  /** The floor as written in the issue, e.g. "≥ 1.0×". */
  floor: string;
  /** What this run measured, e.g. "0.95–1.08× (median 1.02)". */
  measured: string;
  met: boolean;
}

export interface BenchSection {
  /** Stable id, also the order key in docs/benchmarks.md: "1-export", "3-api", … */
  id: string;
  title: string;
  /** How to run this pair alone. */
  command: string;
  /** One or two sentences: what runs on each side and what is held equal. */
  method: string;
  table: { columns: string[]; rows: string[][] };
  floors: Floor[];
  notes?: string[];
}

/** Prints the section and, under `npm run bench`, hands it to bench/all.ts (one JSON line each). */
export function report(section: BenchSection): void {
  process.stdout.write(`\n${section.title}\n${renderTable(section.table)}\n`);
  for (const f of section.floors) {
    process.stdout.write(`${f.met ? "met   " : "MISSED"} ${f.name}: ${f.measured} (floor ${f.floor})\n`);
  }
  const file = process.env.BENCH_RESULT;
  if (file) fs.appendFileSync(file, `${JSON.stringify(section)}\n`);
}

/** A fixed-width text table, valid as a Markdown table (a `|` inside a cell is escaped). */
export function renderTable(table: BenchSection["table"]): string {
  const escapePipes = (cell: string) => cell.replaceAll("|", "\\|");
  const columns = table.columns.map(escapePipes);
  const rows = table.rows.map((r) => r.map(escapePipes));
  const widths = columns.map((c, i) => Math.max(c.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i] ?? 0)).join(" | ")} |`;
  return [line(columns), line(widths.map((w) => "-".repeat(w))), ...rows.map(line)].join("\n");
}

export interface Spread {
  min: number;
  max: number;
  median: number;
}

export function spread(values: readonly number[]): Spread {
  if (values.length === 0) throw new Error("no values");
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  const median =
    sorted.length % 2 ? (sorted[mid] as number) : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
  return { min: sorted[0] as number, max: sorted.at(-1) as number, median };
}

/** "0.93–1.05× (median 0.99)" */
export function ratioText(values: readonly number[]): string {
  const s = spread(values);
  return `${s.min.toFixed(2)}–${s.max.toFixed(2)}× (median ${s.median.toFixed(2)}, ${values.length} runs)`;
}

/** Nearest-rank percentile of already sorted values. */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) throw new Error("no values");
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] as number;
}

/** The peak resident set (VmHWM) of a live process, in MB. */
export function peakRssMb(pid: number): number {
  const status = fs.readFileSync(`/proc/${pid}/status`, "utf8");
  return Number(/VmHWM:\s+(\d+) kB/.exec(status)?.[1]) / 1024;
}

/**
 * CPU time a live process has used so far (user + system, /proc/<pid>/stat), in ms. On a shared
 * machine, CPU per request moves far less with the neighbours' load than requests per second do.
 */
export function cpuMs(pid: number): number {
  // The fields after the command's closing parenthesis; utime and stime are the 12th and 13th.
  const fields = fs.readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]?.split(" ") ?? [];
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / CLOCK_TICKS_PER_SECOND;
}
/** USER_HZ: 100 on every Linux the benchmarks run on. */
const CLOCK_TICKS_PER_SECOND = 100;

export const int = (n: number): string => Math.round(n).toLocaleString("en-US");
