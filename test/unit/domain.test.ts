/** Pure rules: the lifecycle, request normalization, time handling, names, keys and signatures. */
import assert from "node:assert/strict";
import fs from "node:fs";
import { describe, test } from "node:test";
import { ConfigError, loadConfig } from "../../src/config/index.js";
import { generateKey, hashesMatch, hashKey, keyPrefix } from "../../src/domain/api-keys.js";
import { normalizeCreateRequest } from "../../src/domain/dataset.js";
import { AppError } from "../../src/domain/errors.js";
import { renderErrorsDoc } from "../../src/domain/errors-doc.js";
import {
  advanceProgress,
  assertTransition,
  canBePurged,
  canTransition,
  EXPORT_STATUSES,
  fromStatesFor,
  hasQueuePlace,
  isCanceled,
  isCancellable,
  isDownloadable,
  isFinal,
  listsParts,
  RUN_OUTCOMES,
  RunOutcome,
  retryDelayMs,
  STATUS,
  showsError,
  TransitionError,
} from "../../src/domain/export.js";
import { isSafeKey, partDownloadName, partObjectKey } from "../../src/domain/naming.js";
import {
  canonicalTimeZone,
  localDate,
  offsetSeconds,
  parseInstant,
  TimestampFormatter,
} from "../../src/domain/time.js";
import { LinkSigner } from "../../src/object-store/signing.js";
import { DEMO_EVENTS_DESCRIPTOR } from "../../src/sources/demo-events.js";
import { intlOffsetSeconds } from "../helpers/iso-time.js";

describe("lifecycle", () => {
  test("allowed and forbidden transitions", () => {
    assert.ok(canTransition("queued", "running"));
    assert.ok(canTransition("running", "succeeded"));
    assert.ok(canTransition("succeeded", "expired"));
    assert.ok(canTransition("running", "queued"), "retry or hand-back");
    for (const final of ["failed", "canceled", "expired"] as const) {
      for (const to of EXPORT_STATUSES) assert.equal(canTransition(final, to), false, `${final} → ${to}`);
    }
    assert.throws(() => assertTransition("succeeded", "canceled"), TransitionError);
    assert.deepEqual(fromStatesFor("canceled"), ["queued", "running"]);
    assert.deepEqual(fromStatesFor("expired"), ["succeeded"]);
  });

  test("final and cancellable", () => {
    assert.deepEqual(EXPORT_STATUSES.filter(isCancellable), ["queued", "running"]);
    assert.deepEqual(EXPORT_STATUSES.filter(isFinal), ["succeeded", "failed", "canceled", "expired"]);
  });

  test("what each status allows", () => {
    assert.deepEqual(EXPORT_STATUSES.filter(hasQueuePlace), ["queued"]);
    assert.deepEqual(EXPORT_STATUSES.filter(isDownloadable), ["succeeded"]);
    assert.deepEqual(EXPORT_STATUSES.filter(isCanceled), ["canceled"]);
    assert.deepEqual(EXPORT_STATUSES.filter(showsError), ["failed"]);
    assert.deepEqual(EXPORT_STATUSES.filter(listsParts), ["queued", "running", "succeeded", "expired"]);
    // Files go only when nothing can use them any more, or the export expires with the transition.
    assert.deepEqual(EXPORT_STATUSES.filter(canBePurged), ["succeeded", "failed", "canceled"]);
    for (const status of EXPORT_STATUSES.filter(canBePurged)) assert.ok(!isCancellable(status), status);
  });

  test("STATUS names every status as itself; run outcomes are told apart from statuses", () => {
    assert.deepEqual(Object.values(STATUS), [...EXPORT_STATUSES]);
    assert.deepEqual(Object.values(RunOutcome), [...RUN_OUTCOMES]);
    const statuses: readonly string[] = EXPORT_STATUSES;
    assert.deepEqual(
      RUN_OUTCOMES.filter((o) => !statuses.includes(o)),
      ["requeued", "lost"],
      "requeued and lost are how a run ended, never a status",
    );
  });

  test("progress never moves backwards and caps at 100", () => {
    const p = advanceProgress({ percent: 40, rows: 100, parts: 2 }, { percent: 30, rows: 50, parts: 1 });
    assert.deepEqual(p, { percent: 40, rows: 100, parts: 2 });
    assert.equal(advanceProgress(p, { percent: 150, rows: 0, parts: 0 }).percent, 100);
  });

  test("back-off doubles and is capped", () => {
    assert.deepEqual(
      [1, 2, 3, 4].map((a) => retryDelayMs(a, 1000)),
      [1000, 2000, 4000, 8000],
    );
    assert.equal(retryDelayMs(30, 1000), 5 * 60_000);
  });
});

describe("time", () => {
  test("instants need an offset; dates are midnight in the zone", () => {
    assert.equal(parseInstant("2026-11-01T10:00:00Z", "UTC"), Date.UTC(2026, 10, 1, 10));
    assert.equal(parseInstant("2026-11-01T10:00:00+02:00", "UTC"), Date.UTC(2026, 10, 1, 8));
    assert.equal(parseInstant("2026-11-01T10:00:00", "Europe/Paris"), Date.UTC(2026, 10, 1, 9));
    assert.equal(parseInstant("2026-11-01", "Europe/Paris"), Date.UTC(2026, 9, 31, 23));
    assert.equal(parseInstant("2026-13-01", "UTC"), null);
    assert.equal(parseInstant("1 Nov 2026", "UTC"), null);
  });

  test("timestamps carry the zone's offset on both sides of a DST change", () => {
    const f = new TimestampFormatter("Europe/Berlin");
    assert.equal(f.format(Date.UTC(2026, 9, 25, 0, 59, 59, 5)), "2026-10-25T02:59:59.005+02:00");
    assert.equal(f.format(Date.UTC(2026, 9, 25, 1, 0, 0)), "2026-10-25T02:00:00.000+01:00");
    assert.equal(new TimestampFormatter("UTC").format(0), "1970-01-01T00:00:00.000Z");
    assert.equal(new TimestampFormatter("Asia/Kolkata").format(0), "1970-01-01T05:30:00.000+05:30");
    assert.equal(localDate(Date.UTC(2026, 10, 1, 23, 30), "Asia/Tokyo"), "2026-11-02");
  });

  test("the per-minute cache writes what Date writes, in any order, at the edges, or throws as Date does", () => {
    // The formatter as it was before the cache: a Date and its ISO text per instant.
    const reference = (zone: string, micros: boolean, ms: number): string => {
      const whole = Math.floor(ms);
      const fraction = Math.round((ms - whole) * 1000);
      // Intl's longOffset, not exportd's offset code.
      const offset = zone === "UTC" ? 0 : intlOffsetSeconds(whole, zone);
      const abs = Math.abs(offset);
      const pad = (n: number) => String(n).padStart(2, "0");
      const suffix =
        zone === "UTC"
          ? "Z"
          : `${offset < 0 ? "-" : "+"}${pad(Math.floor(abs / 3600))}:${pad(Math.floor(abs / 60) % 60)}${abs % 60 ? `:${pad(abs % 60)}` : ""}`;
      return (
        new Date(whole + offset * 1000).toISOString().slice(0, -1) +
        (micros ? String(fraction).padStart(3, "0") : "") +
        suffix
      );
    };
    const instants: number[] = [
      0,
      -1,
      -59_999,
      -60_000,
      -60_001,
      1.5,
      -0.25,
      59_999.9,
      Date.UTC(2026, 9, 25, 0, 59, 59, 999),
      Date.UTC(2026, 9, 25, 1, 0, 0, 0),
      Date.UTC(2026, 2, 29, 0, 59, 59, 999),
      Date.UTC(2026, 2, 29, 1, 0, 0, 1),
      Date.UTC(9999, 11, 31, 23, 59, 59, 999),
      Date.UTC(10000, 0, 1),
      Date.UTC(-1, 0, 1, 12, 34, 56, 789),
      Date.UTC(1900, 0, 1, 0, 0, 0, 1),
      // Offset changes off the quarter hour: Monrovia 1972 (-00:44:30 → 0), Berlin 1893 (+00:53:28 → +01:00),
      // Goose Bay's 00:01 changes (2010), and years 0–99 and BC.
      Date.UTC(1972, 0, 7, 0, 44, 29, 999),
      Date.UTC(1972, 0, 7, 0, 44, 30),
      Date.UTC(1893, 2, 31, 23, 6, 31, 999),
      Date.UTC(1893, 2, 31, 23, 6, 32),
      Date.UTC(2010, 2, 14, 4, 0, 59, 999),
      Date.UTC(2010, 2, 14, 4, 1),
      Date.UTC(2010, 10, 7, 3, 0, 59, 999),
      Date.UTC(2010, 10, 7, 3, 1),
      -62_000_000_000_000,
      -60_000_000_000_000,
      -80_000_000_000_000,
      // Date's limits: some zones' offsets push these past them, and then both throw.
      8.64e15 - 1,
      -8.64e15 + 1,
      8.64e15 - 2 * 86_400_000 - 1,
    ];
    // Runs of nearby rows (one cache entry serves many), and jumps back and forth between them.
    let seed = 7;
    const next = () => {
      seed = (seed * 1_103_515_245 + 12_345) % 2_147_483_648;
      return seed;
    };
    for (let i = 0; i < 2000; i++) {
      const base = Date.UTC(2026, 2, 29, 0, 50) + (next() % 7_200_000);
      instants.push(base, base + (next() % 1000), Date.UTC(1950 + (next() % 150), next() % 12, 1) + next());
      // Minutes around the quarter hours of 1850–1975, when offsets had seconds and changed at odd times.
      const old = Date.UTC(1850 + (next() % 125), next() % 12, 1) + (next() % 744) * 3_600_000;
      instants.push(old + (next() % 120_000) - 60_000);
    }
    for (const zone of [
      "UTC",
      "Europe/Berlin",
      "America/St_Johns",
      "Asia/Kolkata",
      "Australia/Lord_Howe",
      "Africa/Monrovia",
      "America/Goose_Bay",
      "Europe/Amsterdam",
    ]) {
      for (const micros of [false, true]) {
        const f = new TimestampFormatter(zone, { micros });
        const outcome = (format: () => string) => {
          try {
            return format();
          } catch (err) {
            return (err as Error).name;
          }
        };
        for (const ms of instants) {
          assert.equal(
            outcome(() => f.format(ms)),
            outcome(() => reference(zone, micros, ms)),
            `${zone} ${ms}`,
          );
        }
        assert.throws(() => f.format(Number.NaN), RangeError);
        assert.throws(() => f.format(8.64e15 + 1), RangeError);
        assert.equal(f.format(1000), reference(zone, micros, 1000), "after a throw");
      }
    }
  });
});

describe("local times and zones", () => {
  test("a date is the first instant of that local date, also where the day starts at 01:00", () => {
    // America/Havana jumps from 00:00 to 01:00 on 2026-03-08 (05:00Z).
    assert.equal(parseInstant("2026-03-08", "America/Havana"), Date.UTC(2026, 2, 8, 5));
    assert.equal(parseInstant("2026-03-07", "America/Havana"), Date.UTC(2026, 2, 7, 5));
    assert.equal(parseInstant("2026-03-09", "America/Havana"), Date.UTC(2026, 2, 9, 4));
    // Samoa skipped 2011-12-30: that day and the next begin at the same instant.
    assert.equal(parseInstant("2011-12-30", "Pacific/Apia"), Date.UTC(2011, 11, 30, 10));
    assert.equal(parseInstant("2011-12-31", "Pacific/Apia"), Date.UTC(2011, 11, 30, 10));
    // Days of 23 and 25 hours.
    assert.equal(
      parseInstant("2026-03-30", "Europe/Berlin")! - parseInstant("2026-03-29", "Europe/Berlin")!,
      23 * 3_600_000,
    );
    assert.equal(
      parseInstant("2026-10-26", "Europe/Berlin")! - parseInstant("2026-10-25", "Europe/Berlin")!,
      25 * 3_600_000,
    );
  });

  test('local date-times resolve as RFC 9557 / Temporal "compatible": earlier in an overlap, shifted forward in a gap', () => {
    assert.equal(parseInstant("2026-03-08T00:30", "America/Havana"), Date.UTC(2026, 2, 8, 5, 30));
    assert.equal(parseInstant("2026-03-29T02:30", "Europe/Berlin"), Date.UTC(2026, 2, 29, 1, 30));
    assert.equal(parseInstant("2026-10-25T02:30", "Europe/Berlin"), Date.UTC(2026, 9, 25, 0, 30));
    assert.equal(parseInstant("2026-11-01T00:30", "America/Havana"), Date.UTC(2026, 10, 1, 4, 30));
    assert.equal(
      parseInstant("2026-06-01T12:00:00.250", "Asia/Kathmandu"),
      Date.UTC(2026, 5, 1, 6, 15, 0, 250),
    );
    // PostgreSQL's reading of zone-less times: the later instant of a repeated hour.
    assert.equal(parseInstant("2026-10-25T02:30", "Europe/Berlin", "later"), Date.UTC(2026, 9, 25, 1, 30));
    assert.equal(parseInstant("2026-03-29T02:30", "Europe/Berlin", "later"), Date.UTC(2026, 2, 29, 1, 30));
    assert.equal(parseInstant("2026-06-01T24:00", "UTC"), null);
    assert.equal(parseInstant("2026-02-29T10:00", "UTC"), null);
  });

  test("offsets are exact to the second, in every year Date holds", () => {
    assert.equal(offsetSeconds(Date.UTC(1890, 5, 1, 12), "Europe/Berlin"), 53 * 60 + 28);
    assert.equal(offsetSeconds(Date.UTC(1960, 5, 1), "Africa/Monrovia"), -(44 * 60 + 30));
    const year50 = new Date(0).setUTCFullYear(50, 6, 1);
    assert.equal(offsetSeconds(year50, "Europe/Berlin"), 53 * 60 + 28);
    const bc44 = new Date(0).setUTCFullYear(-43, 2, 15);
    assert.equal(offsetSeconds(bc44, "America/Havana"), -(5 * 3600 + 29 * 60 + 28));
    const f = new TimestampFormatter("Europe/Berlin", { micros: true });
    assert.equal(f.format(Date.UTC(1890, 5, 1, 12)), "1890-06-01T12:53:28.000000+00:53:28");
    assert.equal(f.format(year50), "0050-07-01T00:53:28.000000+00:53:28");
    assert.equal(new TimestampFormatter("UTC").format(bc44), "-000043-03-15T00:00:00.000Z");
    assert.equal(new TimestampFormatter("UTC").format(Date.UTC(10000, 0, 1)), "+010000-01-01T00:00:00.000Z");
    assert.equal(localDate(bc44, "UTC"), "-000043-03-15");
  });

  test("zones: canonical IANA names and UTC, in any case; links and abbreviations are refused with a suggestion", () => {
    assert.deepEqual(canonicalTimeZone("europe/BERLIN"), { name: "Europe/Berlin" });
    assert.deepEqual(canonicalTimeZone("Asia/Kolkata"), { name: "Asia/Kolkata" });
    assert.deepEqual(canonicalTimeZone("Europe/Kyiv"), { name: "Europe/Kyiv" });
    assert.deepEqual(canonicalTimeZone("Utc"), { name: "UTC" });
    assert.deepEqual(canonicalTimeZone("Asia/Calcutta"), { name: null, suggestion: "Asia/Kolkata" });
    assert.deepEqual(canonicalTimeZone("US/Eastern"), { name: null, suggestion: "America/New_York" });
    assert.deepEqual(canonicalTimeZone("Etc/UTC"), { name: null, suggestion: "UTC" });
    for (const zone of ["IST", "BST", "EST", "GMT", "Z", "Etc/GMT+5", "Mars/Olympus", ""]) {
      assert.equal(canonicalTimeZone(zone).name, null, zone);
    }
  });
});

describe("create requests", () => {
  const datasets = new Map([["events", DEMO_EVENTS_DESCRIPTOR]]);
  const now = Date.UTC(2026, 10, 23, 12);

  test("defaults, de-duplicated filter values, to=now", () => {
    const r = normalizeCreateRequest(
      {
        dataset: "events",
        from: "2026-11-20",
        to: "now",
        filters: { type: ["click", "click"], user_id: "user_1" },
      },
      datasets,
      now,
      "default",
    );
    assert.equal(r.to, now);
    assert.equal(r.toRequested, "now", "the request remembers that now was asked for");
    assert.equal(r.from, Date.UTC(2026, 10, 20));
    assert.deepEqual(r.filters, { type: ["click"], user_id: ["user_1"] });
    assert.equal(r.format, "csv");
    assert.equal(r.compression, "gzip");
    assert.equal(r.partMaxRows, 1_000_000);
    assert.deepEqual(r.csv, {
      delimiter: ",",
      header: true,
      bom: false,
      newline: "crlf",
      formulaGuard: false,
    });
  });

  test("errors are AppErrors with a code and field details", () => {
    try {
      normalizeCreateRequest({ dataset: "events", from: "x", to: "y" }, datasets, now, "default");
      assert.fail("should throw");
    } catch (err) {
      assert.ok(err instanceof AppError);
      assert.equal(err.code, "invalid_request");
      assert.equal(err.status, 400);
      assert.deepEqual(
        err.details.map((d) => d.field),
        ["from", "to"],
      );
    }
  });
});

describe("names", () => {
  const req = normalizeCreateRequest(
    { dataset: "events", from: "2026-11-01", to: "2026-11-23" },
    new Map([["events", DEMO_EVENTS_DESCRIPTOR]]),
    Date.now(),
    "default",
  );
  test("download names show the dataset, the dates and the part", () => {
    assert.equal(partDownloadName(req, 0), "events_2026-11-01_2026-11-23.part-000.csv.gz");
    assert.equal(
      partDownloadName({ ...req, format: "jsonl", compression: "none" }, 12),
      "events_2026-11-01_2026-11-23.part-012.jsonl",
    );
  });
  test("object keys are per tenant, export and run", () => {
    assert.equal(partObjectKey("t", "e", 3, 2, req), "exports/t/e/part-003.r2.csv.gz");
  });
  test("every key exportd makes is safe; escaping, dot-leading and in-progress keys are not", () => {
    assert.ok(isSafeKey(partObjectKey("t", "e", 3, 2, req)));
    for (const key of [
      "../etc/passwd",
      "a//b",
      ".hidden/x",
      "a/./b",
      "/abs",
      "a/b.upload-1234",
      "x".repeat(513),
    ])
      assert.equal(isSafeKey(key), false, key);
  });
});

describe("keys and links", () => {
  test("keys: only the hash is needed to check one; the prefix finds it", () => {
    const k = generateKey();
    assert.match(k.key, /^exd_[a-z0-9]{10}_[A-Za-z0-9_-]{32}$/);
    assert.equal(keyPrefix(k.key), k.prefix);
    assert.equal(k.hash, hashKey(k.key));
    assert.ok(!k.hash.includes(k.key));
    assert.ok(hashesMatch(hashKey(k.key), k.hash));
    const altered = `${k.key.slice(0, -1)}${k.key.endsWith("x") ? "y" : "x"}`;
    assert.ok(!hashesMatch(hashKey(altered), k.hash));
    assert.equal(keyPrefix("Bearer nonsense"), null);
  });

  test("signatures: any change is caught; expiry is checked after the signature", () => {
    const signer = new LinkSigner("s".repeat(32));
    const p = { key: "exports/t/e/part-000.a1.csv.gz", expires: 2_000_000_000, filename: "a.csv.gz" };
    const sig = signer.sign(p);
    assert.equal(signer.verify(p, sig, Date.now()), "ok");
    assert.equal(signer.verify({ ...p, key: `${p.key}x` }, sig, Date.now()), "invalid_signature");
    assert.equal(signer.verify({ ...p, filename: "b.csv.gz" }, sig, Date.now()), "invalid_signature");
    assert.equal(signer.verify({ ...p, expires: p.expires + 1 }, sig, Date.now()), "invalid_signature");
    assert.equal(signer.verify(p, sig.slice(1), Date.now()), "invalid_signature");
    assert.equal(signer.verify(p, sig, p.expires * 1000), "link_expired");
    assert.equal(new LinkSigner("t".repeat(32)).verify(p, sig, Date.now()), "invalid_signature");
  });
});

describe("config and docs", () => {
  test("bad settings stop the start with the variable's name", () => {
    assert.throws(
      () => loadConfig({ PORT: "http" }),
      (e: Error) => e instanceof ConfigError && /PORT/.test(e.message),
    );
    assert.throws(() => loadConfig({ EXPORTD_RETENTION_DAYS: "-1" }), /EXPORTD_RETENTION_DAYS/);
    assert.throws(() => loadConfig({ EXPORTD_SIGNING_SECRET: "short" }), /EXPORTD_SIGNING_SECRET/);
    const c = loadConfig({}, "/srv");
    assert.equal(c.port, 8080);
    assert.equal(c.dataDir, "/srv/data");
    assert.equal(c.linkTtlSeconds, 1200);
    assert.equal(c.retentionDays, 7);
  });

  test("docs/errors.md is generated from the catalogue (npm run docs:errors)", () => {
    const onDisk = fs.readFileSync(new URL("../../docs/errors.md", import.meta.url), "utf8");
    assert.equal(onDisk, renderErrorsDoc());
  });
});
