/**
 * One part on its way to the object store: text → compressor → (sha256, CRC-32, byte count) → upload.
 * Writes wait for the compressor to drain (backpressure); finish() publishes the part only after the
 * whole stream succeeded, abort() drops it. A failing stream fails the part loudly, never a short file.
 */
import { createHash } from "node:crypto";
import { once } from "node:events";
import { Transform, type Transform as TransformType } from "node:stream";
import { pipeline } from "node:stream/promises";
import { crc32 } from "../domain/crc32.js";
import { storageOp, toStorageError } from "../object-store/errors.js";
import type { ObjectStore, ObjectUpload } from "../object-store/types.js";

export interface FinishedPart {
  bytes: number;
  sha256: string;
  /** CRC-32 of the stored bytes (the zip archive's entry checksum). */
  crc32: number;
}

export class PartSink {
  private bytes = 0;
  private crc = 0;
  private readonly hash = createHash("sha256");
  private readonly done: Promise<void>;
  private failure: unknown = null;

  private constructor(
    private readonly compressor: TransformType,
    private readonly upload: ObjectUpload,
  ) {
    const tap = new Transform({
      transform: (chunk: Buffer, _encoding, callback) => {
        this.hash.update(chunk);
        this.crc = crc32(chunk, this.crc);
        this.bytes += chunk.length;
        callback(null, chunk);
      },
    });
    this.done = pipeline(compressor, tap, upload.stream);
    // Remember a failure now; it is rethrown by the next write or by finish.
    this.done.catch((err: unknown) => {
      this.failure = toStorageError(err ?? new Error("part stream failed"));
    });
  }

  static async open(store: ObjectStore, key: string, compressor: TransformType) {
    const upload = await storageOp(() => store.upload(key));
    return new PartSink(compressor, upload);
  }

  async write(data: string | Buffer): Promise<void> {
    if (this.failure) throw this.failure;
    if (data.length === 0) return;
    if (!this.compressor.write(data)) {
      // Either promise may reject with the stream's raw error (ENOSPC, a reset connection) before
      // the catch above has labelled it: label it here too, so it is never an internal error.
      await storageOp(() => Promise.race([once(this.compressor, "drain"), this.done]));
      if (this.failure) throw this.failure;
    }
  }

  async finish(): Promise<FinishedPart> {
    if (this.failure) throw this.failure;
    this.compressor.end();
    await storageOp(async () => {
      await this.done;
      await this.upload.commit();
    });
    return { bytes: this.bytes, sha256: this.hash.digest("hex"), crc32: this.crc };
  }

  /** Drops the part; never throws (an object store that is down now has the upload dropped on resume). */
  async abort(): Promise<void> {
    this.compressor.destroy();
    await this.done.catch(() => undefined);
    await this.upload.abort().catch(() => undefined);
  }
}
