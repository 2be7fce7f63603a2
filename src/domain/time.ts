/**
 * Time parsing and formatting. Requests carry ISO 8601 instants (or a date, read as midnight in the
 * request's time zone); exported timestamps are ISO 8601 with an explicit offset in that zone.
 */

const ISO_INSTANT = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:\d{2})$/;
const ISO_DATE = /^(\d{4})-(\d{2})-(\d{2})$/;

export function isValidTimeZone(zone: string): boolean {
  try {
    new Intl.DateTimeFormat("en-US", { timeZone: zone });
    return true;
  } catch {
    return false;
  }
}

/** Parses an instant with an offset, or a date (midnight in `zone`). Returns null when unparseable. */
export function parseInstant(text: string, zone: string): number | null {
  if (ISO_INSTANT.test(text)) {
    const ms = Date.parse(text);
    return Number.isFinite(ms) ? ms : null;
  }
  const date = ISO_DATE.exec(text);
  if (!date) return null;
  const [, y, m, d] = date;
  const utcMidnight = Date.UTC(Number(y), Number(m) - 1, Number(d));
  // Reject dates such as 2026-02-31 that Date.UTC would silently roll over.
  if (new Date(utcMidnight).toISOString().slice(0, 10) !== text) return null;
  // Midnight local time: shift by the zone's offset at that moment (twice, to settle across a DST change).
  let ms = utcMidnight - offsetMinutes(utcMidnight, zone) * 60_000;
  ms = utcMidnight - offsetMinutes(ms, zone) * 60_000;
  return ms;
}

const offsetFormatters = new Map<string, Intl.DateTimeFormat>();

/** Offset of `zone` from UTC at instant `ms`, in minutes (east positive). */
export function offsetMinutes(ms: number, zone: string): number {
  if (zone === "UTC") return 0;
  let fmt = offsetFormatters.get(zone);
  if (!fmt) {
    fmt = new Intl.DateTimeFormat("en-US", {
      timeZone: zone,
      hourCycle: "h23",
      year: "numeric",
      month: "2-digit",
      day: "2-digit",
      hour: "2-digit",
      minute: "2-digit",
      second: "2-digit",
    });
    offsetFormatters.set(zone, fmt);
  }
  const parts: Record<string, number> = {};
  for (const part of fmt.formatToParts(new Date(ms))) {
    if (part.type !== "literal") parts[part.type] = Number(part.value);
  }
  const asUtc = Date.UTC(
    parts.year ?? 1970,
    (parts.month ?? 1) - 1,
    parts.day ?? 1,
    parts.hour ?? 0,
    parts.minute ?? 0,
    parts.second ?? 0,
  );
  return Math.round((asUtc - (ms - (((ms % 1000) + 1000) % 1000))) / 60_000);
}

function pad2(n: number): string {
  return n < 10 ? `0${n}` : String(n);
}

/** Instants this far from the epoch format through Date on every call: near Date's limits, so any invalid date still throws. */
const FAST_LIMIT_MS = 8.64e15 - 2 * 86_400_000;

/** "SS.mmm" for every millisecond of a minute, built once: the end of every timestamp. */
let secondsMillis: string[] | null = null;

function secondsMillisTable(): string[] {
  if (!secondsMillis) {
    secondsMillis = new Array<string>(60_000);
    for (let i = 0; i < 60_000; i++) {
      const ms = i % 1000;
      secondsMillis[i] = `${pad2(Math.floor(i / 1000))}.${ms < 10 ? "00" : ms < 100 ? "0" : ""}${ms}`;
    }
  }
  return secondsMillis;
}

/**
 * Formats instants as ISO 8601 with offset in one zone. Offsets change only on 15-minute boundaries,
 * so one Intl lookup per quarter hour serves every row in it; offsets are whole minutes, so the text
 * up to the minute is built once per minute and the seconds and milliseconds come from a table: this
 * runs once per exported timestamp, and a Date and its ISO text per row cost more than the rest of
 * a CSV row. `micros` writes six fractional digits (SQL datasets, like PostgreSQL's microseconds)
 * instead of three.
 */
export class TimestampFormatter {
  private bucket = Number.NaN;
  private offset = 0;
  private suffix = "Z";
  private readonly extraDigits: string;
  /** The minute (epoch ms / 60,000) whose text `minuteText` holds: "YYYY-MM-DDTHH:MM:". */
  private minute = Number.NaN;
  private minuteText = "";
  /** What follows "SS.mmm": the extra digits and the offset of the current quarter hour. */
  private tail = "Z";
  private readonly table = secondsMillisTable();

  constructor(
    readonly zone: string,
    options: { micros?: boolean } = {},
  ) {
    this.extraDigits = options.micros ? "000" : "";
    this.tail = `${this.extraDigits}Z`;
  }

  format(ms: number): string {
    const minute = Math.floor(ms / 60_000);
    if (minute !== this.minute) {
      // NaN, fractions and instants near Date's limits take the slow path (and its RangeError).
      if (!Number.isInteger(ms) || Math.abs(ms) > FAST_LIMIT_MS) return this.slow(ms);
      this.setOffset(ms);
      this.minute = minute;
      const iso = new Date(minute * 60_000 + this.offset * 60_000).toISOString();
      // ISO text ends in "SS.mmmZ"; years past 9999 make the start longer, not the end.
      this.minuteText = iso.slice(0, -7);
      this.tail = this.extraDigits + this.suffix;
    }
    const secondsMillis = this.table[ms - minute * 60_000];
    // A fractional instant (a REAL in SQLite) misses the table: Date truncates it, as it always did.
    return secondsMillis === undefined ? this.slow(ms) : this.minuteText + secondsMillis + this.tail;
  }

  private setOffset(ms: number): void {
    if (this.zone === "UTC") return;
    const bucket = Math.floor(ms / 900_000);
    if (bucket !== this.bucket) {
      this.bucket = bucket;
      this.offset = offsetMinutes(ms, this.zone);
      const abs = Math.abs(this.offset);
      this.suffix = `${this.offset < 0 ? "-" : "+"}${pad2(Math.floor(abs / 60))}:${pad2(abs % 60)}`;
    }
  }

  private slow(ms: number): string {
    if (this.zone === "UTC") return `${new Date(ms).toISOString().slice(0, -1)}${this.extraDigits}Z`;
    this.setOffset(ms);
    return new Date(ms + this.offset * 60_000).toISOString().slice(0, -1) + this.extraDigits + this.suffix;
  }
}

/** Calendar date (YYYY-MM-DD) of an instant in a zone, for file names. */
export function localDate(ms: number, zone: string): string {
  return new Date(ms + offsetMinutes(ms, zone) * 60_000).toISOString().slice(0, 10);
}
