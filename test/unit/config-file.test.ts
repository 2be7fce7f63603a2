/** The config file: a valid one parses with defaults; each problem names the path of its key. */
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { test } from "node:test";
import { ConfigFileError, checkDatasetsConfig, readDatasetsConfig } from "../../src/config/file.js";
import { ConfigError, loadConfig } from "../../src/config/index.js";
import { tempDir } from "../helpers/service.js";

const valid = {
  sources: {
    main: { type: "postgres", url: "postgres://localhost/app" },
    lite: { type: "sqlite", file: "app.db" },
  },
  datasets: {
    orders: {
      source: "main",
      table: "public.orders",
      tenant_column: "account",
      time_column: "created_at",
      key_column: "id",
      columns: [
        { name: "id", type: "integer" },
        { name: "total", column: "amount_total", type: "number" },
      ],
      filters: { status: {} },
    },
  },
};

function problems(doc: unknown): string[] {
  try {
    checkDatasetsConfig(doc, "exportd.yaml", "/etc/exportd");
  } catch (err) {
    assert.ok(err instanceof ConfigFileError);
    return err.problems;
  }
  return [];
}

test("a valid file: defaults filled in, renames kept, relative SQLite paths resolved", () => {
  const config = checkDatasetsConfig(valid, "exportd.yaml", "/etc/exportd");
  assert.equal(config.demo, true);
  assert.deepEqual(config.sources.lite, { type: "sqlite", file: "/etc/exportd/app.db" });
  const orders = config.datasets[0];
  assert.deepEqual(orders?.columns[1], {
    name: "total",
    column: "amount_total",
    type: "number",
    description: "",
  });
  assert.deepEqual(orders?.filters, [{ name: "status", column: "status", type: "string", description: "" }]);
  assert.deepEqual(orders?.formats, ["csv", "jsonl"]);
  assert.deepEqual(orders?.plans, ["*"]);
  assert.equal(orders?.keyType, "integer");
  assert.equal(orders?.localTimeZone, "UTC");
  assert.deepEqual(orders?.limits, { maxRangeDays: 366, maxRows: 10_000_000, maxBytes: 10 * 1024 ** 3 });
});

test("local_time_zone: a canonical zone name in any case, echoed canonically; links and abbreviations are refused", () => {
  const withZone = (zone: string) => ({
    ...valid,
    datasets: { orders: { ...valid.datasets.orders, local_time_zone: zone } },
  });
  const config = checkDatasetsConfig(withZone("europe/berlin"), "exportd.yaml", "/etc/exportd");
  assert.equal(config.datasets[0]?.localTimeZone, "Europe/Berlin");
  assert.deepEqual(problems(withZone("Asia/Calcutta")), [
    "datasets.orders.local_time_zone: must be a canonical IANA time zone name or UTC (did you mean Asia/Kolkata?)",
  ]);
  assert.equal(problems(withZone("BST")).length, 1);
});

test("every bad key is named by its path", () => {
  const orders = valid.datasets.orders;
  const bad = {
    demo: "no",
    sources: { ...valid.sources, broken: { type: "mysql" } },
    datasets: {
      orders: {
        ...orders,
        source: "nope",
        table: "orders; DROP TABLE x",
        tenant_column: 'a"b',
        columns: [...orders.columns, { name: "x", type: "date" }, { name: "id", type: "string" }],
        filters: { status: { type: "enum" } },
        limits: { max_rows: -1, max_lines: 3 },
        extra: true,
      },
    },
  };
  assert.deepEqual(problems(bad), [
    "demo: must be true or false",
    "sources.broken.type: must be one of postgres, sqlite",
    "sources.broken.url: is required",
    "datasets.orders.extra: unknown key (known: source, description, table, tenant_column, time_column, key_column, key_type, local_time_zone, columns, filters, formats, limits, plans)",
    'datasets.orders.source: no source "nope" in sources (known: main, lite, broken)',
    "datasets.orders.columns[2].type: must be one of string, integer, number, boolean, timestamp, json",
    'datasets.orders.columns[3].name: "id" is listed twice',
    "datasets.orders.filters.status.type: must be one of string, integer, boolean",
    "datasets.orders.limits.max_lines: unknown key (known: max_range_days, max_rows, max_bytes)",
    "datasets.orders.table: must be a table or view name, optionally schema-qualified (schema.table), of plain identifiers",
    "datasets.orders.tenant_column: must be a plain SQL identifier (letters, digits, _)",
    "datasets.orders.limits.max_rows: must be an integer between 1 and 9007199254740991",
  ]);
});

test("the demo's name is taken unless the demo is off", () => {
  const events = { datasets: { events: valid.datasets.orders }, sources: valid.sources };
  assert.match(problems(events)[0] ?? "", /^datasets\.events: is the demo dataset's name/);
  assert.deepEqual(problems({ ...events, demo: false }), []);
});

test("EXPORTD_CONFIG: YAML or JSON, read once by loadConfig; errors stop the start", () => {
  const dir = tempDir();
  try {
    fs.writeFileSync(path.join(dir, "a.json"), JSON.stringify({ ...valid, demo: false }));
    fs.writeFileSync(path.join(dir, "b.yaml"), "demo: false\nsources: {}\ndatasets:\n  x: {source: y}\n");
    assert.equal(readDatasetsConfig(path.join(dir, "a.json")).demo, false);
    const config = loadConfig({ EXPORTD_CONFIG: "a.json" }, dir);
    assert.equal(config.datasets.datasets[0]?.name, "orders");
    assert.deepEqual(loadConfig({}, dir).datasets, {
      demo: true,
      sources: {},
      datasets: [],
      tokens: null,
      webhooks: [],
    });
    assert.throws(
      () => loadConfig({ EXPORTD_CONFIG: "b.yaml" }, dir),
      (err: unknown) => {
        assert.ok(err instanceof ConfigError);
        assert.match(err.message, /datasets\.x\.source: no source "y"/);
        assert.match(err.message, /datasets\.x\.columns: is required/);
        return true;
      },
    );
    assert.throws(() => loadConfig({ EXPORTD_CONFIG: "missing.yaml" }, dir), /cannot be read/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
