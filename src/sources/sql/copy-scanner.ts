/**
 * Finds row ends in PostgreSQL's COPY output and strips the two trailing cursor fields (time and key)
 * that exportd appends to every row, so that parts can be cut at exact row counts and a resumed run
 * knows where the last row of a part was.
 *
 * - CSV: a row ends at a LF outside quotes; quoted fields may hold LF, CR, delimiters and doubled
 *   quotes. Rows are written back with the requested newline (COPY only writes LF), while newlines
 *   inside quoted fields stay as they are, just as the JS encoder leaves them.
 * - text (JSONL): every row is one JSON text, which never holds a raw control character, so a row ends
 *   at the first LF and the only escape COPY added is the doubled backslash, undone here.
 *
 * The cursor fields never need quoting (epoch microseconds; an integer or hex-encoded key), so they are
 * found from the row end with two lastIndexOf calls. All searches use Buffer.indexOf (native), and the
 * output is assembled with one native copy per row.
 */

const LF = 0x0a;
const CR = 0x0d;
const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const TAB = 0x09;

export interface ScanOptions {
  format: "csv" | "text";
  /** CSV delimiter (text format always uses tab). */
  delimiter: string;
  /** Row terminator of the output. */
  newline: "\n" | "\r\n";
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
  private rest: Buffer = Buffer.alloc(0);

  constructor(private readonly options: ScanOptions) {
    this.delimiter = options.format === "csv" ? (Buffer.from(options.delimiter)[0] ?? 0x2c) : TAB;
    this.crlf = options.newline === "\r\n";
  }

  /** Bytes of an unfinished row waiting for the next chunk. */
  get pending(): number {
    return this.rest.length;
  }

  /** Scans `chunks` (after what was left over last time); an unfinished last row waits for more. */
  scan(chunks: Buffer[]): ScannedRows {
    const input = this.rest.length ? Buffer.concat([this.rest, ...chunks]) : Buffer.concat(chunks);
    // Output is never longer than the input: each row loses at least 4 bytes of cursor fields and gains
    // at most one (CR).
    const out = Buffer.allocUnsafe(input.length);
    const rowEnds: number[] = [];
    const cursorAt: number[] = [];
    let outPos = 0;
    let pos = 0;
    const len = input.length;
    // Next quote (CSV) or backslash (text) at or after the current position; `len` when there is none.
    // Kept across rows so that rows without one do not search the whole rest of the buffer again.
    let nextQuote = this.options.format === "csv" ? input.indexOf(QUOTE) : -1;
    if (nextQuote < 0) nextQuote = len;
    let nextBackslash = this.options.format === "text" ? input.indexOf(BACKSLASH) : -1;
    if (nextBackslash < 0) nextBackslash = len;

    while (pos < len) {
      let end = -1;
      let p = pos;
      for (;;) {
        const lf = input.indexOf(LF, p);
        if (lf < 0) break;
        if (nextQuote < p) {
          nextQuote = input.indexOf(QUOTE, p);
          if (nextQuote < 0) nextQuote = len;
        }
        if (nextQuote > lf) {
          end = lf;
          break;
        }
        // Skip a quoted field: up to a quote not followed by another quote.
        let q = nextQuote + 1;
        let closed = -1;
        for (;;) {
          const c = input.indexOf(QUOTE, q);
          if (c < 0 || c + 1 >= len) break; // cannot tell yet whether it is a doubled quote
          if (input[c + 1] === QUOTE) {
            q = c + 2;
            continue;
          }
          closed = c;
          break;
        }
        if (closed < 0) break;
        p = closed + 1;
        nextQuote = input.indexOf(QUOTE, p);
        if (nextQuote < 0) nextQuote = len;
      }
      if (end < 0) break;

      const keyStart = input.lastIndexOf(this.delimiter, end - 1);
      const timeStart = input.lastIndexOf(this.delimiter, keyStart - 1);
      if (timeStart < pos) throw new Error("COPY row without its cursor fields");
      if (nextBackslash < timeStart) {
        // Text format doubles every backslash; copy up to each pair's first one and skip the second.
        let p2 = pos;
        while (nextBackslash < timeStart) {
          if (input[nextBackslash + 1] !== BACKSLASH)
            throw new Error("unexpected COPY escape in a JSON line");
          outPos += input.copy(out, outPos, p2, nextBackslash + 1);
          p2 = nextBackslash + 2;
          nextBackslash = input.indexOf(BACKSLASH, p2);
          if (nextBackslash < 0) nextBackslash = len;
        }
        outPos += input.copy(out, outPos, p2, timeStart);
      } else {
        outPos += input.copy(out, outPos, pos, timeStart);
      }
      if (this.crlf) out[outPos++] = CR;
      out[outPos++] = LF;
      rowEnds.push(outPos);
      cursorAt.push(timeStart + 1, keyStart + 1, end);
      pos = end + 1;
      if (nextBackslash < pos) {
        // A backslash in the cursor fields (never expected): search again from the next row.
        nextBackslash = input.indexOf(BACKSLASH, pos);
        if (nextBackslash < 0) nextBackslash = len;
      }
    }

    this.rest = Buffer.from(input.subarray(pos));
    return {
      bytes: out.subarray(0, outPos),
      rowEnds,
      cursorOf(index) {
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
