/// <reference types="node" />
/**
 * @exportd/client/node — downloads to a folder (Node 20+ only): each part is written to
 * `<name>.partial`, resumed with `Range` after an interruption, its SHA-256 checked over the whole
 * file, and only then renamed to its name; a mismatch deletes the partial file and throws
 * ChecksumMismatchError, so a file under its final name is always a verified part.
 */
import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import fs from "node:fs/promises";
import path from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { type CallOptions, type ExportdClient, sleep } from "./client.js";
import {
  ChecksumMismatchError,
  ExportdAbortError,
  ExportdClientError,
  ExportdNetworkError,
} from "./errors.js";
import type { Export, ExportPart } from "./types.js";

export * from "./index.js";

export interface DownloadOptions extends CallOptions {
  /** Called as bytes arrive: bytes of this part on disk so far, and its size. */
  onBytes?: (written: number, total: number, part: ExportPart) => void;
  /** How often an interrupted transfer is resumed before giving up. Default 5. */
  maxResumes?: number;
}

/** What one part's download did. */
export interface DownloadedPart {
  index: number;
  path: string;
  bytes: number;
  /** Bytes fetched over the network by this call (less than `bytes` after a resume). */
  fetched: number;
  /** The file was already complete and verified: nothing was fetched. */
  skipped: boolean;
}

async function fileSize(file: string): Promise<number | null> {
  try {
    return (await fs.stat(file)).size;
  } catch {
    return null;
  }
}

async function hashFile(file: string): Promise<string> {
  const hash = createHash("sha256");
  await pipeline(createReadStream(file), hash);
  return hash.digest("hex");
}

/**
 * One part of a succeeded export into `dir` (created if missing), under the part's download name.
 * A `.partial` file left by an earlier try is resumed with `Range: bytes=<size>-` (a server that
 * answers 200 instead is written from the start). Throws ChecksumMismatchError (partial deleted),
 * ExportdApiError for a refused link or export, ExportdNetworkError when resumes run out.
 */
export async function downloadPart(
  client: ExportdClient,
  exp: Export,
  index: number,
  dir: string,
  options: DownloadOptions = {},
): Promise<DownloadedPart> {
  const part = exp.parts.find((p) => p.index === index);
  if (!part) throw new ExportdClientError(`Export ${exp.id} has no part ${index}.`);
  await fs.mkdir(dir, { recursive: true });
  // The name comes from the server; keep only its last segment so it cannot leave the folder.
  const target = path.join(dir, path.basename(part.filename));
  const partial = `${target}.partial`;
  if ((await fileSize(target)) === part.bytes && (await hashFile(target)) === part.sha256) {
    return { index, path: target, bytes: part.bytes, fetched: 0, skipped: true };
  }
  let fetched = 0;
  const maxResumes = options.maxResumes ?? 5;
  for (let attempt = 0; ; attempt++) {
    const have = Math.min((await fileSize(partial)) ?? 0, part.bytes);
    if (have < part.bytes) {
      try {
        fetched += await fetchInto(client, exp, part, partial, have, options);
      } catch (err) {
        if (err instanceof ExportdAbortError || options.signal?.aborted) throw new ExportdAbortError();
        if (!(err instanceof ExportdNetworkError) || attempt >= maxResumes) throw err;
        await sleep(Math.min(500 * 2 ** attempt, 10_000), options.signal);
        continue;
      }
    }
    const size = (await fileSize(partial)) ?? 0;
    if (size < part.bytes && attempt < maxResumes) continue;
    const actual = await hashFile(partial);
    if (size !== part.bytes || actual !== part.sha256) {
      await fs.rm(partial, { force: true });
      throw new ChecksumMismatchError(part.filename, part.sha256, actual);
    }
    await fs.rename(partial, target);
    return { index, path: target, bytes: part.bytes, fetched, skipped: false };
  }
}

/** One GET of the part from `offset` to its end, appended to `file`; returns the bytes fetched. */
async function fetchInto(
  client: ExportdClient,
  exp: Export,
  part: ExportPart,
  file: string,
  offset: number,
  options: DownloadOptions,
): Promise<number> {
  const url = await client.partUrl(exp, part, options);
  let res: Response;
  try {
    res = await client.fetch(url, {
      signal: options.signal,
      headers: offset > 0 ? { range: `bytes=${offset}-` } : {},
    });
  } catch (err) {
    if (options.signal?.aborted) throw new ExportdAbortError();
    throw new ExportdNetworkError(`Downloading ${part.filename}: ${(err as Error).message}`, { cause: err });
  }
  if (res.status !== 200 && res.status !== 206) {
    await res.body?.cancel();
    if (res.status === 416) {
      // The partial file is longer than the part or not of it: start over.
      await fs.rm(file, { force: true });
      throw new ExportdNetworkError(`${part.filename}: the server refused the range; starting over.`);
    }
    if (res.status >= 500) throw new ExportdNetworkError(`Downloading ${part.filename}: HTTP ${res.status}`);
    throw new ExportdClientError(`Downloading ${part.filename}: HTTP ${res.status}`);
  }
  if (!res.body) throw new ExportdNetworkError(`Downloading ${part.filename}: no body`);
  const append = res.status === 206;
  let written = append ? offset : 0;
  const handle = await fs.open(file, append ? "a" : "w");
  let fetched = 0;
  try {
    for await (const chunk of Readable.fromWeb(
      res.body as import("node:stream/web").ReadableStream<Uint8Array>,
    )) {
      const bytes = chunk as Buffer;
      await handle.write(bytes);
      fetched += bytes.length;
      written += bytes.length;
      options.onBytes?.(written, part.bytes, part);
    }
  } catch (err) {
    if (options.signal?.aborted) throw new ExportdAbortError();
    throw new ExportdNetworkError(`Downloading ${part.filename} broke off: ${(err as Error).message}`, {
      cause: err,
    });
  } finally {
    await handle.close();
  }
  return fetched;
}

/**
 * Every part of the export into `dir` (waits for nothing: the export must have succeeded), one
 * after another, each resumed and verified as `downloadPart` does.
 */
export async function downloadAll(
  client: ExportdClient,
  expOrId: Export | string,
  dir: string,
  options: DownloadOptions = {},
): Promise<DownloadedPart[]> {
  const exp = typeof expOrId === "string" ? await client.getExport(expOrId, options) : expOrId;
  const done: DownloadedPart[] = [];
  for (const part of exp.parts) done.push(await downloadPart(client, exp, part.index, dir, options));
  return done;
}
