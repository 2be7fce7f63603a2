/** Compressors by name. gzip defaults to level 1: twice the speed of level 6 for a modestly larger file. */
import { PassThrough, type Transform } from "node:stream";
import { constants, createGzip } from "node:zlib";
import type { Compression } from "../domain/export.js";

export interface CompressorOptions {
  gzipLevel: number;
}

export const COMPRESSORS: Record<Compression, (options: CompressorOptions) => Transform> = {
  gzip: ({ gzipLevel }) =>
    createGzip({ level: gzipLevel, chunkSize: 64 * 1024, strategy: constants.Z_DEFAULT_STRATEGY }),
  none: () => new PassThrough({ highWaterMark: 256 * 1024 }),
};
