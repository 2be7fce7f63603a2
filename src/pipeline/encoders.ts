/**
 * Row encoders, one per format, in a registry. An encoder turns a whole batch of rows into one
 * string: writing large chunks into the compressor, not one per row, is what keeps exports fast.
 */
import { type ColumnSpec, FORMULA_GUARDED_TYPES } from "../domain/dataset.js";
import { type CsvOptions, csvNewline, FORMULA_STARTS, type Format } from "../domain/export.js";
import type { Cell } from "../sources/types.js";

export interface Encoder {
  /** What every part starts with (BOM, header row). */
  prelude(): string;
  /** `quotesDoubled`: see CellBatch (CSV only; other formats never get it). */
  encode(rows: Cell[][], start: number, end: number, quotesDoubled?: readonly boolean[]): string;
}

export interface EncoderOptions {
  columns: ColumnSpec[];
  csv: CsvOptions;
}

const NONE_DOUBLED: readonly boolean[] = [];

/**
 * A number as CSV text: as PostgreSQL's COPY writes it — NaN, Infinity, -Infinity, and -0 with its
 * sign (String(-0) is "0").
 */
function csvNumber(value: number): string {
  return value === 0 && 1 / value < 0 ? "-0" : String(value);
}

/**
 * A number as JSON text, as PostgreSQL's to_json writes it: NaN and ±Infinity, which JSON has no
 * number for, as the strings "NaN", "Infinity", "-Infinity" (JSON.stringify would write null, the
 * same as NULL); -0 as -0 (JSON.stringify drops the sign).
 */
function jsonNumber(value: number): string {
  if (!Number.isFinite(value)) return `"${value}"`;
  return value === 0 && 1 / value < 0 ? "-0" : String(value);
}

function csvEncoder({ columns, csv }: EncoderOptions): Encoder {
  const delimiter = csv.delimiter;
  const newline = csvNewline(csv);
  // RFC 4180: a field holding the delimiter, a quote, CR or LF is quoted, and quotes inside are doubled.
  const needsQuotes = new RegExp(`["\\r\\n${delimiter === "\t" ? "\\t" : `\\${delimiter}`}]`);
  // The empty string is quoted so that it differs from NULL (an empty field), as PostgreSQL's COPY does.
  const text = (value: string): string =>
    value === "" ? '""' : needsQuotes.test(value) ? `"${value.replaceAll('"', '""')}"` : value;
  // Text whose quotes the source already doubled: doubling adds no quote, delimiter, CR or LF where
  // there was none, so the same test decides, and the guard's leading ' is no quote either.
  const doubledText = (value: string): string =>
    value === "" ? '""' : needsQuotes.test(value) ? `"${value}"` : value;
  const field = (value: Cell): string => {
    if (value === null) return "";
    if (typeof value !== "string") return String(value);
    return text(value);
  };
  const formulaStart = new Set<number>(FORMULA_STARTS.map((c) => c.charCodeAt(0)));
  // Only text is guarded, and only in the column types that may hold a formula.
  const guarded = columns.map((c) => csv.formulaGuard === true && FORMULA_GUARDED_TYPES.has(c.type));
  const width = columns.length;
  return {
    prelude() {
      const bom = csv.bom ? "\uFEFF" : "";
      return csv.header ? bom + columns.map((c) => field(c.name)).join(delimiter) + newline : bom;
    },
    encode(rows, start, end, quotesDoubled) {
      // One flat loop, no closure per cell: this runs for every value of every row.
      const doubled = quotesDoubled ?? NONE_DOUBLED;
      let out = "";
      for (let r = start; r < end; r++) {
        const row = rows[r] as Cell[];
        for (let c = 0; c < width; c++) {
          const value = row[c];
          let cell: string;
          if (typeof value === "string") {
            const guardedValue =
              guarded[c] === true && formulaStart.has(value.charCodeAt(0)) ? `'${value}` : value;
            cell = doubled[c] === true ? doubledText(guardedValue) : text(guardedValue);
          } else if (value === null || value === undefined) {
            cell = "";
          } else if (typeof value === "number") {
            cell = csvNumber(value);
          } else {
            // Bigints and booleans never need quotes.
            cell = String(value);
          }
          out += c === 0 ? cell : delimiter + cell;
        }
        out += newline;
      }
      return out;
    },
  };
}

function jsonlEncoder({ columns }: EncoderOptions): Encoder {
  // Keys are encoded once; JSON columns already hold JSON text and are inserted as values.
  const keys = columns.map((c, i) => `${i === 0 ? "{" : ","}${JSON.stringify(c.name)}:`);
  const isJson = columns.map((c) => c.type === "json");
  const width = columns.length;
  return {
    prelude: () => "",
    encode(rows, start, end) {
      let out = "";
      for (let r = start; r < end; r++) {
        const row = rows[r] as Cell[];
        let line = "";
        for (let c = 0; c < width; c++) {
          const value = row[c] ?? null;
          line +=
            keys[c] +
            (isJson[c] && typeof value === "string"
              ? value
              : typeof value === "bigint"
                ? String(value)
                : typeof value === "number"
                  ? jsonNumber(value)
                  : JSON.stringify(value));
        }
        out += `${line}}\n`;
      }
      return out;
    },
  };
}

export const ENCODERS: Record<Format, (options: EncoderOptions) => Encoder> = {
  csv: csvEncoder,
  jsonl: jsonlEncoder,
};
