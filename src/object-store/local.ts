/**
 * Local-filesystem object store. An upload writes `<key>.upload-<random>` beside its final name,
 * fsyncs it and renames it into place: a crash leaves only a temporary file, never a short object.
 * Links point at exportd's own /files route, signed with LinkSigner.
 */
import { randomBytes } from "node:crypto";
import { createWriteStream } from "node:fs";
import fs from "node:fs/promises";
import path from "node:path";
import type { Readable } from "node:stream";
import { finished } from "node:stream/promises";
import { isSafeKey, UPLOAD_MARK } from "../domain/naming.js";
import { filesLink, type LinkSigner } from "./signing.js";
import type { ObjectStore, ObjectUpload, SignedLink } from "./types.js";

export class LocalObjectStore implements ObjectStore {
  constructor(
    readonly root: string,
    private readonly signer: LinkSigner,
    private readonly publicUrl: string,
  ) {}

  /** Absolute path of a key; throws on a key that could leave the root. */
  pathOf(key: string): string {
    if (!isSafeKey(key)) throw new Error(`Unsafe object key: ${JSON.stringify(key)}`);
    return path.join(this.root, key);
  }

  async upload(key: string): Promise<ObjectUpload> {
    const finalPath = this.pathOf(key);
    const tempPath = `${finalPath}${UPLOAD_MARK}${randomBytes(6).toString("hex")}`;
    await fs.mkdir(path.dirname(finalPath), { recursive: true });
    const stream = createWriteStream(tempPath, { highWaterMark: 256 * 1024 });
    return {
      stream,
      async commit() {
        await finished(stream);
        const handle = await fs.open(tempPath, "r+");
        try {
          await handle.sync();
        } finally {
          await handle.close();
        }
        await fs.rename(tempPath, finalPath);
      },
      async abort() {
        // Writes still in flight fail once destroyed; nobody waits for them any more.
        stream.on("error", () => undefined);
        stream.destroy();
        await fs.rm(tempPath, { force: true });
      },
    };
  }

  async list(prefix: string): Promise<string[]> {
    const dir = this.pathOf(prefix.replace(/\/+$/, ""));
    let names: string[];
    try {
      names = await fs.readdir(dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return [];
      throw err;
    }
    return names.filter((n) => !n.includes(UPLOAD_MARK)).map((n) => `${prefix.replace(/\/+$/, "")}/${n}`);
  }

  async openRange(key: string, start: number, endInclusive: number, signal?: AbortSignal): Promise<Readable> {
    const handle = await fs.open(this.pathOf(key), "r");
    try {
      const { size } = await handle.stat();
      if (start < 0 || endInclusive < start || endInclusive >= size) {
        throw Object.assign(new RangeError(`${key} is ${size} bytes; bytes ${start}-${endInclusive} asked`), {
          code: "ERANGE",
        });
      }
    } catch (err) {
      await handle.close();
      throw err;
    }
    // The stream owns the handle from here: it closes it when it ends or is destroyed.
    return handle.createReadStream({ start, end: endInclusive, ...(signal ? { signal } : {}) });
  }

  async dropIncompleteUploads(prefix: string): Promise<void> {
    const dir = this.pathOf(prefix.replace(/\/+$/, ""));
    const names = await fs.readdir(dir).catch(() => [] as string[]);
    await Promise.all(
      names.filter((n) => n.includes(UPLOAD_MARK)).map((n) => fs.rm(path.join(dir, n), { force: true })),
    );
  }

  async deletePrefix(prefix: string): Promise<void> {
    await fs.rm(this.pathOf(prefix.replace(/\/+$/, "")), { recursive: true, force: true });
  }

  async delete(key: string): Promise<void> {
    await fs.rm(this.pathOf(key), { force: true });
  }

  async signedLink(key: string, filename: string, ttlSeconds: number, now: number): Promise<SignedLink> {
    return filesLink(this.signer, this.publicUrl, key, filename, ttlSeconds, now);
  }

  async close(): Promise<void> {}

  async ping(): Promise<void> {
    await fs.mkdir(this.root, { recursive: true });
    await fs.access(this.root, fs.constants.W_OK);
  }
}
