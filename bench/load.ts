/**
 * HTTP load from autocannon, always in a process of its own, so the load generator never shares
 * an event loop with what it measures.
 */
import { execFileSync } from "node:child_process";
import { fileURLToPath } from "node:url";

const AUTOCANNON = fileURLToPath(new URL("../node_modules/autocannon/autocannon.js", import.meta.url));

export interface LoadResult {
  requests: { average: number; total: number };
  latency: { p50: number; p99: number };
  non2xx: number;
  errors: number;
}

export interface LoadOptions {
  url: string;
  connections: number;
  seconds: number;
  method?: "GET" | "POST";
  headers?: Record<string, string>;
  body?: string;
}

export function load(o: LoadOptions): LoadResult {
  const args = [AUTOCANNON, "-c", String(o.connections), "-d", String(o.seconds), "-j"];
  if (o.method) args.push("-m", o.method);
  for (const [name, value] of Object.entries(o.headers ?? {})) args.push("-H", `${name}=${value}`);
  if (o.body !== undefined) args.push("-b", o.body);
  args.push(o.url);
  return JSON.parse(execFileSync(process.execPath, args, { maxBuffer: 1 << 26 }).toString()) as LoadResult;
}

export const loadLine = (label: string, r: LoadResult): string =>
  `${label.padEnd(36)} ${Math.round(r.requests.average).toLocaleString("en-US").padStart(8)} req/s  ` +
  `p50 ${r.latency.p50} ms  p99 ${r.latency.p99} ms  non-2xx ${r.non2xx}  errors ${r.errors}`;
