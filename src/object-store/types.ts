/**
 * The object store: where parts live and how clients download them. One interface; the local
 * filesystem is the embedded default. An object becomes visible under its key only when whole.
 */
import type { Writable } from "node:stream";

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
