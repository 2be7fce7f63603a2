/**
 * CRC-32 (IEEE 802.3, the zip checksum: APPNOTE.TXT 4.4.7) of a stream of chunks: pure computation
 * (no I/O), shared by the pipeline (each part's, as it is written) and the archive (the manifest's). zlib's own
 * (node:zlib `crc32`, Node ≥ 20.15 / 22.2) runs in C; older Node 20 releases get a table-driven
 * version, slower but equal bit for bit.
 */
import zlib from "node:zlib";

type Crc32 = (data: Uint8Array, value: number) => number;

let table: Uint32Array | null = null;

/** The byte-at-a-time table version (reflected polynomial 0xEDB88320). */
function tableCrc32(data: Uint8Array, value: number): number {
  if (table === null) {
    table = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      table[n] = c >>> 0;
    }
  }
  const t = table;
  let crc = ~value >>> 0;
  for (let i = 0; i < data.length; i++) crc = (t[(crc ^ (data[i] as number)) & 0xff] as number) ^ (crc >>> 8);
  return ~crc >>> 0;
}

const native: Crc32 | undefined = (zlib as { crc32?: Crc32 }).crc32;

/** Continues `value` (0 to start) over `data`; an unsigned 32-bit integer. */
export const crc32: Crc32 = native ? (data, value) => native(data, value) >>> 0 : tableCrc32;

/** The fallback, exported so a test can check it against zlib's. */
export const crc32Portable: Crc32 = tableCrc32;
