/**
 * Writes a byte range of an open file to an HTTP response in chunks taken from one buffer pool
 * shared by every download: each chunk is read (pread, on the thread pool) while the previous one is
 * written, and goes back to the pool once the socket has taken it (the write callback), never earlier.
 *
 * Why not fs.createReadStream (what @fastify/send hands back): it allocates a fresh buffer for every
 * chunk, so a 1 GiB part is a gigabyte of short-lived external memory, which V8 answers with full
 * garbage collections of the whole heap (a quarter of the server's busy time in bench/download.ts);
 * and @fastify/send passes `highWaterMark: null` unless told otherwise, which means 16 KiB chunks.
 *
 * Why a shared pool with a byte budget: a client that reads slowly holds its chunks until the socket
 * takes them, for minutes at 1 KB/s. Chunks start at 16 KiB and become 1 MiB once the client has
 * taken a few promptly, and 1 MiB chunks are only handed out while the pool's budget lasts; past it
 * every chunk is 16 KiB. So many slow readers cost about the budget plus 2 × 16 KiB each, while a
 * single fast download still moves 1 MiB per read.
 */
import type { FileHandle } from "node:fs/promises";
import type { ServerResponse } from "node:http";
import type { Readable } from "node:stream";

/** The chunk every download may always have, whatever the budget. */
export const MIN_CHUNK_BYTES = 16 * 1024;
/** Large enough that the per-chunk cost (a thread-pool read, a socket write) is small per byte. */
export const MAX_CHUNK_BYTES = 1024 * 1024;
/** A write the socket takes within this counts as "the client keeps up". */
const KEEPING_UP_MS = 50;
/** Small chunks a download sends, its client keeping up, before it may have large ones. */
const SMALL_CHUNKS_FIRST = 4;
/** Free small buffers kept for reuse; more are left to the garbage collector. */
const KEEP_FREE_SMALL = 256;
/**
 * When a stream piece (an S3 ranged GET) has this many bytes or fewer left to take, the next stream
 * piece is opened, so its request's round trip (signing, the store's time to first byte) overlaps
 * the end of this one instead of leaving a gap in the body at every entry of an archive (next to
 * s3rver about 3 ms per entry, 25–30 ms per 8-entry download; bench/s3-zip-stalls.ts). Not more:
 * with 8 MiB the part opened ahead then streamed markedly slower (about 50 instead of 36 ms per
 * 32 MiB part on s3rver), more than the gap it saved; with 1 MiB no gap was left and parts
 * streamed as fast as when opened in their turn. Late also means the stream opened ahead waits
 * idle only briefly, not for a part a slow client takes minutes over (an idle stream may be cut by
 * the store's idle timeout: it is then opened again in its turn).
 */
export const OPEN_AHEAD_BYTES = 1024 * 1024;

/**
 * Buffers of two sizes, reused: MIN_CHUNK_BYTES, always granted, and MAX_CHUNK_BYTES, granted while
 * the large ones lent out stay within the budget. Large buffers are kept for reuse, never dropped:
 * the pool holds at most the budget in them, and makes no garbage however downloads come and go
 * (dropped 1 MiB buffers would linger until a full garbage collection, which an idle server
 * may not run for a long time).
 */
export class ChunkPool {
  private readonly small: Buffer[] = [];
  private readonly large: Buffer[] = [];
  private largeLent = 0;

  constructor(private readonly budgetBytes: number) {}

  /** A large buffer when `large` is asked and the budget allows, else a small one. */
  take(large: boolean): Buffer {
    if (large && (this.largeLent + 1) * MAX_CHUNK_BYTES <= this.budgetBytes) {
      this.largeLent += 1;
      return this.large.pop() ?? Buffer.allocUnsafeSlow(MAX_CHUNK_BYTES);
    }
    return this.small.pop() ?? Buffer.allocUnsafeSlow(MIN_CHUNK_BYTES);
  }

  give(buffer: Buffer): void {
    if (buffer.length === MIN_CHUNK_BYTES) {
      if (this.small.length < KEEP_FREE_SMALL) this.small.push(buffer);
      return;
    }
    this.largeLent -= 1;
    this.large.push(buffer);
  }

  /** Large buffers lent out now. */
  get largeInUse(): number {
    return this.largeLent;
  }
}

/**
 * Counts downloads in flight against a cap: `tryAcquire` before the work, `release` once after it.
 */
export class DownloadSlots {
  private used = 0;

  constructor(readonly max: number) {}

  tryAcquire(): boolean {
    if (this.used >= this.max) return false;
    this.used += 1;
    return true;
  }

  release(): void {
    this.used -= 1;
  }

  get inFlight(): number {
    return this.used;
  }
}

/**
 * One run of a response body: bytes in memory (a zip archive's headers), `length` bytes of a file
 * from `position`, or a stream of exactly `length` bytes (a ranged read of an S3 object). A file
 * given as a function is opened when its turn comes and closed after it, a stream given as a
 * function shortly before its turn (writeBody's OPEN_AHEAD_BYTES), so a body of many parts holds
 * one open at a time, two near the end of a stream.
 */
export type BodyPiece =
  | { kind: "bytes"; data: Buffer }
  | {
      kind: "file";
      file: FileHandle | (() => Promise<FileHandle>);
      position: number;
      length: number;
    }
  | { kind: "stream"; stream: Readable | (() => Promise<Readable>); length: number };

/** A stream piece opened before its turn: its index, and the stream (null when the open failed). */
interface OpenedAhead {
  index: number;
  opening: Promise<Readable | null>;
}

/**
 * Writes `length` bytes from `start` and ends the response. A client that takes no bytes for
 * `stallTimeoutMs` has its connection destroyed (Node's socket timeout counts progress of a pending
 * write, so a slow but reading client is not cut). Resolves early, without ending, when the client
 * goes away; rejects on a read error or a file shorter than announced (the caller must then destroy
 * the response: its headers are out, so the only honest signal left is a cut connection).
 */
export function writeFileRange(
  res: ServerResponse,
  file: FileHandle,
  start: number,
  length: number,
  pool: ChunkPool,
  stallTimeoutMs: number,
): Promise<void> {
  return writeBody(res, [{ kind: "file", file, position: start, length }], pool, stallTimeoutMs);
}

/**
 * Writes `pieces` one after the other and ends the response, as writeFileRange does for one file:
 * file bytes in pooled chunks (one read while the previous chunk is written), in-memory bytes as they
 * are, a stream's chunks as they come (the next one read while the previous is written, so what is
 * held is the stream's own buffer plus one chunk). A stream piece given as a function is opened
 * OPEN_AHEAD_BYTES before the previous stream piece ends (one open ahead at most, holding only its
 * own small buffer until its turn). A download of many files (a zip archive) costs what a download
 * of one does. The streams being read or opened ahead are destroyed as soon as the client goes away
 * or stalls, so no connection to the store outlives the download; a stream that ends short of its
 * length, or errors, rejects like a short file (one opened ahead that failed while it waited is
 * opened again in its turn: none of its bytes were sent yet).
 */
export async function writeBody(
  res: ServerResponse,
  pieces: Iterable<BodyPiece>,
  pool: ChunkPool,
  stallTimeoutMs: number,
  /** Bytes before a stream piece's end at which the next is opened; -1: in its turn (bench/s3-zip-stalls.ts). */
  openAheadBytes = OPEN_AHEAD_BYTES,
): Promise<void> {
  const list = [...pieces];
  // A response whose socket is gone never calls a write callback: the close event settles instead.
  let gone = false;
  /** The next stream piece, opened ahead (null: its open failed; it is tried again in its turn). */
  let ahead: OpenedAhead | null = null;
  /** Destroys the stream opened ahead, now or when its open settles. */
  const dropAhead = (): void => {
    void ahead?.opening.then((stream) => stream?.destroy());
    ahead = null;
  };
  /** Opens the first piece from `from` on, past in-memory bytes, when it is a stream to open. */
  const openAhead = (from: number): void => {
    if (ahead || gone) return;
    const index = list.findIndex((p, i) => i >= from && p.kind !== "bytes");
    const piece = list[index];
    if (piece?.kind !== "stream" || typeof piece.stream !== "function") return;
    const opening = piece.stream().then(
      (stream) => {
        // Until its turn nobody listens: an error now (the store's idle timeout) must not be
        // an uncaught 'error' event. The stream is then destroyed, and opened again in its turn.
        stream.on("error", () => undefined);
        return stream;
      },
      () => null,
    );
    ahead = { index, opening };
  };
  /** The stream piece being read: destroyed when the client goes (its read may be waiting on the store). */
  let reading: Readable | null = null;
  let onGone = (): void => undefined;
  const closed = new Promise<false>((resolve) => {
    onGone = () => {
      gone = true;
      reading?.destroy();
      dropAhead();
      resolve(false);
    };
    res.once("close", onGone);
  });
  const onStall = (): void => {
    res.destroy();
  };
  res.setTimeout(stallTimeoutMs, onStall);
  /** Writes a chunk and hands its buffer back to the pool once the socket took it (or is gone). */
  const write = (buffer: Buffer, bytes: number, pooled: boolean): Promise<boolean> =>
    Promise.race([
      new Promise<boolean>((resolve) => res.write(buffer.subarray(0, bytes), (err) => resolve(!err))),
      closed,
    ]).finally(() => {
      if (pooled) pool.give(buffer);
    });

  /** Chunks in a row the client took promptly; past SMALL_CHUNKS_FIRST it may have large ones. */
  let prompt = 0;
  let pending: Promise<boolean> | null = null;
  let spare: Buffer | null = null;
  let writtenAt = 0;
  /** Waits for the chunk in flight; false when the client went away. */
  const settle = async (): Promise<boolean> => {
    if (!pending) return true;
    const ok = await pending;
    pending = null;
    if (!ok) return false;
    // Only a client that keeps taking chunks promptly earns large ones.
    prompt = Date.now() - writtenAt <= KEEPING_UP_MS ? prompt + 1 : 0;
    return true;
  };
  try {
    for (const [index, piece] of list.entries()) {
      if (gone) return;
      if (piece.kind === "bytes") {
        if (piece.data.length === 0) continue;
        if (!(await settle())) return;
        writtenAt = Date.now();
        pending = write(piece.data, piece.data.length, false);
        continue;
      }
      if (piece.kind === "stream") {
        let stream: Readable | null = null;
        // Set by openAhead, which TypeScript's narrowing of this loop cannot see.
        const early = ahead as OpenedAhead | null;
        if (early?.index === index) {
          ahead = null;
          const opened = await early.opening;
          if (opened && !opened.destroyed && !gone) stream = opened;
          else opened?.destroy();
          if (gone) return;
        }
        stream ??= typeof piece.stream === "function" ? await piece.stream() : piece.stream;
        reading = stream;
        try {
          if (gone) return;
          let taken = 0;
          if (piece.length <= openAheadBytes) openAhead(index + 1);
          for await (const chunk of stream) {
            const data = chunk as Buffer;
            taken += data.length;
            if (taken > piece.length) throw new Error(`stream gave more than its ${piece.length} bytes`);
            if (piece.length - taken <= openAheadBytes) openAhead(index + 1);
            if (!(await settle())) return;
            writtenAt = Date.now();
            pending = write(data, data.length, false);
          }
          if (gone) return;
          if (taken !== piece.length)
            throw new Error(`stream ended at byte ${taken}, before ${piece.length}`);
        } catch (err) {
          // A stream destroyed because the client went away is no failure of the store.
          if (gone) return;
          throw err;
        } finally {
          reading = null;
          stream.destroy();
        }
        continue;
      }
      const opened = typeof piece.file === "function" ? await piece.file() : null;
      const file = opened ?? (piece.file as FileHandle);
      try {
        let position = piece.position;
        const end = piece.position + piece.length;
        while (position < end && !gone) {
          const buffer = pool.take(prompt >= SMALL_CHUNKS_FIRST);
          spare = buffer;
          const { bytesRead } = await file.read(buffer, 0, Math.min(buffer.length, end - position), position);
          if (bytesRead === 0) throw new Error(`file ended at byte ${position}, before ${end}`);
          position += bytesRead;
          if (!(await settle())) return;
          spare = null;
          writtenAt = Date.now();
          pending = write(buffer, bytesRead, true);
        }
      } finally {
        // The chunk in flight is in a pooled buffer already: the file is not read again.
        if (opened) await opened.close().catch(() => undefined);
      }
    }
    if (!(await settle())) return;
    if (!gone) res.end();
  } finally {
    dropAhead();
    if (spare) pool.give(spare);
    res.off("close", onGone);
    res.off("timeout", onStall);
  }
}
