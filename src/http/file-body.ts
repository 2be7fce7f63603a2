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
 * takes them, for minutes at 1 KB/s. Chunks start small and double (up to 1 MiB) while the client
 * keeps up, and 1 MiB chunks are only handed out while the pool's budget lasts; past it every chunk
 * is MIN_CHUNK_BYTES. So many slow readers cost about the budget plus 2 × MIN_CHUNK_BYTES each,
 * while a single fast download still moves 1 MiB per read.
 */
import type { FileHandle } from "node:fs/promises";
import type { ServerResponse } from "node:http";

/** The chunk every download may always have, whatever the budget. */
export const MIN_CHUNK_BYTES = 16 * 1024;
/** Large enough that the per-chunk cost (a thread-pool read, a socket write) is small per byte. */
export const MAX_CHUNK_BYTES = 1024 * 1024;
/** A write the socket takes within this counts as "the client keeps up": the next chunk may double. */
const KEEPING_UP_MS = 50;
/** Free buffers kept per size for reuse; more are left to the garbage collector. */
const KEEP_FREE_BYTES = 8 * MAX_CHUNK_BYTES;

/**
 * Buffers of power-of-two sizes from MIN_CHUNK_BYTES to MAX_CHUNK_BYTES, reused, with a budget on
 * the bytes lent out at once (MIN_CHUNK_BYTES is always granted, so the budget may be passed by at
 * most two minimum chunks per download).
 */
export class ChunkPool {
  private readonly free = new Map<number, Buffer[]>();
  private lent = 0;

  constructor(private readonly budgetBytes: number) {}

  /** A buffer of `want` bytes (a power of two in range), halved until it fits the budget. */
  take(want: number): Buffer {
    let size = want;
    while (size > MIN_CHUNK_BYTES && this.lent + size > this.budgetBytes) size /= 2;
    this.lent += size;
    return this.free.get(size)?.pop() ?? Buffer.allocUnsafeSlow(size);
  }

  give(buffer: Buffer): void {
    this.lent -= buffer.length;
    let list = this.free.get(buffer.length);
    if (!list) {
      list = [];
      this.free.set(buffer.length, list);
    }
    if ((list.length + 1) * buffer.length <= KEEP_FREE_BYTES) list.push(buffer);
  }

  /** Bytes lent out now. */
  get lentBytes(): number {
    return this.lent;
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
 * Writes `length` bytes from `start` and ends the response. A client that takes no bytes for
 * `stallTimeoutMs` has its connection destroyed (Node's socket timeout counts progress of a pending
 * write, so a slow but reading client is not cut). Resolves early, without ending, when the client
 * goes away; rejects on a read error or a file shorter than announced (the caller must then destroy
 * the response: its headers are out, so the only honest signal left is a cut connection).
 */
export async function writeFileRange(
  res: ServerResponse,
  file: FileHandle,
  start: number,
  length: number,
  pool: ChunkPool,
  stallTimeoutMs: number,
): Promise<void> {
  // A response whose socket is gone never calls a write callback: the close event settles instead.
  let gone = false;
  let onGone = (): void => undefined;
  const closed = new Promise<false>((resolve) => {
    onGone = () => {
      gone = true;
      resolve(false);
    };
    res.once("close", onGone);
  });
  const onStall = (): void => {
    res.destroy();
  };
  res.setTimeout(stallTimeoutMs, onStall);
  /** Writes a chunk and hands its buffer back to the pool once the socket took it (or is gone). */
  const write = (buffer: Buffer, bytes: number): Promise<boolean> =>
    Promise.race([
      new Promise<boolean>((resolve) => res.write(buffer.subarray(0, bytes), (err) => resolve(!err))),
      closed,
    ]).finally(() => pool.give(buffer));

  let want = MIN_CHUNK_BYTES;
  let pending: Promise<boolean> | null = null;
  let spare: Buffer | null = null;
  try {
    let position = start;
    const end = start + length;
    let writtenAt = 0;
    while (position < end && !gone) {
      const buffer = pool.take(want);
      spare = buffer;
      const { bytesRead } = await file.read(buffer, 0, Math.min(buffer.length, end - position), position);
      if (bytesRead === 0) throw new Error(`file ended at byte ${position}, before ${end}`);
      position += bytesRead;
      if (pending) {
        const ok = await pending;
        if (!ok) return;
        // Only a client that took the last chunk promptly earns a larger one.
        want =
          Date.now() - writtenAt <= KEEPING_UP_MS ? Math.min(MAX_CHUNK_BYTES, want * 2) : MIN_CHUNK_BYTES;
      }
      spare = null;
      writtenAt = Date.now();
      pending = write(buffer, bytesRead);
    }
    if (pending && !(await pending)) return;
    pending = null;
    if (!gone) res.end();
  } finally {
    if (spare) pool.give(spare);
    res.off("close", onGone);
    res.off("timeout", onStall);
  }
}
