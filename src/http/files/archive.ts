/**
 * Serving an export's zip archive through its signed link (`…/archive.zip`): assembled on the fly
 * from the stored parts (domain/zip.ts lays it out, domain/manifest.ts writes the manifest), never
 * stored. Its length, ETag and bytes are fixed by the export, so a single `Range` (206, or 416 with
 * a Content-Range giving the size), `If-Range` and `If-None-Match` work as for a part, and a download
 * cut short resumes where it stopped. The body goes through file-body.ts, one part open at a time:
 * with the local object store the parts are read from disk in pooled chunks, with S3 each part a
 * Range touches is one ranged GET streamed through (ArchiveReader), the next one opened as the
 * current one nears its end (so no round trip stalls the body between entries), so an archive
 * download costs what a part download does.
 */
import { createHash } from "node:crypto";
import type { FileHandle } from "node:fs/promises";
import fs from "node:fs/promises";
import path from "node:path";
import type { Readable } from "node:stream";
import { crc32 } from "../../domain/crc32.js";
import { AppError } from "../../domain/errors.js";
import { downloadRefusal, type ExportRecord, hasArchive } from "../../domain/export.js";
import { archiveEntries } from "../../domain/manifest.js";
import { sliceLayout, type ZipLayout, zipLayout } from "../../domain/zip.js";
import type { ObjectStore } from "../../object-store/types.js";
import type { BodyPiece } from "../file-body.js";

/** An export's archive, ready to answer requests: its layout, tag and the object keys of its entries. */
export interface Archive {
  layout: ZipLayout;
  etag: string;
  lastModified: Date;
  /** Object key of each entry's stored part (null: an inline entry, the manifest). */
  keys: (string | null)[];
}

/**
 * Where the parts of an archive are read from: the local object store's folder (files read in
 * pooled chunks, checked on disk before any header) or any ObjectStore through ranged reads (S3).
 */
export type ArchiveReader =
  | { kind: "files"; root: string }
  | { kind: "ranges"; storage: Pick<ObjectStore, "openRange">; signal?: AbortSignal };

/**
 * The archive of `record`, or the error a download of it answers: the export's download refusal
 * (not ready, expired), not_found when it has no archive.
 */
export function archiveOf(record: ExportRecord): Archive {
  const refusal = downloadRefusal(record);
  if (refusal) throw refusal;
  const built = hasArchive(record.request) ? archiveEntries(record, (b) => crc32(b, 0)) : null;
  if (!built) {
    throw new AppError(
      "not_found",
      'This export has no zip archive: create it with "archive": "zip" (exports made before archives existed have none).',
    );
  }
  const layout = zipLayout(built.entries, record.createdAt);
  // The manifest names every part's SHA-256 and the export: it identifies the archive's bytes.
  const etag = `"zip-${createHash("sha256").update(built.manifest).digest("base64url").slice(0, 32)}"`;
  // Laid out per request: the manifest's JSON, a hash of it and a few headers per part (cheap).
  return {
    layout,
    etag,
    lastModified: new Date(record.finishedAt ?? record.createdAt),
    keys: built.partOf.map((i) => {
      const part = i === null ? null : record.parts[i];
      return part ? part.objectKey : null;
    }),
  };
}

/** Checks every part is on disk under `root` with its recorded size before any header goes out. */
export async function checkArchiveFiles(archive: Archive, root: string): Promise<void> {
  for (const segment of archive.layout.segments) {
    if (segment.kind !== "file") continue;
    const key = archive.keys[segment.entry];
    if (!key) throw new Error(`archive entry ${segment.entry} has no part`);
    const file = path.join(root, key);
    const stat = await fs.stat(file);
    if (stat.size !== segment.length) throw new Error(`${file} is ${stat.size} bytes, not ${segment.length}`);
  }
}

/** What a request asks of an archive: all of it, a range, nothing new (304), or an impossible range. */
export type ArchiveAnswer =
  | { status: 200; start: 0; length: number }
  | { status: 206; start: number; length: number }
  | { status: 304 };

/** Whether a list of entity tags (If-Match, If-None-Match) names `etag` or is `*`. */
function namesTag(list: string, etag: string, weak: boolean): boolean {
  return list.split(",").some((raw) => {
    const tag = raw.trim();
    return tag === "*" || tag === etag || (weak && tag === `W/${etag}`);
  });
}

/**
 * Decides the answer from the request's headers, in RFC 9110 §13.2.2's order, as a part's
 * download (the `send` package) does: an If-Match not naming the archive's tag, or without
 * If-Match an If-Unmodified-Since before its Last-Modified, is 412 `precondition_failed` (a
 * resuming client never splices two versions); If-None-Match with the tag is 304; a single
 * satisfiable `bytes=` range is 206 (an If-Range naming another tag, several ranges or a malformed
 * header are served whole, as the RFC allows); a range past the end is 416.
 */
export function answerFor(
  archive: Archive,
  headers: {
    range?: string;
    "if-range"?: string;
    "if-none-match"?: string;
    "if-match"?: string;
    "if-unmodified-since"?: string;
  },
): ArchiveAnswer {
  const size = archive.layout.size;
  const ifMatch = headers["if-match"];
  if (ifMatch !== undefined) {
    if (!namesTag(ifMatch, archive.etag, false)) throw preconditionFailed();
  } else if (headers["if-unmodified-since"] !== undefined) {
    const since = Date.parse(headers["if-unmodified-since"]);
    // HTTP dates have whole seconds; an unparseable date is ignored (§13.1.4).
    if (!Number.isNaN(since) && Math.floor(archive.lastModified.getTime() / 1000) * 1000 > since)
      throw preconditionFailed();
  }
  const noneMatch = headers["if-none-match"];
  if (noneMatch !== undefined && namesTag(noneMatch, archive.etag, true)) return { status: 304 };
  const whole = { status: 200 as const, start: 0 as const, length: size };
  const range = headers.range;
  if (!range) return whole;
  const ifRange = headers["if-range"];
  if (ifRange !== undefined && ifRange !== archive.etag) return whole;
  const match = /^bytes=(\d*)-(\d*)$/.exec(range.trim());
  if (!match || (match[1] === "" && match[2] === "")) return whole;
  let start: number;
  let end: number;
  if (match[1] === "") {
    const suffix = Number(match[2]);
    if (suffix === 0) throw unsatisfiable(size);
    start = Math.max(0, size - suffix);
    end = size - 1;
  } else {
    start = Number(match[1]);
    end = match[2] === "" ? size - 1 : Math.min(Number(match[2]), size - 1);
    if (match[2] !== "" && Number(match[2]) < start) return whole;
  }
  if (start >= size) throw unsatisfiable(size);
  return { status: 206, start, length: end - start + 1 };
}

function preconditionFailed(): AppError {
  return new AppError("precondition_failed", "The archive is not the one expected.");
}

function unsatisfiable(size: number): AppError {
  return new AppError("range_not_satisfiable", "The requested range lies outside the archive.", [], {
    "content-range": `bytes */${size}`,
  });
}

/**
 * The body pieces of bytes `start` to `start + length` of the archive: only the parts the range
 * touches, each from the position and for the length it needs, opened when its turn comes (a
 * ranged read just before it: writeBody opens the next stream piece ahead).
 */
export function archivePieces(
  archive: Archive,
  start: number,
  length: number,
  reader: ArchiveReader,
): BodyPiece[] {
  const slices = sliceLayout(archive.layout, start, length).filter((s) => s.kind === "bytes" || s.length > 0);
  return slices.map((s): BodyPiece => {
    if (s.kind === "bytes") return s;
    const key = archive.keys[s.entry] as string;
    if (reader.kind === "ranges") {
      const { storage, signal } = reader;
      return {
        kind: "stream",
        stream: (): Promise<Readable> =>
          storage.openRange(key, s.position, s.position + s.length - 1, signal),
        length: s.length,
      };
    }
    const file = path.join(reader.root, key);
    return {
      kind: "file",
      file: (): Promise<FileHandle> => fs.open(file, "r"),
      position: s.position,
      length: s.length,
    };
  });
}
