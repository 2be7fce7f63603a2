/**
 * Turns PostgreSQL's COPY output, as CopyData messages with their framing (copy-out.ts), into export
 * bytes: one row per message, the two trailing cursor fields (time and key) that exportd appends to
 * every row stripped, so that parts can be cut at exact row counts and a resumed run knows where the
 * last row of a part was.
 *
 * - CSV: rows are written back with the requested newline (COPY only writes LF); quoted fields may
 *   hold LF, CR, delimiters and doubled quotes, and stay as they are, just as the JS encoder leaves
 *   them. The framing tells where a row ends, so quotes never need to be looked at.
 * - text (JSONL): every row is one JSON text. JSON strings hold no raw control character, but a json
 *   value may keep tabs between its tokens, which COPY writes as `\t`: every escape COPY's text format
 *   writes for a byte (`\\`, `\t`, `\b`, `\f`, `\v`) is undone here. Line breaks (`\n`, `\r`) and
 *   NULL (`\N`) never reach it — the SQL turns json's line breaks into spaces and writes no NULL —
 *   and fail loudly if they do: undone, they would split the line.
 *
 * The cursor fields never need quoting (COPY's ISO time; an integer or hex-encoded key), so they are
 * found by walking back from the row end to the second delimiter. When the exported row already holds
 * the exact time and key (`cursorFields`), COPY sends no cursor fields — formatting them is about a
 * tenth of PostgreSQL's work — and `cursorOf` reads those two fields of the one row it is asked about. Rows are moved into place inside
 * one copy of the input with copyWithin (native, and no view object per row, unlike Buffer.copy),
 * while the untouched input keeps the cursor fields for `cursorOf`.
 */

const COPY_DATA = 0x64;
const LF = 0x0a;
const CR = 0x0d;
const BACKSLASH = 0x5c;
const QUOTE = 0x22;
const TAB = 0x09;
/** COPY text format's escapes for single bytes, by the letter after the backslash (backslash itself aside). */
const TEXT_ESCAPES: Readonly<Record<number, number>> = {
  116: TAB, // \t
  98: 0x08, // \b
  102: 0x0c, // \f
  118: 0x0b, // \v
};

export interface ScanOptions {
  format: "csv" | "text";
  /** CSV delimiter (text format always uses tab). */
  delimiter: string;
  /** Row terminator of the output. */
  newline: "\n" | "\r\n";
  /**
   * CSV only: the indexes of the exported fields that hold the cursor's time and key, exactly and never
   * quoted; then COPY appends no cursor fields. Absent: the two trailing fields are the cursor.
   */
  cursorFields?: { time: number; key: number };
}

export interface ScannedRows {
  /** The rows, back to back, without cursor fields. */
  bytes: Buffer;
  /** Byte offset after each row in `bytes`. */
  rowEnds: number[];
  /** The cursor fields of row i, as text: [time, key]. */
  cursorOf(index: number): [string, string];
}

export class CopyScanner {
  private readonly delimiter: number;
  private readonly crlf: boolean;
  private readonly text: boolean;
  private readonly cursorFields: { time: number; key: number } | null;
  private rest: Buffer = Buffer.alloc(0);

  constructor(options: ScanOptions) {
    this.delimiter = options.format === "csv" ? (Buffer.from(options.delimiter)[0] ?? 0x2c) : TAB;
    this.crlf = options.newline === "\r\n";
    this.text = options.format === "text";
    this.cursorFields = options.format === "csv" ? (options.cursorFields ?? null) : null;
  }

  /** Bytes of an unfinished message waiting for the next chunk. */
  get pending(): number {
    return this.rest.length;
  }

  /** Scans `chunks` of CopyData messages (after what was left over last time); an unfinished one waits. */
  scan(chunks: Buffer[]): ScannedRows {
    const input =
      this.rest.length || chunks.length !== 1 ? Buffer.concat([this.rest, ...chunks]) : (chunks[0] as Buffer);
    const len = input.length;
    // Each row loses its 5-byte message header and at least 4 bytes of cursor fields and gains at most a
    // CR, so row i is always moved to before where row i+1 starts: compaction in place is safe.
    const out = Buffer.allocUnsafe(len);
    input.copy(out, 0, 0, len);
    const rowEnds: number[] = [];
    const cursorAt: number[] = [];
    const delimiter = this.delimiter;
    const fields = this.cursorFields;
    let outPos = 0;
    let pos = 0;
    // Next backslash (text format) at or after the current position; `len` when there is none. Kept
    // across rows so that rows without one do not search the rest of the buffer again.
    let nextBackslash = this.text ? input.indexOf(BACKSLASH) : -1;
    if (nextBackslash < 0) nextBackslash = len;

    while (pos + 5 <= len) {
      if (input[pos] !== COPY_DATA) throw new Error(`unexpected COPY message ${input[pos]}`);
      const end = pos + 1 + input.readUInt32BE(pos + 1);
      if (end > len) break;
      const start = pos + 5;
      if (end <= start || input[end - 1] !== LF) throw new Error("COPY row without its row end");
      if (fields) {
        out.copyWithin(outPos, start, end - 1);
        outPos += end - 1 - start;
        if (this.crlf) out[outPos++] = CR;
        out[outPos++] = LF;
        rowEnds.push(outPos);
        cursorAt.push(start, end - 1);
        pos = end;
        continue;
      }
      let keyStart = end - 2;
      while (keyStart >= start && input[keyStart] !== delimiter) keyStart--;
      let timeStart = keyStart - 1;
      while (timeStart >= start && input[timeStart] !== delimiter) timeStart--;
      if (timeStart < start) throw new Error("COPY row without its cursor fields");

      if (nextBackslash < start) {
        nextBackslash = input.indexOf(BACKSLASH, start);
        if (nextBackslash < 0) nextBackslash = len;
      }
      if (nextBackslash < timeStart) {
        // Each escape is two bytes for one: keep up to the backslash, then write the byte it stands for.
        let from = start;
        while (nextBackslash < timeStart) {
          const letter = input[nextBackslash + 1] as number;
          const byte = letter === BACKSLASH ? BACKSLASH : TEXT_ESCAPES[letter];
          if (byte === undefined)
            throw new Error(`unexpected COPY escape \\${String.fromCharCode(letter)} in a JSON line`);
          out.copyWithin(outPos, from, nextBackslash);
          outPos += nextBackslash - from;
          out[outPos++] = byte;
          from = nextBackslash + 2;
          nextBackslash = input.indexOf(BACKSLASH, from);
          if (nextBackslash < 0) nextBackslash = len;
        }
        out.copyWithin(outPos, from, timeStart);
        outPos += timeStart - from;
      } else {
        out.copyWithin(outPos, start, timeStart);
        outPos += timeStart - start;
      }
      if (this.crlf) out[outPos++] = CR;
      out[outPos++] = LF;
      rowEnds.push(outPos);
      cursorAt.push(timeStart + 1, keyStart + 1, end - 1);
      pos = end;
    }

    this.rest = pos < len ? Buffer.from(input.subarray(pos)) : Buffer.alloc(0);
    return {
      bytes: out.subarray(0, outPos),
      rowEnds,
      cursorOf(index) {
        if (fields) {
          const cells = csvFields(
            input,
            cursorAt[index * 2] as number,
            cursorAt[index * 2 + 1] as number,
            delimiter,
          );
          return [cells[fields.time] ?? "", cells[fields.key] ?? ""];
        }
        const [t, k, e] = [cursorAt[index * 3], cursorAt[index * 3 + 1], cursorAt[index * 3 + 2]] as number[];
        const key = input.toString("latin1", k, e);
        // An empty key is the only one COPY quotes.
        return [input.toString("latin1", t, (k as number) - 1), key === '""' ? "" : key];
      },
    };
  }

  /** Call at the end of the COPY: anything left is a truncated row. */
  finish(): void {
    if (this.rest.length) throw new Error(`COPY output ended inside a row (${this.rest.length} bytes left)`);
  }
}

/** The fields of one CSV row (without its LF), quotes undone: only for the few rows whose cursor is read. */
function csvFields(input: Buffer, start: number, end: number, delimiter: number): string[] {
  const fields: string[] = [];
  let p = start;
  for (;;) {
    if (input[p] === QUOTE) {
      let text = "";
      let from = p + 1;
      for (;;) {
        const q = input.indexOf(QUOTE, from);
        if (q < 0 || q >= end) throw new Error("COPY row with an unclosed quote");
        text += input.toString("utf8", from, q);
        if (input[q + 1] === QUOTE) {
          text += '"';
          from = q + 2;
          continue;
        }
        p = q + 1;
        break;
      }
      fields.push(text);
    } else {
      let q = p;
      while (q < end && input[q] !== delimiter) q++;
      fields.push(input.toString("utf8", p, q));
      p = q;
    }
    if (p >= end) return fields;
    p++; // the delimiter
  }
}
