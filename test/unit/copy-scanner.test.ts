/**
 * The COPY framing and scanner: rows come out whole, cursor fields stripped (or read from the exported
 * fields), however the protocol bytes are split into chunks.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { CopyFramer } from "../../src/sources/sql/copy-out.js";
import { CopyScanner, type ScanOptions } from "../../src/sources/sql/copy-scanner.js";

/** One protocol message: code, length (itself included), body. */
function message(code: string, body: string | Buffer): Buffer {
  const bytes = typeof body === "string" ? Buffer.from(body) : body;
  const header = Buffer.alloc(5);
  header[0] = code.charCodeAt(0);
  header.writeUInt32BE(bytes.length + 4, 1);
  return Buffer.concat([header, bytes]);
}

/** COPY rows as the server frames them: one CopyData message per row. */
const framed = (rows: string[]) => Buffer.concat(rows.map((r) => message("d", r)));

/** Splits `bytes` at the given sizes (repeated). */
function split(bytes: Buffer, sizes: number[]): Buffer[] {
  const chunks: Buffer[] = [];
  for (let pos = 0, i = 0; pos < bytes.length; i++) {
    const size = sizes[i % sizes.length] as number;
    chunks.push(bytes.subarray(pos, pos + size));
    pos += size;
  }
  return chunks;
}

/** Feeds the chunks one scan each and collects rows and cursors. */
function scanAll(options: ScanOptions, chunks: Buffer[]) {
  const scanner = new CopyScanner(options);
  const out: string[] = [];
  const cursors: [string, string][] = [];
  for (const chunk of chunks) {
    const rows = scanner.scan([chunk]);
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

const CSV_ROWS = [
  'plain,"quoted, with comma",1700000000000001,1\n',
  '"line\nbreak","cr\rhere",1700000000000002,2\n',
  '"""",x,1700000000000003,6162\n',
  '"ends with quote""","crlf\r\ninside",-5,3\n',
  ',,1700000000000004,""\n',
  'émoji 🎉,"a""b",1700000000000005,99\n',
];
const CSV_OUT = [
  'plain,"quoted, with comma"\r\n',
  '"line\nbreak","cr\rhere"\r\n',
  '"""",x\r\n',
  '"ends with quote""","crlf\r\ninside"\r\n',
  ",\r\n",
  'émoji 🎉,"a""b"\r\n',
];
const CSV_CURSORS = [
  ["1700000000000001", "1"],
  ["1700000000000002", "2"],
  ["1700000000000003", "6162"],
  ["-5", "3"],
  ["1700000000000004", ""],
  ["1700000000000005", "99"],
];

for (const sizes of [[1], [2], [3], [5], [7], [1, 5, 2], [10_000]]) {
  test(`csv split into chunks of ${sizes.join("/")}: rows and cursors survive`, () => {
    const chunks = split(framed(CSV_ROWS), sizes);
    const { out, cursors } = scanAll({ format: "csv", delimiter: ",", newline: "\r\n" }, chunks);
    assert.deepEqual(out, CSV_OUT);
    assert.deepEqual(cursors, CSV_CURSORS);
  });
}

test("quotes and newlines only in later chunks: a quote-free chunk first, then quoted CR/LF split across chunks", () => {
  const rows = ["a,b,1,1\n", "c,d,2,2\n", '"x\r\n""y",z,3,3\n', '"\n",",",4,4\n'];
  const bytes = framed(rows);
  // The first chunk ends exactly after two quote-free rows; the rest is cut inside the quoted fields.
  const first = framed(rows.slice(0, 2)).length;
  for (const cut of [first + 6, first + 7, first + 8, first + 9]) {
    const { out, cursors } = scanAll({ format: "csv", delimiter: ",", newline: "\n" }, [
      bytes.subarray(0, first),
      bytes.subarray(first, cut),
      bytes.subarray(cut),
    ]);
    assert.deepEqual(out, ["a,b\n", "c,d\n", '"x\r\n""y",z\n', '"\n",","\n']);
    assert.deepEqual(cursors, [
      ["1", "1"],
      ["2", "2"],
      ["3", "3"],
      ["4", "4"],
    ]);
  }
});

test("csv with the cursor in exported fields: rows pass whole, cursors read from their fields", () => {
  const rows = [
    '"a,""b""\n",2026-01-01T00:00:01.000000Z,17,x\n',
    '"",2026-01-01T00:00:02.500000Z,18,\n',
    'plain,2026-01-01T00:00:03.000000Z,19,"y\r\n"\n',
  ];
  for (const sizes of [[1], [4], [10_000]]) {
    const { out, cursors } = scanAll(
      { format: "csv", delimiter: ",", newline: "\r\n", cursorFields: { time: 1, key: 2 } },
      split(framed(rows), sizes),
    );
    assert.deepEqual(out, [
      '"a,""b""\n",2026-01-01T00:00:01.000000Z,17,x\r\n',
      '"",2026-01-01T00:00:02.500000Z,18,\r\n',
      'plain,2026-01-01T00:00:03.000000Z,19,"y\r\n"\r\n',
    ]);
    assert.deepEqual(cursors, [
      ["2026-01-01T00:00:01.000000Z", "17"],
      ["2026-01-01T00:00:02.500000Z", "18"],
      ["2026-01-01T00:00:03.000000Z", "19"],
    ]);
  }
});

test("text format (JSONL): doubled backslashes are undone, LF kept", () => {
  const rows = ['{"a":"x\\\\ny","b":"\\\\\\\\"}\t17\t1\n', '{"a":null}\t18\t2\n'];
  for (const sizes of [[1], [4], [1000]]) {
    const { out, cursors } = scanAll(
      { format: "text", delimiter: ",", newline: "\n" },
      split(framed(rows), sizes),
    );
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

test("text format (JSONL): every byte escape of COPY's text format is undone; line breaks and NULL are refused", () => {
  // A json value's tabs between tokens arrive as \t; \b, \f and \v cannot be in valid JSON, but are
  // undone exactly all the same.
  const rows = ['{"a":\\t1,"b":\\t"\\\\\\\\"}\t17\t1\n', "x\\b\\f\\vy\t18\t2\n"];
  for (const sizes of [[1], [3], [1000]]) {
    const { out } = scanAll({ format: "text", delimiter: ",", newline: "\n" }, split(framed(rows), sizes));
    assert.deepEqual(out, ['{"a":\t1,"b":\t"\\\\"}\n', "x\b\f\vy\n"]);
    assert.deepEqual(JSON.parse(out[0] as string), { a: 1, b: "\\" });
  }
  for (const escaped of ["\\n", "\\r", "\\N", "\\x41"]) {
    const scanner = new CopyScanner({ format: "text", delimiter: ",", newline: "\n" });
    assert.throws(() => scanner.scan([framed([`{"a":${escaped}1}\t17\t1\n`])]), /unexpected COPY escape/);
  }
});

test("a truncated COPY is an error, never a short file", () => {
  const scanner = new CopyScanner({ format: "csv", delimiter: ",", newline: "\n" });
  scanner.scan([framed(["a,1,1\n", '"open quote\n,2,2\n']).subarray(0, 20)]);
  assert.throws(() => scanner.finish(), /ended inside a row/);
});

test("framer: CopyData passes through whole, other messages are dropped, CopyDone ends it, at any split", () => {
  const data = framed(CSV_ROWS);
  const protocol = Buffer.concat([
    message("H", Buffer.from([0, 0, 1, 0, 0])),
    data.subarray(0, message("d", CSV_ROWS[0] as string).length),
    message("N", "a notice"),
    data.subarray(message("d", CSV_ROWS[0] as string).length),
    message("c", ""),
    Buffer.from("C\u0000\u0000\u0000\u000bCOPY 6\u0000"),
  ]);
  for (const size of [1, 2, 3, 4, 5, 6, 9, 64, 10_000]) {
    const framer = new CopyFramer();
    const pieces: Buffer[] = [];
    let end: string | null = null;
    let rest: Buffer = Buffer.alloc(0);
    for (const chunk of split(protocol, [size])) {
      if (end) {
        rest = Buffer.concat([rest, chunk]);
        continue;
      }
      const f = framer.feed(chunk);
      pieces.push(...f.data);
      end = f.end;
      rest = f.rest;
    }
    assert.equal(end, "done", `size ${size}`);
    assert.ok(Buffer.concat(pieces).equals(data), `size ${size}`);
    assert.equal(rest.toString("latin1"), "C\u0000\u0000\u0000\u000bCOPY 6\u0000", `size ${size}`);
  }
});

test("framer: an ErrorResponse hands everything from it on back to pg", () => {
  const error = message("E", "SERROR\u0000");
  const framer = new CopyFramer();
  const f = framer.feed(Buffer.concat([message("d", "a,1,1\n"), error]));
  assert.deepEqual(
    f.data.map((d) => d.toString("latin1")),
    [message("d", "a,1,1\n").toString("latin1")],
  );
  assert.equal(f.end, "error");
  assert.ok(f.rest.equals(error));
});
