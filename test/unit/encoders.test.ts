/** CSV and JSONL encoders: hard values survive a round trip through a real CSV parser and JSON.parse. */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { parse } from "csv-parse/sync";
import type { ColumnSpec } from "../../src/domain/dataset.js";
import { ENCODERS } from "../../src/pipeline/encoders.js";
import type { Cell } from "../../src/sources/types.js";

const columns: ColumnSpec[] = [
  { name: "text", type: "string" },
  { name: "n", type: "integer" },
  { name: "props", type: "json" },
];

const hard: string[] = [
  "",
  "plain",
  'say "hi"',
  "a,b",
  "semi;colon",
  "tab\there",
  "line\nbreak",
  "carriage\rreturn",
  "crlf\r\ninside",
  "back\\slash",
  "control \u0001\u001f chars",
  "naïve café — ünïcödé",
  "emoji 🎉👩‍💻",
  '"',
  '""',
  " leading and trailing ",
  "=SUM(A1:A2)",
];

const rows: Cell[][] = hard.map((text, i) => [
  text,
  i * 1_000_003,
  JSON.stringify({ text, i, nested: [text] }),
]);
rows.push([null, null, null]);

for (const delimiter of [",", ";", "\t", "|"]) {
  test(`csv with ${JSON.stringify(delimiter)}: every value round-trips through csv-parse`, () => {
    const enc = ENCODERS.csv({ columns, csv: { delimiter, header: true, bom: false } });
    const text = enc.prelude() + enc.encode(rows, 0, rows.length);
    const parsed = parse(text, { delimiter, relax_quotes: false }) as string[][];
    assert.deepEqual(parsed[0], ["text", "n", "props"]);
    assert.equal(parsed.length, rows.length + 1);
    rows.forEach((row, i) => {
      assert.deepEqual(
        parsed[i + 1],
        row.map((v) => (v === null ? "" : String(v))),
      );
    });
  });
}

test("csv: header off, BOM on, a slice of rows", () => {
  const enc = ENCODERS.csv({ columns, csv: { delimiter: ",", header: false, bom: true } });
  assert.equal(enc.prelude(), "\uFEFF");
  assert.equal(
    enc.encode(rows, 1, 3),
    `plain,1000003,"{""text"":""plain"",""i"":1,""nested"":[""plain""]}"\r\n${enc.encode(rows, 2, 3)}`,
  );
});

test("csv: cells whose quotes the source doubled encode like the original text, guard included", () => {
  const texts = [...hard, "-1", '"=quoted"', "+", "@x", "\tx", "\rx"];
  const original: Cell[][] = texts.map((text) => [text, 1, JSON.stringify(text)]);
  original.push([null, null, null]);
  const doubled: Cell[][] = original.map((row) =>
    row.map((v) => (typeof v === "string" ? v.replaceAll('"', '""') : v)),
  );
  for (const formulaGuard of [false, true]) {
    for (const delimiter of [",", "\t", ";"]) {
      const enc = ENCODERS.csv({ columns, csv: { delimiter, header: true, bom: false, formulaGuard } });
      assert.equal(
        enc.encode(doubled, 0, doubled.length, [true, false, true]),
        enc.encode(original, 0, original.length),
        `${JSON.stringify(delimiter)} guard ${formulaGuard}`,
      );
    }
  }
});

describe("jsonl", () => {
  test("every line parses; strings stay strings, JSON columns become JSON", () => {
    const enc = ENCODERS.jsonl({ columns, csv: { delimiter: ",", header: true, bom: false } });
    assert.equal(enc.prelude(), "");
    const lines = enc.encode(rows, 0, rows.length).split("\n");
    assert.equal(lines.pop(), "", "ends with a newline");
    assert.equal(lines.length, rows.length);
    lines.forEach((line, i) => {
      const obj = JSON.parse(line);
      const [text, n, props] = rows[i]!;
      assert.deepEqual(Object.keys(obj), ["text", "n", "props"]);
      assert.equal(obj.text, text);
      assert.equal(obj.n, n);
      assert.deepEqual(obj.props, props === null ? null : JSON.parse(props as string));
    });
  });

  test("a line is never split by a newline inside a value", () => {
    const enc = ENCODERS.jsonl({ columns, csv: { delimiter: ",", header: true, bom: false } });
    const out = enc.encode([["a\nb\u2028c", 1, "{}"]], 0, 1);
    assert.equal(out.split("\n").length, 2);
  });
});

test("csv: LF newlines, NULL unquoted and empty quoted, the formula guard on text columns only", () => {
  const cols: ColumnSpec[] = [
    { name: "text", type: "string" },
    { name: "n", type: "integer" },
  ];
  const enc = ENCODERS.csv({
    columns: cols,
    csv: { delimiter: ",", header: false, bom: false, newline: "lf", formulaGuard: true },
  });
  const out = enc.encode(
    [
      ["=1+1", -5],
      ["+x", 9007199254740993n],
      ["-y,z", null],
      ["@a", 1],
      ["\tt", 1],
      ["\rr", 1],
      ["", 1],
      [null, 1],
      ["safe", 1],
    ],
    0,
    9,
  );
  assert.equal(out, `'=1+1,-5\n'+x,9007199254740993\n"'-y,z",\n'@a,1\n'\tt,1\n"'\rr",1\n"",1\n,1\nsafe,1\n`);
});

test("jsonl: bigints keep every digit", () => {
  const enc = ENCODERS.jsonl({
    columns: [{ name: "n", type: "integer" }],
    csv: { delimiter: ",", header: true, bom: false },
  });
  assert.equal(enc.encode([[2n ** 64n + 1n]], 0, 1), '{"n":18446744073709551617}\n');
});
