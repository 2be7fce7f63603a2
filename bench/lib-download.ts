/**
 * What the download benchmarks (download.ts, zip.ts) share: a real export made through the API and
 * its signed link, random bytes put in place of a part's file, and curl in its own process fetching
 * a link — several streams at once for MB/s, or once for the SHA-256 of what came back.
 */
import { execFile, spawn } from "node:child_process";
import { createHash, randomFillSync } from "node:crypto";
import fs from "node:fs";
import { promisify } from "node:util";
import { crc32 } from "../src/domain/crc32.js";
import type { client } from "../test/helpers/server-process.js";
import { waitFor } from "../test/helpers/service.js";
import { int, spread } from "./report.js";

const run = promisify(execFile);

/** The API client the benchmarks use (test/helpers/server-process.ts). */
export type BenchClient = ReturnType<typeof client>;

/** Creates an export through the API and waits until it has succeeded; returns its id. */
export async function succeededExport(http: BenchClient, body: Record<string, unknown>): Promise<string> {
  const created = await http.create(body);
  if (created.status !== 202) throw new Error(`create: ${created.status} ${JSON.stringify(created.body)}`);
  await waitFor(
    () => http.get(created.body.id),
    (e) => e.status === "succeeded",
  );
  return created.body.id;
}

/** The signed link exportd hands out: GET /v1/exports/{id}/download?redirect=false plus `query`. */
export async function downloadLink(
  http: BenchClient,
  id: string,
  query = "",
): Promise<{ url: string; filename: string }> {
  const res = await http.raw(`/v1/exports/${id}/download?redirect=false${query}`);
  const link = (await res.json()) as { url: string; filename: string };
  if (res.status !== 200) throw new Error(`download link: ${res.status} ${JSON.stringify(link)}`);
  return link;
}

/** The object key a local /files link names. */
export function objectKeyOf(url: string): string {
  return decodeURIComponent(new URL(url).pathname.slice("/files/".length));
}

/**
 * Writes `size` random bytes to `file` (through a temporary file, renamed over it, so a reader never
 * sees half of it); returns their SHA-256 and CRC-32. The link signs the key and the download name,
 * not the content, so a part's file can be replaced this way.
 */
export function writeRandom(file: string, size: number): { sha256: string; crc32: number } {
  const hash = createHash("sha256");
  let crc = 0;
  const block = Buffer.allocUnsafe(8 * 2 ** 20);
  const temp = `${file}.bench`;
  const fd = fs.openSync(temp, "w");
  try {
    for (let written = 0; written < size; ) {
      const n = Math.min(block.length, size - written);
      randomFillSync(block, 0, n);
      hash.update(block.subarray(0, n));
      crc = crc32(block.subarray(0, n), crc);
      fs.writeSync(fd, block, 0, n);
      written += n;
    }
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(temp, file);
  return { sha256: hash.digest("hex"), crc32: crc };
}

/**
 * `streams` curl processes at once, each downloading the whole of `url` (`size` bytes, checked, as
 * is status 200) to /dev/null. MB/s (10^6 bytes) of all of them together, timed by curl itself
 * (connect to last byte).
 */
export async function curlMbs(url: string, size: number, streams: number): Promise<number> {
  const results = await Promise.all(
    Array.from({ length: streams }, () =>
      run("curl", ["-s", "-o", "/dev/null", "-w", "%{http_code} %{size_download} %{time_total}", url]),
    ),
  );
  let bytes = 0;
  let seconds = 0;
  for (const { stdout } of results) {
    const [status, got, time] = stdout.trim().split(" ").map(Number) as [number, number, number];
    if (status !== 200 || got !== size) throw new Error(`${url}: status ${status}, ${got} of ${size} bytes`);
    bytes += got;
    seconds = Math.max(seconds, time);
  }
  return bytes / seconds / 1e6;
}

/** VmRSS of a process in MB, now. */
export function rssMb(pid: number): number {
  const status = fs.readFileSync(`/proc/${pid}/status`, "utf8");
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1]) / 1024;
}

/** `curlMbs`, and the peak RSS of the process `pid` (the server) sampled every 20 ms meanwhile. */
export async function curlMbsSampled(url: string, size: number, streams: number, pid: number) {
  let peak = rssMb(pid);
  const sampler = setInterval(() => {
    peak = Math.max(peak, rssMb(pid));
  }, 20);
  try {
    return { mbs: await curlMbs(url, size, streams), peakRss: peak };
  } finally {
    clearInterval(sampler);
  }
}

/** The SHA-256 of a download made by curl (the hashing happens here, never in the server). */
export async function curlSha256(url: string): Promise<string> {
  const curl = spawn("curl", ["-sf", url], { stdio: ["ignore", "pipe", "inherit"] });
  const hash = createHash("sha256");
  for await (const chunk of curl.stdout) hash.update(chunk as Buffer);
  const code = await new Promise<number | null>((resolve) => {
    if (curl.exitCode !== null) resolve(curl.exitCode);
    else curl.once("exit", resolve);
  });
  if (code !== 0) throw new Error(`curl exited with ${code}`);
  return hash.digest("hex");
}

/** MB/s figures as `min–max (median m)`. */
export function mbsText(values: readonly number[]): string {
  const s = spread(values);
  return `${int(s.min)}–${int(s.max)} (median ${int(s.median)})`;
}
