/** The COPY scanner finds row ends and strips cursor fields however the bytes are split into chunks. */
import assert from "node:assert/strict";
import { test } from "node:test";
import { CopyScanner, type ScanOptions } from "../../src/sources/sql/copy-scanner.js";

/** Feeds `input` split at the given sizes and collects rows and cursors. */
function scanAll(options: ScanOptions, input: string, sizes: number[]) {
  const scanner = new CopyScanner(options);
  const bytes = Buffer.from(input);
  const out: string[] = [];
  const cursors: [string, string][] = [];
  let pos = 0;
  let i = 0;
  while (pos < bytes.length) {
    const size = sizes[i++ % sizes.length] as number;
    const rows = scanner.scan([bytes.subarray(pos, pos + size)]);
    pos += size;
    let start = 0;
    for (let r = 0; r < rows.rowEnds.length; r++) {
      out.push(rows.bytes.toString("utf8", start, rows.rowEnds[r]));
      start = rows.rowEnds[r] as number;
      cursors.push(rows.cursorOf(r));
    }
  }
  scanner.finish();
  return { out, cursors };
}

const CSV_COPY = [
  'plain,"quoted, with comma",1700000000000001,1\n',
  '"line\nbreak","cr\rhere",1700000000000002,2\n',
  '"""",x,1700000000000003,6162\n',
  '"ends with quote""","crlf\r\ninside",-5,3\n',
  ',,1700000000000004,""\n',
  'émoji 🎉,"a""b",1700000000000005,99\n',
].join("");

for (const sizes of [[1], [2], [3], [7], [1, 5, 2], [10_000]]) {
  test(`csv split into chunks of ${sizes.join("/")}: rows and cursors survive`, () => {
    const { out, cursors } = scanAll({ format: "csv", delimiter: ",", newline: "\r\n" }, CSV_COPY, sizes);
    assert.deepEqual(out, [
      'plain,"quoted, with comma"\r\n',
      '"line\nbreak","cr\rhere"\r\n',
      '"""",x\r\n',
      '"ends with quote""","crlf\r\ninside"\r\n',
      ",\r\n",
      'émoji 🎉,"a""b"\r\n',
    ]);
    assert.deepEqual(cursors, [
      ["1700000000000001", "1"],
      ["1700000000000002", "2"],
      ["1700000000000003", "6162"],
      ["-5", "3"],
      ["1700000000000004", ""],
      ["1700000000000005", "99"],
    ]);
  });
}

test("text format (JSONL): doubled backslashes are undone, LF kept", () => {
  const input = '{"a":"x\\\\ny","b":"\\\\\\\\"}\t17\t1\n{"a":null}\t18\t2\n';
  for (const sizes of [[1], [4], [1000]]) {
    const { out, cursors } = scanAll({ format: "text", delimiter: ",", newline: "\n" }, input, sizes);
    assert.deepEqual(out, ['{"a":"x\\ny","b":"\\\\"}\n', '{"a":null}\n']);
    assert.deepEqual(
      out.map((line) => JSON.parse(line)),
      [{ a: "x\ny", b: "\\" }, { a: null }],
    );
    assert.deepEqual(cursors, [
      ["17", "1"],
      ["18", "2"],
    ]);
  }
});

test("a truncated COPY is an error, never a short file", () => {
  const scanner = new CopyScanner({ format: "csv", delimiter: ",", newline: "\n" });
  scanner.scan([Buffer.from('a,1,1\n"open quote\n,2,2\n')]);
  assert.throws(() => scanner.finish(), /ended inside a row/);
});
