/**
 * Create requests with several datasets (domain/dataset.ts): `datasets` lists and config bundles,
 * all-time bundles, the errors each misuse gets (with its detail code), the overall limits, and the
 * resume point a run starts from (domain/export.ts resumePoint). Also the manifest of a record.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { ConfigFileError, checkDatasetsConfig, DEFAULT_LIMITS } from "../../src/config/file.js";
import {
  ALL_TIME_FROM,
  type BundleDescriptor,
  type DatasetDescriptor,
  normalizeCreateRequest,
} from "../../src/domain/dataset.js";
import { AppError } from "../../src/domain/errors.js";
import { type ExportPart, itemRequest, newExport, resumePoint, STATUS } from "../../src/domain/export.js";
import { buildManifest } from "../../src/domain/manifest.js";
import { archiveDownloadName } from "../../src/domain/naming.js";
import { DEMO_EVENTS_DESCRIPTOR } from "../../src/sources/demo-events.js";

const descriptor = (name: string, maxRows: number, plans: string[] | null = null): DatasetDescriptor => ({
  name,
  description: "",
  columns: [
    { name: "id", type: "integer" },
    { name: "at", type: "timestamp" },
    { name: "body", type: "string" },
  ],
  filters: [{ name: "kind", type: "string" }],
  formats: ["csv", "jsonl"],
  limits: { maxRangeDays: 30, maxRows, maxBytes: maxRows * 100 },
  plans,
});
const datasets = new Map<string, DatasetDescriptor>([
  ["events", DEMO_EVENTS_DESCRIPTOR],
  ["users", descriptor("users", 1000)],
  ["orders", descriptor("orders", 5000)],
  ["secret", descriptor("secret", 10, ["enterprise"])],
]);
const bundles = new Map<string, BundleDescriptor>([
  [
    "account",
    { name: "account", description: "", datasets: ["users", "orders"], allTime: true, limits: null },
  ],
  [
    "ranged",
    {
      name: "ranged",
      description: "",
      datasets: ["users"],
      allTime: false,
      limits: { maxRows: 7, maxBytes: 70 },
    },
  ],
]);
const now = Date.UTC(2026, 10, 23, 12);

/** The invalid_request details of a request, as [field, code] pairs. */
function problems(input: Parameters<typeof normalizeCreateRequest>[0]): [string, string][] {
  try {
    normalizeCreateRequest(input, datasets, now, "default", bundles);
  } catch (err) {
    assert.ok(err instanceof AppError);
    return err.details.map((d) => [d.field, d.code]);
  }
  assert.fail("expected the request to be refused");
}

describe("multi-dataset create requests", () => {
  test("a list of datasets: each with its own filters and columns, one range and format, zip by default", () => {
    const r = normalizeCreateRequest(
      {
        datasets: [
          { name: "users", columns: ["body", "id"] },
          { name: "orders", filters: { kind: ["a", "a"] } },
        ],
        from: "2026-11-01",
        to: "2026-11-20",
        format: "jsonl",
      },
      datasets,
      now,
      "default",
      bundles,
    );
    assert.equal(r.dataset, "users");
    assert.equal(r.archive, "zip");
    assert.deepEqual(r.items, [
      { dataset: "users", filters: {}, columns: ["body", "id"], types: ["string", "integer"] },
      {
        dataset: "orders",
        filters: { kind: ["a"] },
        columns: ["id", "at", "body"],
        types: ["integer", "timestamp", "string"],
      },
    ]);
    assert.deepEqual(
      r.totalLimits,
      { maxRows: 5000, maxBytes: 500_000 },
      "the largest of the datasets' limits",
    );
    assert.deepEqual(itemRequest(r, 1).columns, ["id", "at", "body"]);
    assert.equal(itemRequest(r, 1).format, "jsonl");
    assert.equal(
      newExport({ id: "x", tenantId: "t", request: r, now, estimatedRows: null }).dataset,
      "users",
    );
  });

  test("a bundle: all time when it allows it, its own limits, listed under its name", () => {
    const r = normalizeCreateRequest({ bundle: "account" }, datasets, now, "default", bundles);
    assert.equal(r.allTime, true);
    assert.equal(r.from, ALL_TIME_FROM);
    assert.equal(r.to, now);
    assert.deepEqual(
      r.items?.map((i) => i.dataset),
      ["users", "orders"],
    );
    assert.equal(
      newExport({ id: "x", tenantId: "t", request: r, now, estimatedRows: null }).dataset,
      "account",
    );
    assert.equal(archiveDownloadName(r), "account_all_2026-11-23.zip");
    // All time skips max_range_days (30 here); a bundle without all_time needs a range within it.
    const ranged = normalizeCreateRequest(
      { bundle: "ranged", from: "2026-11-01", to: "2026-11-02" },
      datasets,
      now,
      "default",
      bundles,
    );
    assert.deepEqual(ranged.totalLimits, { maxRows: 7, maxBytes: 70 });
    assert.deepEqual(problems({ bundle: "ranged" }), [
      ["from", "required"],
      ["to", "required"],
    ]);
    assert.throws(
      () =>
        normalizeCreateRequest(
          { bundle: "ranged", from: "2026-01-01", to: "2026-11-02" },
          datasets,
          now,
          "default",
          bundles,
        ),
      (err: unknown) => err instanceof AppError && err.code === "invalid_date_range",
    );
  });

  test("misuse gets a detail code per field", () => {
    assert.deepEqual(problems({ from: "2026-11-01", to: "2026-11-02" }), [["dataset", "required"]]);
    assert.deepEqual(
      problems({ dataset: "users", bundle: "account", from: "2026-11-01", to: "2026-11-02" }),
      [["bundle", "exclusive"]],
    );
    assert.deepEqual(problems({ bundle: "nope" }), [["bundle", "unknown_bundle"]]);
    assert.deepEqual(problems({ bundle: "account", columns: ["id"] }), [["columns", "exclusive"]]);
    assert.deepEqual(problems({ datasets: [], from: "2026-11-01", to: "2026-11-02" }), [
      ["datasets", "too_many_datasets"],
    ]);
    assert.deepEqual(
      problems({ datasets: [{ name: "users" }, { name: "users" }], from: "2026-11-01", to: "2026-11-02" }),
      [["datasets[1].name", "duplicate_dataset"]],
    );
    assert.deepEqual(
      problems({ datasets: [{ name: "users" }, { name: "nope" }], from: "2026-11-01", to: "2026-11-02" }),
      [["datasets[1].name", "unknown_dataset"]],
    );
    assert.deepEqual(
      problems({
        datasets: [
          { name: "users", columns: ["id", "nope"] },
          { name: "orders", filters: { x: "1" } },
        ],
        from: "2026-11-01",
        to: "2026-11-02",
      }),
      [
        ["datasets[0].columns[1]", "unknown_column"],
        ["datasets[1].filters.x", "unknown_filter"],
      ],
    );
    assert.deepEqual(problems({ dataset: "users", from: "2026-11-01" }), [["to", "required"]]);
    assert.throws(
      () =>
        normalizeCreateRequest(
          { datasets: [{ name: "users" }, { name: "secret" }], from: "2026-11-01", to: "2026-11-02" },
          datasets,
          now,
          "default",
          bundles,
        ),
      (err: unknown) =>
        err instanceof AppError &&
        err.code === "plan_required" &&
        err.details[0]?.field === "datasets[1].name",
    );
  });

  test("the single-dataset shape keeps working: no archive unless asked, one item", () => {
    const r = normalizeCreateRequest(
      { dataset: "users", from: "2026-11-01", to: "2026-11-02" },
      datasets,
      now,
      "default",
    );
    assert.equal(r.archive, "none");
    assert.equal(r.totalLimits, undefined);
    assert.equal(r.items?.length, 1);
    const zipped = normalizeCreateRequest(
      { dataset: "users", from: "2026-11-01", to: "2026-11-02", archive: "zip" },
      datasets,
      now,
      "default",
    );
    assert.equal(zipped.archive, "zip");
  });
});

describe("resume point and manifest", () => {
  const part = (index: number, dataset: number, lastOfDataset = false): ExportPart => ({
    index,
    objectKey: `k${index}`,
    rows: 10,
    bytes: 100 + index,
    sha256: "ab".repeat(32),
    dataset,
    lastOfDataset,
    crc32: 0xdeadbeef,
  });

  test("a run starts in the dataset and after the part it was in", () => {
    assert.deepEqual(resumePoint([], null), { dataset: 0, part: 0, cursor: null });
    assert.deepEqual(resumePoint([part(0, 0), part(1, 0)], "c1"), { dataset: 0, part: 2, cursor: "c1" });
    assert.deepEqual(resumePoint([part(0, 0), part(1, 0, true)], "c1"), {
      dataset: 1,
      part: 2,
      cursor: null,
    });
    assert.deepEqual(resumePoint([part(0, 0, true), part(1, 1)], "c9"), {
      dataset: 1,
      part: 2,
      cursor: "c9",
    });
    // Parts from before archives (no dataset, no flag) resume as they always did.
    assert.deepEqual(resumePoint([{ index: 0, objectKey: "k", rows: 1, bytes: 1, sha256: "s" }], "c"), {
      dataset: 0,
      part: 1,
      cursor: "c",
    });
  });

  test("the manifest numbers parts per dataset and is complete only once succeeded", () => {
    const request = normalizeCreateRequest(
      { bundle: "account", compression: "gzip" },
      datasets,
      now,
      "default",
      bundles,
    );
    const record = newExport({ id: "e1", tenantId: "t", request, now, estimatedRows: null });
    record.parts = [part(0, 0), part(1, 0, true), part(2, 1, true)];
    const running = buildManifest(record);
    assert.equal(running.complete, false);
    assert.deepEqual(
      running.datasets.map((d) => d.parts.map((p) => p.path)),
      [["users/part-000.csv.gz", "users/part-001.csv.gz"], ["orders/part-000.csv.gz"]],
    );
    assert.equal(running.datasets[0]?.rows, 20);
    assert.equal(running.datasets[1]?.parts[0]?.crc32, "deadbeef");
    assert.deepEqual(running.datasets[0]?.columns[1], { name: "at", type: "timestamp" });
    assert.equal(running.range.all_time, true);
    record.status = STATUS.succeeded;
    assert.equal(buildManifest(record).complete, true);
  });
});

describe("bundles in the config file", () => {
  test("declared with their datasets, all_time and limits; mistakes reported with key paths", () => {
    const config = checkDatasetsConfig(
      {
        bundles: {
          account: { datasets: ["events"], all_time: true, limits: { max_rows: 5 } },
          plain: { datasets: ["events"] },
        },
      },
      "exportd.yaml",
      "/",
    );
    assert.deepEqual(config.bundles, [
      {
        name: "account",
        description: "",
        datasets: ["events"],
        allTime: true,
        limits: { maxRows: 5, maxBytes: DEFAULT_LIMITS.maxBytes },
      },
      { name: "plain", description: "", datasets: ["events"], allTime: false, limits: null },
    ]);
    assert.throws(
      () =>
        checkDatasetsConfig(
          { bundles: { Bad: { datasets: ["events", "nope", "events"], all_time: "yes", extra: 1 } } },
          "exportd.yaml",
          "/",
        ),
      (err: unknown) => {
        assert.ok(err instanceof ConfigFileError);
        assert.deepEqual(err.problems, [
          "bundles.Bad: must be lowercase letters, digits and _, starting with a letter",
          "bundles.Bad.extra: unknown key (known: datasets, all_time, description, limits)",
          "bundles.Bad.datasets[1]: must name a dataset (known: events)",
          'bundles.Bad.datasets[2]: "events" is listed twice',
          "bundles.Bad.all_time: must be true or false",
        ]);
        return true;
      },
    );
  });
});
