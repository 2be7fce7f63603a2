/**
 * Time parsing and formatting. Requests carry ISO 8601 instants, local date-times or dates, read in
 * the request's time zone; exported timestamps are ISO 8601 with the exact offset in that zone.
 *
 * The text of an exported timestamp (both sources write the same for the same instant):
 * - years 0000–9999 with four digits, others as ECMAScript's expanded years (±YYYYYY; year 0 is
 *   1 BC, -000043 is 44 BC, as in ISO 8601's astronomical numbering);
 * - the offset as ±HH:MM, or ±HH:MM:SS where the zone's offset has seconds (local mean time before
 *   a zone adopted standard time, e.g. Europe/Berlin before 1893: +00:53:28); `Z` in UTC.
 */

const ISO_INSTANT = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:\d{2})$/;
const ISO_LOCAL = /^(\d{4})-(\d{2})-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?)?$/;

/**
 * CLDR's legacy identifiers that older ICU versions (Node 20) still list as canonical, and the
 * IANA names ECMA-402 now uses as the primary identifiers instead (newer runtimes list those).
 */
const LEGACY_IDS: Record<string, string> = {
  "Africa/Asmera": "Africa/Asmara",
  "America/Buenos_Aires": "America/Argentina/Buenos_Aires",
  "America/Catamarca": "America/Argentina/Catamarca",
  "America/Coral_Harbour": "America/Atikokan",
  "America/Cordoba": "America/Argentina/Cordoba",
  "America/Godthab": "America/Nuuk",
  "America/Indianapolis": "America/Indiana/Indianapolis",
  "America/Jujuy": "America/Argentina/Jujuy",
  "America/Louisville": "America/Kentucky/Louisville",
  "America/Mendoza": "America/Argentina/Mendoza",
  "Asia/Calcutta": "Asia/Kolkata",
  "Asia/Katmandu": "Asia/Kathmandu",
  "Asia/Rangoon": "Asia/Yangon",
  "Asia/Saigon": "Asia/Ho_Chi_Minh",
  "Atlantic/Faeroe": "Atlantic/Faroe",
  "Europe/Kiev": "Europe/Kyiv",
  "Pacific/Enderbury": "Pacific/Kanton",
  "Pacific/Ponape": "Pacific/Pohnpei",
  "Pacific/Truk": "Pacific/Chuuk",
};

let primaryZones: Map<string, string> | null = null;

/**
 * The time zones exports accept, by lower-case name: ECMA-402's primary identifiers (canonical IANA
 * names, one per zone and country, e.g. Asia/Kolkata, Europe/Kyiv) and UTC. Links and abbreviations
 * (Asia/Calcutta, US/Eastern, GMT, Etc/UTC, EST, IST, BST) are not: abbreviations mean different zones
 * in different databases (ICU reads BST as Asia/Dhaka, PostgreSQL knows no BST at all).
 */
export function timeZoneNames(): ReadonlyMap<string, string> {
  if (!primaryZones) {
    primaryZones = new Map([["utc", "UTC"]]);
    for (const zone of Intl.supportedValuesOf("timeZone")) {
      const name = LEGACY_IDS[zone] ?? zone;
      primaryZones.set(name.toLowerCase(), name);
    }
  }
  return primaryZones;
}

/**
 * The canonical spelling of an accepted zone name (case-insensitive, as IANA names are), or null.
 * `suggestion` is the primary name a link or abbreviation resolves to in ICU, for the error message.
 */
export function canonicalTimeZone(
  zone: string,
): { name: string } | { name: null; suggestion: string | null } {
  const name = timeZoneNames().get(zone.toLowerCase());
  if (name) return { name };
  let suggestion: string | null = null;
  try {
    const resolved = new Intl.DateTimeFormat("en-US", { timeZone: zone }).resolvedOptions().timeZone;
    suggestion = timeZoneNames().get((LEGACY_IDS[resolved] ?? resolved).toLowerCase()) ?? null;
  } catch {
    // not a zone ICU knows either
  }
  return { name: null, suggestion };
}

/** Epoch ms of a wall-clock time read as UTC; any year (Date.UTC maps years 0–99 to 1900–1999). */
function wallMs(year: number, month: number, day: number, hour = 0, minute = 0, second = 0, ms = 0): number {
  const d = new Date(0);
  d.setUTCFullYear(year, month - 1, day);
  d.setUTCHours(hour, minute, second, ms);
  return d.getTime();
}

/**
 * Parses an instant with an offset, a local date-time without one, or a date, in `zone`. Returns null
 * when unparseable or not a real calendar date. A date means the first instant of that local date
 * (where midnight falls into a gap, e.g. America/Havana on 2026-03-08, the instant the day begins);
 * a local date-time is resolved as RFC 9557 / Temporal's "compatible" disambiguation does: in a
 * repeated hour the earlier instant, in a skipped hour the wall time read with the offset before the
 * gap (so 00:30 on a day that jumps from 00:00 to 01:00 becomes 01:30). `overlap: "later"` takes the
 * later instant in a repeated hour instead: PostgreSQL's rule for zone-less times (it reads them as
 * standard time), for stored values that must mean the same on every source.
 */
export function parseInstant(
  text: string,
  zone: string,
  overlap: "earlier" | "later" = "earlier",
): number | null {
  if (ISO_INSTANT.test(text)) {
    const ms = Date.parse(text);
    return Number.isFinite(ms) ? ms : null;
  }
  const m = ISO_LOCAL.exec(text);
  if (!m) return null;
  const [y, mo, d, h, mi, s] = m.slice(1, 7).map((v) => (v === undefined ? 0 : Number(v))) as number[];
  const fraction = m[7] === undefined ? 0 : Number(m[7].slice(0, 3).padEnd(3, "0"));
  const wall = wallMs(y as number, mo as number, d as number, h, mi, s, fraction);
  // Reject fields that Date would silently roll over (2026-02-31, 24:00, 60 seconds).
  const check = new Date(wall);
  if (
    check.getUTCFullYear() !== y ||
    check.getUTCMonth() + 1 !== mo ||
    check.getUTCDate() !== d ||
    check.getUTCHours() !== h ||
    check.getUTCMinutes() !== mi ||
    check.getUTCSeconds() !== s
  ) {
    return null;
  }
  return m[4] === undefined ? startOfDay(wall, zone) : instantOfWallTime(wall, zone, overlap);
}

/** Instants whose local wall time in `zone` is `wall`: none (a gap), one, or two (an overlap), sorted. */
function instantsAt(wall: number, zone: string): { instants: number[]; before: number; after: number } {
  // As Temporal does: the offsets a day before and after are the only candidates.
  const before = offsetSeconds(wall - 86_400_000, zone) * 1000;
  const after = offsetSeconds(wall + 86_400_000, zone) * 1000;
  const instants = [...new Set([wall - before, wall - after])]
    .filter((t) => offsetSeconds(t, zone) * 1000 === wall - t)
    .sort((a, b) => a - b);
  return { instants, before, after };
}

/** `wall` (local time as epoch ms read as UTC) as an instant: see parseInstant. */
function instantOfWallTime(wall: number, zone: string, overlap: "earlier" | "later"): number {
  const { instants, before } = instantsAt(wall, zone);
  return (overlap === "earlier" ? instants[0] : instants.at(-1)) ?? wall - before;
}

/** The first instant of the local date that starts at `wall` (a local midnight). */
function startOfDay(wall: number, zone: string): number {
  const { instants, before, after } = instantsAt(wall, zone);
  if (instants[0] !== undefined) return instants[0];
  // Midnight is skipped: the day begins at the transition, which lies in (wall - after, wall - before].
  // Offsets change on whole seconds: search them.
  let lo = Math.floor((wall - after) / 1000);
  let hi = Math.ceil((wall - before) / 1000);
  while (hi - lo > 1) {
    const mid = Math.floor((lo + hi) / 2);
    if (offsetSeconds(mid * 1000, zone) * 1000 === after) hi = mid;
    else lo = mid;
  }
  return hi * 1000;
}

const offsetFormatters = new Map<string, Intl.DateTimeFormat>();

/**
 * Offset of `zone` from UTC at instant `ms`, in whole seconds (east positive). Exact for every year
 * Date holds, BC included, and for local mean time offsets with seconds.
 */
export function offsetSeconds(ms: number, zone: string): number {
  if (zone === "UTC") return 0;
  let fmt = offsetFormatters.get(zone);
  if (!fmt) {
    fmt = new Intl.DateTimeFormat("en-US", {
      timeZone: zone,
      hourCycle: "h23",
      era: "short",
      year: "numeric",
      month: "numeric",
      day: "numeric",
      hour: "numeric",
      minute: "numeric",
      second: "numeric",
    });
    offsetFormatters.set(zone, fmt);
  }
  const parts: Record<string, string> = {};
  for (const part of fmt.formatToParts(new Date(ms))) parts[part.type] = part.value;
  const eraYear = Number(parts.year);
  const year = parts.era === "BC" || parts.era === "B" ? 1 - eraYear : eraYear;
  const wall = wallMs(
    year,
    Number(parts.month),
    Number(parts.day),
    Number(parts.hour),
    Number(parts.minute),
    Number(parts.second),
  );
  return Math.round((wall - Math.floor(ms / 1000) * 1000) / 1000);
}

/** `+HH:MM`, or `+HH:MM:SS` when the offset has seconds. */
export function offsetText(seconds: number): string {
  const abs = Math.abs(seconds);
  const hm = `${seconds < 0 ? "-" : "+"}${pad2(Math.floor(abs / 3600))}:${pad2(Math.floor(abs / 60) % 60)}`;
  return abs % 60 === 0 ? hm : `${hm}:${pad2(abs % 60)}`;
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
 * How far one offset lookup reaches: an offset found at both ends of half a day holds in between.
 * Like Temporal, this assumes no zone changes its offset twice within a day and back again.
 */
const SPAN_MS = 43_200_000;

/**
 * Formats instants as ISO 8601 with offset in one zone (the text described at the top of this file).
 * It keeps the span of time around the last lookup in which the offset is known to hold (half a day,
 * or up to the next change, found to the second), so rows in time order cost one or two Intl lookups
 * per half day. Where a whole minute lies in that span and the offset has no seconds, the text up to
 * the minute is built once per minute and the seconds and milliseconds come from a table: this runs
 * once per exported timestamp, and a Date and its ISO text per row cost more than the rest of a CSV
 * row. Anything else — the minute of an offset change that is not on a minute, offsets with seconds,
 * fractional milliseconds, instants near Date's limits — takes the slow path, exact per instant.
 * `micros` writes six fractional digits (SQL datasets, like PostgreSQL's microseconds) instead of three.
 */
export class TimestampFormatter {
  /** [spanStart, spanEnd] (epoch ms): where `offset` (seconds) holds. */
  private spanStart = Number.NaN;
  private spanEnd = Number.NaN;
  private offset = 0;
  private suffix = "Z";
  private readonly extraDigits: string;
  /** The minute (epoch ms / 60,000) whose text `minuteText` holds: "YYYY-MM-DDTHH:MM:". */
  private minute = Number.NaN;
  private minuteText = "";
  /** What follows "SS.mmm": the extra digits and the offset of that minute. */
  private tail = "Z";
  private readonly table = secondsMillisTable();

  constructor(
    readonly zone: string,
    private readonly options: { micros?: boolean } = {},
  ) {
    this.extraDigits = options.micros ? "000" : "";
    this.tail = `${this.extraDigits}Z`;
    if (zone === "UTC") {
      this.spanStart = Number.NEGATIVE_INFINITY;
      this.spanEnd = Number.POSITIVE_INFINITY;
    }
  }

  format(ms: number): string {
    const minute = Math.floor(ms / 60_000);
    if (minute !== this.minute) {
      // NaN, fractions and instants near Date's limits take the slow path (and its RangeError).
      if (!Number.isInteger(ms) || Math.abs(ms) > FAST_LIMIT_MS) return this.slow(ms);
      const start = minute * 60_000;
      if (!(start >= this.spanStart && start + 59_999 <= this.spanEnd)) {
        // An instant inside the span whose minute is not (an offset change off the minute) is slow.
        if (ms >= this.spanStart && ms <= this.spanEnd) return this.slow(ms);
        this.lookUp(start);
        if (start + 59_999 > this.spanEnd) {
          // The offset changes inside this minute: keep the span of the instant itself.
          this.lookUp(ms);
          return this.slow(ms);
        }
      }
      if (this.offset % 60 !== 0) return this.slow(ms);
      this.minute = minute;
      const iso = new Date(start + this.offset * 1000).toISOString();
      // ISO text ends in "SS.mmmZ"; years past 9999 or before 0 make the start longer, not the end.
      this.minuteText = iso.slice(0, -7);
      this.tail = this.extraDigits + this.suffix;
    }
    const secondsMillis = this.table[ms - minute * 60_000];
    // A fractional instant (a REAL in SQLite) misses the table.
    return secondsMillis === undefined ? this.slow(ms) : this.minuteText + secondsMillis + this.tail;
  }

  /** The offset at `at` and how long it holds: SPAN_MS, or up to the second before the next change. */
  private lookUp(at: number): void {
    const offset = offsetSeconds(at, this.zone);
    let end = at + SPAN_MS;
    if (offsetSeconds(end, this.zone) !== offset) {
      // Offsets change on whole seconds: find the first second with another offset.
      let same = Math.floor(at / 1000);
      let other = Math.ceil(end / 1000);
      while (other - same > 1) {
        const mid = Math.floor((same + other) / 2);
        if (offsetSeconds(mid * 1000, this.zone) === offset) same = mid;
        else other = mid;
      }
      end = other * 1000 - 1;
    }
    this.spanStart = at;
    this.spanEnd = end;
    this.offset = offset;
    this.suffix = offsetText(offset);
  }

  /** One instant on its own: its exact offset, and microseconds of a fractional millisecond. */
  private slow(ms: number): string {
    let whole = Math.floor(ms);
    let micros = this.options.micros ? Math.round((ms - whole) * 1000) : 0;
    if (micros === 1000) {
      whole += 1;
      micros = 0;
    }
    const inSpan = whole >= this.spanStart && whole <= this.spanEnd;
    const offset = inSpan ? this.offset : offsetSeconds(whole, this.zone);
    const digits = this.options.micros ? String(micros).padStart(3, "0") : "";
    const iso = new Date(whole + offset * 1000).toISOString();
    return iso.slice(0, -1) + digits + (this.zone === "UTC" ? "Z" : offsetText(offset));
  }
}

/** Calendar date (YYYY-MM-DD, or ±YYYYYY-MM-DD) of an instant in a zone, for file names. */
export function localDate(ms: number, zone: string): string {
  const iso = new Date(ms + offsetSeconds(ms, zone) * 1000).toISOString();
  return iso.slice(0, iso.indexOf("T"));
}
