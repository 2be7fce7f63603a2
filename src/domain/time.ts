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

/**
 * Formats instants as ISO 8601 with offset in one zone. Offsets change only on 15-minute boundaries,
 * so one Intl lookup per quarter hour serves every row in it: this runs once per exported timestamp.
 * `micros` writes six fractional digits (SQL datasets, like PostgreSQL's microseconds) instead of three.
 */
export class TimestampFormatter {
  private bucket = Number.NaN;
  private offset = 0;
  private suffix = "Z";
  private readonly extraDigits: string;

  constructor(
    readonly zone: string,
    options: { micros?: boolean } = {},
  ) {
    this.extraDigits = options.micros ? "000" : "";
  }

  format(ms: number): string {
    if (this.zone === "UTC") return `${new Date(ms).toISOString().slice(0, -1)}${this.extraDigits}Z`;
    const bucket = Math.floor(ms / 900_000);
    if (bucket !== this.bucket) {
      this.bucket = bucket;
      this.offset = offsetMinutes(ms, this.zone);
      const abs = Math.abs(this.offset);
      this.suffix = `${this.offset < 0 ? "-" : "+"}${pad2(Math.floor(abs / 60))}:${pad2(abs % 60)}`;
    }
    return new Date(ms + this.offset * 60_000).toISOString().slice(0, -1) + this.extraDigits + this.suffix;
  }
}

/** Calendar date (YYYY-MM-DD) of an instant in a zone, for file names. */
export function localDate(ms: number, zone: string): string {
  return new Date(ms + offsetMinutes(ms, zone) * 60_000).toISOString().slice(0, 10);
}
