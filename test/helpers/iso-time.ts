/**
 * An ISO 8601 timestamp parser for tests, independent of exportd's own time code: calendar
 * arithmetic only (days from civil, proleptic Gregorian), expanded years (±YYYYYY, year 0 = 1 BC) and
 * offsets with seconds. Exact to the microsecond, as BigInt epoch microseconds.
 */

const TIMESTAMP =
  /^(?:([+-])(\d{6})|(\d{4}))-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})\.(\d{6})(?:(Z)|([+-])(\d{2}):(\d{2})(?::(\d{2}))?)$/;

/** Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil). */
export function daysFromCivil(year: number, month: number, day: number): number {
  const y = month <= 2 ? year - 1 : year;
  const era = Math.floor(y / 400);
  const yoe = y - era * 400;
  const doy = Math.floor((153 * (month + (month > 2 ? -3 : 9)) + 2) / 5) + day - 1;
  const doe = yoe * 365 + Math.floor(yoe / 4) - Math.floor(yoe / 100) + doy;
  return era * 146_097 + doe - 719_468;
}

export interface ParsedTimestamp {
  micros: bigint;
  /** Offset east of UTC in seconds; null for Z. */
  offset: number | null;
}

/** Parses exportd's timestamp text; throws on anything else (a four-digit year written expanded, -000000, …). */
export function parseTimestamp(text: string): ParsedTimestamp {
  const m = TIMESTAMP.exec(text);
  if (!m) throw new Error(`not an exportd timestamp: ${text}`);
  const [, sign, expanded, plain, mo, d, h, mi, s, frac, z, osign, oh, om, os] = m;
  if (expanded !== undefined) {
    const y = Number(`${sign}${expanded}`);
    if (y >= 0 && y <= 9999) throw new Error(`expanded year where four digits do: ${text}`);
  }
  const year = expanded !== undefined ? Number(`${sign}${expanded}`) : Number(plain);
  const offset =
    z !== undefined
      ? null
      : (osign === "-" ? -1 : 1) * (Number(oh) * 3600 + Number(om) * 60 + Number(os ?? 0));
  if (os === "00") throw new Error(`offset seconds written although zero: ${text}`);
  const seconds =
    daysFromCivil(year, Number(mo), Number(d)) * 86_400 +
    Number(h) * 3600 +
    Number(mi) * 60 +
    Number(s) -
    (offset ?? 0);
  return { micros: BigInt(seconds) * 1_000_000n + BigInt(frac as string), offset };
}

const longOffsets = new Map<string, Intl.DateTimeFormat>();

/** The offset of `zone` at an instant as Intl's longOffset names it ("GMT+00:53:28"), in seconds. */
export function intlOffsetSeconds(ms: number, zone: string): number {
  let fmt = longOffsets.get(zone);
  if (!fmt) {
    fmt = new Intl.DateTimeFormat("en-US", { timeZone: zone, timeZoneName: "longOffset" });
    longOffsets.set(zone, fmt);
  }
  const name = fmt.formatToParts(new Date(ms)).find((p) => p.type === "timeZoneName")?.value ?? "GMT";
  const m = /^GMT(?:([+-])(\d\d):(\d\d)(?::(\d\d))?)?$/.exec(name);
  if (!m) throw new Error(`unexpected offset name ${name}`);
  if (m[1] === undefined) return 0;
  return (m[1] === "-" ? -1 : 1) * (Number(m[2]) * 3600 + Number(m[3]) * 60 + Number(m[4] ?? 0));
}
