/**
 * The object store: where parts live and how clients download them. One interface; the local
 * filesystem is the embedded default. An object becomes visible under its key only when whole.
 */
import type { Readable, Writable } from "node:stream";

export interface ObjectUpload {
  /** Write the object's bytes here; end it, then call commit. */
  readonly stream: Writable;
  /** Publishes the object under its key once every byte is durable. */
  commit(): Promise<void>;
  /** Drops everything written so far. Safe to call after a failure or twice. */
  abort(): Promise<void>;
}

export interface SignedLink {
  url: string;
  expiresAt: number;
}

export interface ObjectStore {
  /**
   * Starts writing an object; nothing is visible under `key` until commit. Its Content-Type comes
   * from the key's suffix (content-type.ts).
   */
  upload(key: string): Promise<ObjectUpload>;
  /** Keys of the whole objects under a prefix (uploads in flight are not objects). */
  list(prefix: string): Promise<string[]>;
  /** Drops uploads under a prefix that never committed (left by a crashed writer). */
  dropIncompleteUploads(prefix: string): Promise<void>;
  /**
   * Bytes `start` to `endInclusive` (both counted from 0, inclusive as in an HTTP Range) of a whole
   * object, as a stream. Rejects when the object cannot be opened (a missing object: an error whose
   * `code` is ENOENT locally, `name` NoSuchKey on S3; anything else is the store failing); the stream
   * errors when the store fails mid-way or the object is shorter than asked. Destroying the stream,
   * or aborting `signal`, releases the file or the connection at once.
   */
  openRange(key: string, start: number, endInclusive: number, signal?: AbortSignal): Promise<Readable>;
  /** Deletes everything under a prefix, uploads in flight included. */
  deletePrefix(prefix: string): Promise<void>;
  delete(key: string): Promise<void>;
  /**
   * A link anyone holding it may GET until it expires, served with `filename` as the download name
   * and the Content-Type of contentTypeOf(filename).
   */
  signedLink(key: string, filename: string, ttlSeconds: number, now: number): Promise<SignedLink>;
  ping(): Promise<void>;
  close(): Promise<void>;
}
