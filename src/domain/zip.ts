/**
 * The layout of a zip archive assembled from stored files without copying them (like nginx's
 * mod_zip): every entry is STORED (method 0, APPNOTE.TXT 4.4.5) with its size and CRC-32 known in
 * advance, so the local headers carry them (no data descriptors, 4.3.9) and the whole archive's
 * bytes — headers, the central directory, its end records — and its length are fixed before the
 * first byte is sent. That is what makes Range requests and resumed downloads possible.
 *
 * Pure layout math, no I/O: `zipLayout` answers the archive as a list of segments, either bytes it
 * wrote (headers, the central directory, small inline entries such as the manifest) or a stored
 * file's bytes, each at its offset. ZIP64 (4.3.14, 4.3.15, 4.5.3) is used only where a value does
 * not fit: an entry of 4 GiB − 1 or more gets a ZIP64 extra field in both its headers, an entry
 * starting past 4 GiB − 1 one in its central header, and the archive gets the ZIP64 end records when
 * the central directory starts past that offset, is that large, or there are 65,535 entries or more.
 * References: PKWARE APPNOTE.TXT 6.3.10, sections 4.3.7 (local file header), 4.3.12 (central
 * directory header), 4.3.14–4.3.16 (end records), 4.4.2–4.4.4 (versions and flags; bit 11: UTF-8
 * names), 4.4.6 (MS-DOS time), 4.5.3 (ZIP64 extended information extra field).
 */

/** An entry to be stored: its name in the archive, its length and CRC-32, and where its bytes are. */
export interface ZipEntry {
  /** Path inside the archive, `/`-separated, UTF-8. */
  name: string;
  size: number;
  crc32: number;
  /** Inline bytes (the manifest), or null for a stored file the caller reads (by entry index). */
  data: Buffer | null;
}

/** A run of the archive's bytes: written here, or entry `entry`'s stored bytes from `from`. */
export type ZipSegment =
  | { kind: "bytes"; offset: number; data: Buffer }
  | { kind: "file"; offset: number; entry: number; length: number };

export interface ZipLayout {
  segments: ZipSegment[];
  /** The archive's length in bytes. */
  size: number;
  /** Whether ZIP64 records were needed. */
  zip64: boolean;
}

const MAX32 = 0xffff_ffff;
const MAX16 = 0xffff;
/** 4.4.3: 1.0 for stored entries, 4.5 for ZIP64. */
const VERSION_STORED = 10;
const VERSION_ZIP64 = 45;
/** 4.4.2: made by UNIX (3), spec version 4.5, so the external attributes are a mode. */
const MADE_BY = (3 << 8) | VERSION_ZIP64;
/** Bit 11: the name is UTF-8. */
const FLAG_UTF8 = 0x0800;
/** A regular file, rw-r--r--, in the high 16 bits of the external attributes. */
const EXTERNAL_ATTRS = (0o100644 << 16) >>> 0;

/** 4.4.6: MS-DOS date and time (local to nobody: exportd writes UTC), 2-second resolution. */
export function dosDateTime(ms: number): { date: number; time: number } {
  const d = new Date(ms);
  const year = Math.min(Math.max(d.getUTCFullYear(), 1980), 2107);
  return {
    date: ((year - 1980) << 9) | ((d.getUTCMonth() + 1) << 5) | d.getUTCDate(),
    time: (d.getUTCHours() << 11) | (d.getUTCMinutes() << 5) | (d.getUTCSeconds() >> 1),
  };
}

/** Writes a non-negative integer below 2^53 as 8 little-endian bytes. */
function writeUInt64(buf: Buffer, value: number, at: number): void {
  buf.writeUInt32LE(value % 0x1_0000_0000, at);
  buf.writeUInt32LE(Math.floor(value / 0x1_0000_0000), at + 4);
}

/** A ZIP64 extended information extra field (4.5.3) holding `values` as 8-byte integers. */
function zip64Extra(values: number[]): Buffer {
  const buf = Buffer.alloc(4 + 8 * values.length);
  buf.writeUInt16LE(0x0001, 0);
  buf.writeUInt16LE(8 * values.length, 2);
  values.forEach((v, i) => {
    writeUInt64(buf, v, 4 + 8 * i);
  });
  return buf;
}

/**
 * The archive of `entries`, in this order, every one dated `modifiedAt` (epoch ms). The same input
 * always gives the same bytes.
 */
export function zipLayout(entries: readonly ZipEntry[], modifiedAt: number): ZipLayout {
  const { date, time } = dosDateTime(modifiedAt);
  const segments: ZipSegment[] = [];
  const central: Buffer[] = [];
  let offset = 0;
  let zip64 = false;
  const push = (data: Buffer) => {
    segments.push({ kind: "bytes", offset, data });
    offset += data.length;
  };

  entries.forEach((entry, index) => {
    if (!Number.isSafeInteger(entry.size) || entry.size < 0) throw new Error(`bad size of ${entry.name}`);
    const name = Buffer.from(entry.name, "utf8");
    if (name.length > MAX16) throw new Error(`entry name too long: ${entry.name}`);
    const big = entry.size >= MAX32;
    const headerAt = offset;
    const farOut = headerAt >= MAX32;
    if (big || farOut) zip64 = true;

    // 4.3.7 local file header; with ZIP64 both sizes go in the extra field (4.5.3).
    const localExtra = big ? zip64Extra([entry.size, entry.size]) : Buffer.alloc(0);
    const local = Buffer.alloc(30 + name.length + localExtra.length);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt16LE(big ? VERSION_ZIP64 : VERSION_STORED, 4);
    local.writeUInt16LE(FLAG_UTF8, 6);
    local.writeUInt16LE(0, 8);
    local.writeUInt16LE(time, 10);
    local.writeUInt16LE(date, 12);
    local.writeUInt32LE(entry.crc32 >>> 0, 14);
    local.writeUInt32LE(big ? MAX32 : entry.size, 18);
    local.writeUInt32LE(big ? MAX32 : entry.size, 22);
    local.writeUInt16LE(name.length, 26);
    local.writeUInt16LE(localExtra.length, 28);
    name.copy(local, 30);
    localExtra.copy(local, 30 + name.length);
    push(local);

    if (entry.data) {
      if (entry.data.length !== entry.size) throw new Error(`inline entry ${entry.name} is not its size`);
      push(entry.data);
    } else if (entry.size > 0) {
      segments.push({ kind: "file", offset, entry: index, length: entry.size });
      offset += entry.size;
    }

    // 4.3.12 central directory header; ZIP64 fields in the order 4.5.3 gives, only those needed.
    const wide: number[] = [];
    if (big) wide.push(entry.size, entry.size);
    if (farOut) wide.push(headerAt);
    const centralExtra = wide.length ? zip64Extra(wide) : Buffer.alloc(0);
    const header = Buffer.alloc(46 + name.length + centralExtra.length);
    header.writeUInt32LE(0x02014b50, 0);
    header.writeUInt16LE(MADE_BY, 4);
    header.writeUInt16LE(wide.length ? VERSION_ZIP64 : VERSION_STORED, 6);
    header.writeUInt16LE(FLAG_UTF8, 8);
    header.writeUInt16LE(0, 10);
    header.writeUInt16LE(time, 12);
    header.writeUInt16LE(date, 14);
    header.writeUInt32LE(entry.crc32 >>> 0, 16);
    header.writeUInt32LE(big ? MAX32 : entry.size, 20);
    header.writeUInt32LE(big ? MAX32 : entry.size, 24);
    header.writeUInt16LE(name.length, 28);
    header.writeUInt16LE(centralExtra.length, 30);
    header.writeUInt16LE(0, 32); // comment length
    header.writeUInt16LE(0, 34); // disk number start
    header.writeUInt16LE(0, 36); // internal attributes
    header.writeUInt32LE(EXTERNAL_ATTRS, 38);
    header.writeUInt32LE(farOut ? MAX32 : headerAt, 42);
    name.copy(header, 46);
    centralExtra.copy(header, 46 + name.length);
    central.push(header);
  });

  const directoryAt = offset;
  const directory = Buffer.concat(central);
  push(directory);
  const count = entries.length;
  const directoryFar = directoryAt >= MAX32 || directory.length >= MAX32 || count >= MAX16;
  if (directoryFar) zip64 = true;

  if (directoryFar) {
    // 4.3.14 ZIP64 end of central directory record, then 4.3.15 its locator.
    const recordAt = offset;
    const record = Buffer.alloc(56);
    record.writeUInt32LE(0x06064b50, 0);
    writeUInt64(record, 44, 4);
    record.writeUInt16LE(MADE_BY, 12);
    record.writeUInt16LE(VERSION_ZIP64, 14);
    record.writeUInt32LE(0, 16);
    record.writeUInt32LE(0, 20);
    writeUInt64(record, count, 24);
    writeUInt64(record, count, 32);
    writeUInt64(record, directory.length, 40);
    writeUInt64(record, directoryAt, 48);
    const locator = Buffer.alloc(20);
    locator.writeUInt32LE(0x07064b50, 0);
    locator.writeUInt32LE(0, 4);
    writeUInt64(locator, recordAt, 8);
    locator.writeUInt32LE(1, 16);
    push(Buffer.concat([record, locator]));
  }

  // 4.3.16 end of central directory record; 0xFFFF… where the ZIP64 record holds the value.
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(0, 4);
  end.writeUInt16LE(0, 6);
  end.writeUInt16LE(Math.min(count, MAX16), 8);
  end.writeUInt16LE(Math.min(count, MAX16), 10);
  end.writeUInt32LE(directoryFar ? Math.min(directory.length, MAX32) : directory.length, 12);
  end.writeUInt32LE(directoryFar ? MAX32 : directoryAt, 16);
  end.writeUInt16LE(0, 20);
  push(end);

  return { segments, size: offset, zip64 };
}

/**
 * The segments covering bytes `start` to `start + length` of an archive, each cut to the range:
 * bytes as subarrays (no copy), files as an entry, the position inside it and a length.
 */
export function sliceLayout(
  layout: ZipLayout,
  start: number,
  length: number,
): ({ kind: "bytes"; data: Buffer } | { kind: "file"; entry: number; position: number; length: number })[] {
  const end = start + length;
  const out: (
    | { kind: "bytes"; data: Buffer }
    | { kind: "file"; entry: number; position: number; length: number }
  )[] = [];
  for (const s of layout.segments) {
    const segLength = s.kind === "bytes" ? s.data.length : s.length;
    const segEnd = s.offset + segLength;
    if (segEnd <= start || s.offset >= end) continue;
    const from = Math.max(start, s.offset) - s.offset;
    const to = Math.min(end, segEnd) - s.offset;
    if (s.kind === "bytes") out.push({ kind: "bytes", data: s.data.subarray(from, to) });
    else out.push({ kind: "file", entry: s.entry, position: from, length: to - from });
  }
  return out;
}
