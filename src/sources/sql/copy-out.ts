/**
 * `COPY … TO STDOUT` as a readable stream of CopyData messages, framing included: the bytes the
 * server sent for each row (`d`, length, row), back to back. PostgreSQL sends exactly one CopyData
 * message per row in copy-out mode, so the framing is where rows end — copy-scanner.ts reads it
 * instead of looking for newlines outside quotes, and nothing here copies or splits per row.
 *
 * Like pg-copy-streams, it is a pg Submittable that takes the connection's socket over for the
 * duration of the COPY (pg's own `data` listener set aside) and hands it back, with whatever followed
 * CopyDone or an ErrorResponse, so that pg reads CommandComplete, errors and ReadyForQuery itself.
 */
import { Readable, type ReadableOptions } from "node:stream";
import type { Connection, Submittable } from "pg";

const COPY_DATA = 0x64; // d
const COPY_DONE = 0x63; // c
const ERROR_RESPONSE = 0x45; // E
/** Messages the server may send in the middle of a COPY (and the CopyOutResponse before it): dropped. */
const INTERLEAVED = new Set([0x48 /* H */, 0x53 /* S */, 0x4e /* N */, 0x41 /* A */]);
const EMPTY = Buffer.alloc(0);

export interface Framed {
  /** CopyData messages (or pieces of them: a message may continue in the next chunk). */
  data: Buffer[];
  /** "done" after CopyDone (or an unexpected message), "error" at an ErrorResponse. */
  end: "done" | "error" | null;
  /** Once ended: the bytes after the COPY, which belong to pg. */
  rest: Buffer;
}

/** Splits the protocol byte stream into CopyData messages and the end of the COPY, across chunk borders. */
export class CopyFramer {
  private code = -1;
  /** Length bytes still to read (message header), then body bytes still to skip. */
  private lengthBytes = 0;
  private length = 0;
  private remaining = 0;

  feed(chunk: Buffer): Framed {
    const data: Buffer[] = [];
    const len = chunk.length;
    // A CopyData message that began in an earlier chunk continues at the start of this one.
    let passFrom = this.code === COPY_DATA ? 0 : -1;
    let pos = 0;
    while (pos < len) {
      if (this.code < 0) {
        const code = chunk[pos] as number;
        if (code !== COPY_DATA) {
          if (passFrom >= 0 && pos > passFrom) data.push(chunk.subarray(passFrom, pos));
          passFrom = -1;
          if (code === ERROR_RESPONSE) return { data, end: "error", rest: chunk.subarray(pos) };
          if (code !== COPY_DONE && !INTERLEAVED.has(code))
            return { data, end: "done", rest: chunk.subarray(pos) };
        } else if (passFrom < 0) {
          passFrom = pos;
        }
        this.code = code;
        pos++;
        if (pos + 4 <= len) {
          // The usual case: the whole length field is in this chunk.
          this.length = chunk.readUInt32BE(pos);
          pos += 4;
          this.lengthBytes = 4;
        } else {
          this.lengthBytes = 0;
          this.length = 0;
        }
        if (this.lengthBytes === 4) this.remaining = this.length - 4;
      } else if (this.lengthBytes < 4) {
        this.length = this.length * 256 + (chunk[pos] as number);
        pos++;
        if (++this.lengthBytes === 4) this.remaining = this.length - 4;
      } else {
        const n = Math.min(this.remaining, len - pos);
        pos += n;
        this.remaining -= n;
      }
      if (this.lengthBytes === 4 && this.remaining === 0) {
        const code = this.code;
        this.code = -1;
        this.lengthBytes = 0;
        if (code === COPY_DONE) return { data, end: "done", rest: chunk.subarray(pos) };
      }
    }
    if (passFrom >= 0 && len > passFrom) data.push(chunk.subarray(passFrom, len));
    return { data, end: null, rest: EMPTY };
  }
}

export class CopyOut extends Readable implements Submittable {
  rowCount = 0;
  private connection: Connection | null = null;
  private pgDataHandler: ((chunk: Buffer) => void) | null = null;
  private readonly framer = new CopyFramer();
  private wanted = false;
  private forwarding = false;
  private readonly onReadable = () => this.forward();

  constructor(
    readonly text: string,
    options?: ReadableOptions,
  ) {
    super(options);
  }

  submit(connection: Connection): void {
    this.connection = connection;
    const socket = connection.stream;
    const listeners = socket.listeners("data");
    if (listeners.length !== 1) throw new Error("COPY: the connection's socket has no single data listener");
    this.pgDataHandler = listeners[0] as (chunk: Buffer) => void;
    socket.removeListener("data", this.pgDataHandler);
    socket.pause();
    this.forward();
    socket.on("readable", this.onReadable);
    connection.query(this.text);
  }

  override _read(): void {
    this.wanted = true;
    this.forward();
  }

  /** Reads the socket only while our consumer wants more: PostgreSQL waits on TCP otherwise. */
  private forward(): void {
    if (this.forwarding || !this.wanted || !this.connection) return;
    this.forwarding = true;
    const socket = this.connection.stream;
    let chunk: Buffer | null;
    // biome-ignore lint/suspicious/noAssignInExpressions: read until the socket or the consumer is done
    while (this.wanted && this.connection && (chunk = socket.read() as Buffer | null) !== null) {
      const framed = this.framer.feed(chunk);
      let more = true;
      for (const piece of framed.data) more = this.push(piece);
      this.wanted = more;
      if (framed.end) {
        this.detach(framed.rest);
        if (framed.end === "done") this.push(null);
      }
    }
    this.forwarding = false;
  }

  private detach(rest: Buffer): void {
    const connection = this.connection as Connection;
    const handler = this.pgDataHandler as (chunk: Buffer) => void;
    const socket = connection.stream;
    this.connection = null;
    this.wanted = false;
    socket.removeListener("readable", this.onReadable);
    socket.addListener("data", handler);
    handler(rest);
    // Resume on the next tick: pg's handler may pause the socket while it runs.
    process.nextTick(() => socket.resume());
  }

  handleError(err: Error): void {
    this.destroy(err);
  }

  handleCommandComplete(message: { text?: string } | undefined): void {
    const match = /COPY (\d+)/.exec(message?.text ?? "");
    if (match) this.rowCount = Number(match[1]);
  }

  handleReadyForQuery(): void {}
}
