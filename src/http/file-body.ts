/**
 * Writes a byte range of an open file to an HTTP response through two buffers reused for the
 * whole response: one is read into (pread, on the thread pool) while the other is written.
 *
 * Why not fs.createReadStream (what @fastify/send hands back): it allocates a fresh buffer for every
 * chunk, so a 1 GiB part is a gigabyte of short-lived external memory, which V8 answers with full
 * garbage collections of the whole heap (a quarter of the server's busy time in bench/download.ts);
 * and @fastify/send passes `highWaterMark: null` unless told otherwise, which means 16 KiB chunks.
 * A buffer is reused only once the socket has taken it (the write callback), never earlier.
 */
import type { FileHandle } from "node:fs/promises";
import type { ServerResponse } from "node:http";

/** Large enough that the per-chunk cost (a thread-pool read, a socket write) is small per byte. */
export const CHUNK_BYTES = 1024 * 1024;

/**
 * Writes `length` bytes from `start` and ends the response. Resolves early, without ending, when the
 * client goes away; rejects on a read error or a file shorter than announced (the caller must then
 * destroy the response: its headers are out, so the only honest signal left is a cut connection).
 */
export async function writeFileRange(
  res: ServerResponse,
  file: FileHandle,
  start: number,
  length: number,
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
  const write = (chunk: Buffer): Promise<boolean> =>
    Promise.race([new Promise<boolean>((resolve) => res.write(chunk, (err) => resolve(!err))), closed]);

  try {
    const size = Math.min(CHUNK_BYTES, Math.max(1, length));
    const buffers = [Buffer.allocUnsafeSlow(size), Buffer.allocUnsafeSlow(size)] as const;
    let position = start;
    const end = start + length;
    let pending: Promise<boolean> | null = null;
    for (let turn = 0; position < end && !gone; turn ^= 1) {
      // The buffer read into now was last written two turns ago, and that write has been awaited.
      const buffer = buffers[turn] as Buffer;
      const { bytesRead } = await file.read(buffer, 0, Math.min(buffer.length, end - position), position);
      if (bytesRead === 0) throw new Error(`file ended at byte ${position}, before ${end}`);
      position += bytesRead;
      if (pending && !(await pending)) return;
      pending = write(buffer.subarray(0, bytesRead));
    }
    if (pending && !(await pending)) return;
    if (!gone) res.end();
  } finally {
    res.off("close", onGone);
  }
}
