/**
 * The zip layout (domain/zip.ts) read by independent tools: Python's zipfile and Info-ZIP's unzip.
 * - small archives (empty and UTF-8-named entries) written whole: every entry and CRC checks out;
 * - a ZIP64 archive over 4 GiB backed by a sparse file: an entry of 4 GiB + 100 zero bytes (its CRC
 *   computed over the zeros, its bytes the file's holes) between two small ones, so the last entry's
 *   header lies past 4 GiB: Python lists the sizes and offsets and reads both small entries (checking
 *   their CRCs), unzip lists it;
 * - 70,000 entries: ZIP64 end records for the entry count;
 * - any range of the layout (sliceLayout) is the same bytes as the whole archive's slice;
 * - the portable CRC-32 equals zlib's.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { after, test } from "node:test";
import zlib from "node:zlib";
import { crc32, crc32Portable } from "../../src/domain/crc32.js";
import { sliceLayout, type ZipEntry, type ZipLayout, zipLayout } from "../../src/domain/zip.js";
import { tempDir } from "../helpers/service.js";

const dir = tempDir("exportd-zip-");
after(() => fs.rmSync(dir, { recursive: true, force: true }));

const inline = (name: string, text: string): ZipEntry => {
  const data = Buffer.from(text, "utf8");
  return { name, size: data.length, crc32: crc32(data, 0), data };
};

/** Writes the layout's own bytes at their offsets; file segments stay holes (zeros) of a sparse file. */
function writeSparse(file: string, layout: ZipLayout): void {
  const fd = fs.openSync(file, "w");
  try {
    fs.ftruncateSync(fd, layout.size);
    for (const s of layout.segments)
      if (s.kind === "bytes") fs.writeSync(fd, s.data, 0, s.data.length, s.offset);
  } finally {
    fs.closeSync(fd);
  }
}

function python(script: string, ...args: string[]): unknown {
  return JSON.parse(execFileSync("python3", ["-c", script, ...args], { encoding: "utf8" }));
}

const CREATED = Date.UTC(2026, 10, 23, 14, 30, 42);

test("small archives: Python and unzip read every entry, name and date", () => {
  const entries = [
    inline("manifest.json", '{"a":1}\n'),
    inline("users/part-000.csv", ""),
    inline("naïve/ünï.txt", "é".repeat(1000)),
  ];
  const layout = zipLayout(entries, CREATED);
  assert.equal(layout.zip64, false);
  const file = path.join(dir, "small.zip");
  writeSparse(file, layout);
  assert.match(execFileSync("unzip", ["-t", file], { encoding: "utf8" }), /No errors detected/);
  const read = python(
    `import json, sys, zipfile
z = zipfile.ZipFile(sys.argv[1])
print(json.dumps({"bad": z.testzip(), "names": z.namelist(), "date": list(z.infolist()[0].date_time), "texts": [z.read(n).decode() for n in z.namelist()]}))`,
    file,
  ) as { bad: null; names: string[]; date: number[]; texts: string[] };
  assert.equal(read.bad, null);
  assert.deepEqual(
    read.names,
    entries.map((e) => e.name),
  );
  assert.deepEqual(read.date, [2026, 11, 23, 14, 30, 42]);
  assert.deepEqual(
    read.texts,
    entries.map((e) => e.data?.toString("utf8")),
  );
  // Deterministic: the same entries give the same bytes.
  const again = zipLayout(entries, CREATED);
  assert.equal(again.size, layout.size);
  assert.deepEqual(
    Buffer.concat(again.segments.map((s) => (s.kind === "bytes" ? s.data : Buffer.alloc(0)))),
    Buffer.concat(layout.segments.map((s) => (s.kind === "bytes" ? s.data : Buffer.alloc(0)))),
  );
});

test("ZIP64: an archive over 4 GiB (sparse file) lists sizes and offsets past 4 GiB in Python and unzip", () => {
  const bigSize = 2 ** 32 + 100;
  // CRC-32 of the zeros the sparse file holds there.
  const zeros = Buffer.alloc(16 << 20);
  let crc = 0;
  let left = bigSize;
  while (left > 0) {
    const n = Math.min(left, zeros.length);
    crc = crc32(zeros.subarray(0, n), crc);
    left -= n;
  }
  const entries: ZipEntry[] = [
    inline("manifest.json", '{"complete":true}\n'),
    { name: "big/part-000.bin", size: bigSize, crc32: crc, data: null },
    inline("after/part-000.csv", "id\r\n1\r\n"),
  ];
  const layout = zipLayout(entries, CREATED);
  assert.equal(layout.zip64, true);
  assert.ok(layout.size > 2 ** 32 + 100);
  const file = path.join(dir, "big.zip");
  writeSparse(file, layout);
  const read = python(
    `import json, sys, zipfile
z = zipfile.ZipFile(sys.argv[1])
infos = z.infolist()
print(json.dumps({"entries": [[i.filename, i.file_size, i.compress_size, i.header_offset, i.CRC] for i in infos],
  "first": z.read("manifest.json").decode(), "last": z.read("after/part-000.csv").decode()}))`,
    file,
  ) as { entries: [string, number, number, number, number][]; first: string; last: string };
  assert.equal(read.entries.length, 3);
  assert.deepEqual(read.entries[1]?.slice(0, 3), ["big/part-000.bin", bigSize, bigSize]);
  assert.equal(read.entries[1]?.[4], crc);
  assert.ok((read.entries[2]?.[3] as number) > 2 ** 32, "the last entry's header lies past 4 GiB");
  assert.equal(read.first, '{"complete":true}\n');
  assert.equal(read.last, "id\r\n1\r\n");
  const listing = execFileSync("unzip", ["-l", file], { encoding: "utf8" });
  assert.match(listing, new RegExp(`${bigSize}\\s+\\S+\\s+\\S+\\s+big/part-000\\.bin`));
  assert.match(listing, /3 files/);
  // unzip reads the entry behind the large one through the ZIP64 offset.
  assert.equal(
    execFileSync("unzip", ["-p", file, "after/part-000.csv"], { encoding: "utf8" }),
    "id\r\n1\r\n",
  );
});

test("ZIP64 end records for 70,000 entries", () => {
  const entries = Array.from({ length: 70_000 }, (_, i) =>
    inline(`e/${i}.txt`, i % 1000 === 0 ? String(i) : ""),
  );
  const layout = zipLayout(entries, CREATED);
  assert.equal(layout.zip64, true);
  const file = path.join(dir, "many.zip");
  writeSparse(file, layout);
  const read = python(
    `import json, sys, zipfile
z = zipfile.ZipFile(sys.argv[1])
print(json.dumps([len(z.infolist()), z.read("e/69000.txt").decode()]))`,
    file,
  );
  assert.deepEqual(read, [70_000, "69000"]);
});

test("every range of the layout is the same bytes as the whole archive's", () => {
  const fileBytes = Buffer.from("0123456789abcdefghij".repeat(50));
  const entries: ZipEntry[] = [
    inline("manifest.json", "{}\n"),
    { name: "d/part-000.csv", size: fileBytes.length, crc32: crc32(fileBytes, 0), data: null },
    inline("z.txt", "end"),
  ];
  const layout = zipLayout(entries, CREATED);
  const whole = Buffer.concat(
    sliceLayout(layout, 0, layout.size).map((s) =>
      s.kind === "bytes" ? s.data : fileBytes.subarray(s.position, s.position + s.length),
    ),
  );
  assert.equal(whole.length, layout.size);
  let seed = 7;
  const next = () => {
    seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31;
    return seed;
  };
  for (let i = 0; i < 500; i++) {
    const start = next() % layout.size;
    const length = 1 + (next() % (layout.size - start));
    const got = Buffer.concat(
      sliceLayout(layout, start, length).map((s) =>
        s.kind === "bytes" ? s.data : fileBytes.subarray(s.position, s.position + s.length),
      ),
    );
    assert.ok(got.equals(whole.subarray(start, start + length)), `range ${start}+${length}`);
  }
});

test("the portable CRC-32 equals zlib's, also continued over chunks", () => {
  const data = Buffer.from(Array.from({ length: 100_000 }, (_, i) => (i * 31 + (i >> 7)) & 0xff));
  const native = (zlib as { crc32?: (d: Uint8Array, v?: number) => number }).crc32;
  const expected = native ? native(data) >>> 0 : crc32(data, 0);
  assert.equal(crc32Portable(data, 0), expected);
  assert.equal(crc32Portable(data.subarray(40_000), crc32Portable(data.subarray(0, 40_000), 0)), expected);
  assert.equal(crc32Portable(Buffer.from("123456789"), 0), 0xcbf43926, "the check value of CRC-32/ISO-HDLC");
});
