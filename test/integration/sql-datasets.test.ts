/**
 * SQL datasets end to end: a real PostgreSQL table and a real SQLite table full of hard values,
 * exported through the API and the worker, read back with csv-parse and JSON.parse, and compared
 * with the source rows. Also: tenant isolation, resume after a stopped worker, limits, dry runs.
 */
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { gunzipSync } from "node:zlib";
import { parse } from "csv-parse/sync";
import { stringify } from "yaml";
import {
  expectedTime,
  type HardRow,
  hardRows,
  loadPostgres,
  loadSqlite,
  sqliteAmount,
} from "../helpers/hard-rows.js";
import { injectClient } from "../helpers/inject-client.js";
import { createTestDatabase, type TestDatabase } from "../helpers/postgres.js";
import { startTestService, type TestService, tempDir, waitFor } from "../helpers/service.js";

interface ExportView {
  id: string;
  status: string;
  progress: { percent: number; rows: number; parts: number; estimated_rows: number | null };
  parts: { index: number; rows: number; sha256: string }[];
  error: { code: string; retryable: boolean } | null;
}

const COLUMNS = [
  { name: "id", type: "integer" },
  { name: "occurred_at", type: "timestamp" },
  { name: "label", type: "string" },
  { name: "big", type: "integer" },
  { name: "amount", type: "number" },
  { name: "flag", type: "boolean" },
  { name: "props", type: "json" },
  { name: "remark", column: "note", type: "string" },
];
const NAMES = COLUMNS.map((c) => c.name);

function datasetConfig(source: string, limits: Record<string, number> = {}) {
  return {
    source,
    table: "hard_rows",
    tenant_column: "tenant",
    time_column: "occurred_at",
    key_column: "id",
    columns: COLUMNS,
    filters: {
      kind: { column: "kind", type: "string" },
      label: {},
      id: { type: "integer" },
      flag: { type: "boolean" },
    },
    limits: { max_range_days: 366, ...limits },
  };
}

type Source = "pg" | "lite";
const DATASETS: Record<Source, string> = { pg: "pg_rows", lite: "lite_rows" };

/** The exported text of each column of a row, by source; null is an empty unquoted CSV field. */
function expectedCsv(source: Source, r: HardRow, zone: string): (string | null)[] {
  const micros = source === "pg" ? r.micros : (r.micros / 1000n) * 1000n;
  return [
    String(r.id),
    expectedTime(micros, zone),
    r.label,
    String(r.big),
    source === "pg" ? r.amount : String(sqliteAmount(r)),
    r.flag === null ? null : String(r.flag),
    r.props === null ? null : "<json>",
    r.note,
  ];
}

function sortedFor(source: Source, rows: HardRow[], tenant: string): HardRow[] {
  const time = (r: HardRow) => (source === "pg" ? r.micros : r.micros / 1000n);
  return rows
    .filter((r) => r.tenant === tenant)
    .sort((a, b) => (time(a) === time(b) ? a.id - b.id : time(a) < time(b) ? -1 : 1));
}

/** CSV with NULL (empty, unquoted) told apart from "" (quoted). */
function parseCsv(text: string, delimiter = ","): (string | null)[][] {
  return parse(text, {
    delimiter,
    cast: (value, context) => (context.quoting ? value : value === "" ? null : value),
  }) as (string | null)[][];
}

/** Compares one exported CSV row with its source row; JSON is compared parsed. */
function assertCsvRow(actual: (string | null)[], source: Source, r: HardRow, zone: string) {
  const expected = expectedCsv(source, r, zone);
  const props = NAMES.indexOf("props");
  assert.deepEqual(
    actual[props] === null ? null : JSON.parse(actual[props] as string),
    r.props,
    `props of ${r.id}`,
  );
  assert.deepEqual(
    actual.map((v, i) => (i === props && v !== null ? "<json>" : v)),
    expected,
    `row ${r.id}`,
  );
}

describe("SQL datasets", () => {
  let db: TestDatabase;
  let svc: TestService;
  let dir: string;
  let configFile: string;
  const rows = hardRows();
  const keys: Record<string, string> = {};

  before(async () => {
    db = await createTestDatabase();
    dir = tempDir("exportd-sql-");
    await loadPostgres(db.url, rows);
    loadSqlite(path.join(dir, "lite.sqlite"), rows);
    configFile = path.join(dir, "exportd.yaml");
    fs.writeFileSync(
      configFile,
      stringify({
        sources: { pg: { type: "postgres", url: db.url }, lite: { type: "sqlite", file: "lite.sqlite" } },
        datasets: {
          pg_rows: datasetConfig("pg"),
          lite_rows: datasetConfig("lite"),
          pg_few_rows: datasetConfig("pg", { max_rows: 10 }),
          lite_few_bytes: datasetConfig("lite", { max_bytes: 2000 }),
          pg_few_bytes: datasetConfig("pg", { max_bytes: 2000 }),
          pg_short: datasetConfig("pg", { max_range_days: 7 }),
        },
      }),
    );
    svc = await startTestService({ EXPORTD_CONFIG: configFile });
    for (const tenant of ["acme", "globex", "o'hara", "nobody"]) keys[tenant] = await svc.key(tenant);
  });

  after(async () => {
    await svc?.dispose();
    await db?.dispose();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  const headers = (tenant: string) => ({ authorization: `Bearer ${keys[tenant]}` });

  async function runExport(
    tenant: string,
    body: Record<string, unknown>,
    service = svc,
  ): Promise<ExportView> {
    return injectClient<ExportView>(service, keys[tenant]!).run(
      { from: "2026-03-01", to: "2026-11-01", compression: "none", ...body },
      30_000,
    );
  }

  async function partsOf(view: ExportView, service = svc): Promise<string[]> {
    const record = await service.store.getExport(
      (await service.store.findTenantByName(tenantOf(view)))!.id,
      view.id,
    );
    return record!.parts.map((p) => {
      const bytes = fs.readFileSync(path.join(service.dataDir, "objects", p.objectKey));
      return (p.objectKey.endsWith(".gz") ? gunzipSync(bytes) : bytes).toString("utf8");
    });
  }
  const owners = new Map<string, string>();
  const tenantOf = (view: ExportView) => owners.get(view.id) as string;
  async function exportParts(tenant: string, body: Record<string, unknown>) {
    const view = await runExport(tenant, body);
    owners.set(view.id, tenant);
    assert.equal(view.status, "succeeded", JSON.stringify(view.error));
    return { view, parts: await partsOf(view) };
  }

  for (const source of ["pg", "lite"] as const) {
    const dataset = DATASETS[source];

    test(`${source}: CSV in Europe/Berlin across both DST changes equals the source rows, parts cut after a quoted newline`, async () => {
      const expected = sortedFor(source, rows, "acme");
      const cutAfter = expected.findIndex((r) => r.label.includes("\n")) + 1;
      const { view, parts } = await exportParts("acme", {
        dataset,
        timezone: "Europe/Berlin",
        part_max_rows: cutAfter,
        compression: "gzip",
      });
      assert.equal(view.progress.rows, expected.length);
      assert.equal(view.progress.percent, 100);
      assert.equal(parts.length, Math.ceil(expected.length / cutAfter));
      const all: (string | null)[][] = [];
      for (const [i, text] of parts.entries()) {
        assert.ok(text.endsWith("\r\n"), "rows end in CRLF by default");
        const parsed = parseCsv(text);
        assert.deepEqual(parsed[0], NAMES, "every part starts with the header");
        assert.equal(parsed.length - 1, view.parts[i]?.rows);
        all.push(...parsed.slice(1));
      }
      // The first part ends right after the row whose quoted field holds a newline.
      assert.equal(parseCsv(parts[0] as string).at(-1)?.[2], "line\nbreak");
      assert.equal(all.length, expected.length);
      for (const [i, row] of all.entries())
        assertCsvRow(row, source, expected[i] as HardRow, "Europe/Berlin");
      // DST: the same wall-clock hour twice in October, with two offsets.
      const times = all.map((r) => r[1] as string);
      assert.ok(times.some((t) => t.startsWith("2026-03-29T03:") && t.endsWith("+02:00")));
      assert.ok(times.some((t) => t.startsWith("2026-03-29T01:") && t.endsWith("+01:00")));
      assert.ok(times.some((t) => t.startsWith("2026-10-25T02:") && t.endsWith("+02:00")));
      assert.ok(times.some((t) => t.startsWith("2026-10-25T02:") && t.endsWith("+01:00")));
    });

    test(`${source}: JSONL equals the source rows; big integers and decimals keep every digit`, async () => {
      const expected = sortedFor(source, rows, "acme");
      const { parts } = await exportParts("acme", { dataset, format: "jsonl", part_max_rows: 25 });
      const lines = parts.join("").split("\n");
      assert.equal(lines.pop(), "");
      assert.equal(lines.length, expected.length);
      lines.forEach((line, i) => {
        const r = expected[i] as HardRow;
        // Numbers as their exact text: JSON.parse would round them to doubles.
        const exact = line.replace(/"(big|amount)":(-?[0-9][0-9.eE+-]*)/g, '"$1":"$2"');
        const [id, time, label, big, amount, flag, , note] = expectedCsv(source, r, "UTC");
        assert.deepEqual(JSON.parse(exact), {
          id: Number(id),
          occurred_at: time,
          label,
          big,
          amount,
          flag: flag === null ? null : flag === "true",
          props: r.props,
          remark: note,
        });
      });
    });

    test(`${source}: LF newlines, semicolons, no header, and the formula guard`, async () => {
      const expected = sortedFor(source, rows, "globex");
      const { parts } = await exportParts("globex", {
        dataset,
        columns: ["label", "remark", "amount"],
        csv: { delimiter: ";", header: false, newline: "lf", formula_guard: true },
      });
      const text = parts.join("");
      assert.ok(!/\r\n$/.test(text) && text.endsWith("\n"));
      const parsed = parseCsv(text, ";");
      assert.equal(parsed.length, expected.length);
      const guard = (v: string | null) => (v !== null && /^[=+\-@\t\r]/.test(v) ? `'${v}` : v);
      parsed.forEach((row, i) => {
        const r = expected[i] as HardRow;
        assert.deepEqual(row, [
          guard(r.label),
          guard(r.note),
          source === "pg" ? r.amount : String(sqliteAmount(r)),
        ]);
      });
      assert.ok(parsed.some((row) => row[0] === "'=SUM(A1:A2)"));
    });

    test(`${source}: no filter, column choice or range yields another tenant's rows`, async () => {
      const globexIds = new Set(rows.filter((r) => r.tenant === "globex").map((r) => String(r.id)));
      const acme = rows.filter((r) => r.tenant === "acme");
      const attempts: Record<string, unknown>[] = [
        {},
        { filters: { kind: ["acme-kind-0", "' OR 1=1 --", "globex-kind-1"] } },
        { filters: { label: ["' OR 1=1 --", "x' OR tenant <> 'globex", '"; DROP TABLE hard_rows; --'] } },
        { filters: { id: acme.slice(0, 20).map((r) => String(r.id)) } },
        { filters: { flag: "true", kind: "acme-kind-2" } },
        { columns: ["id"], from: "2000-01-01", to: "2000-12-31" },
        { columns: ["id"], from: "2026-03-29T00:00:00Z", to: "2026-10-26T00:00:00+02:00" },
      ];
      for (const body of attempts) {
        const { parts } = await exportParts("globex", { dataset, columns: ["id", "remark"], ...body });
        const ids = parts.flatMap((p) => parseCsv(p).slice(1)).map((r) => r[0] as string);
        for (const id of ids)
          assert.ok(globexIds.has(id), `row ${id} of another tenant in ${JSON.stringify(body)}`);
      }
      // Filters narrow within the tenant: one kind of globex.
      const { parts } = await exportParts("globex", {
        dataset,
        columns: ["id"],
        filters: { kind: "globex-kind-1" },
      });
      assert.equal(parts.flatMap((p) => parseCsv(p).slice(1)).length, ROWS_PER_KIND);
      // A tenant whose name needs escaping sees exactly its own rows; a tenant without rows sees none.
      const ohara = await exportParts("o'hara", { dataset, columns: ["id"] });
      assert.equal(ohara.view.progress.rows, rows.filter((r) => r.tenant === "o'hara").length);
      const nobody = await exportParts("nobody", { dataset, columns: ["id"] });
      assert.equal(nobody.view.progress.rows, 0);
      assert.deepEqual(parseCsv(nobody.parts[0] as string), [["id"]]);
    });

    // In UTC, PostgreSQL CSV cursors come from the exported time and id fields instead of extra COPY fields.
    for (const timezone of ["Europe/Berlin", "UTC"]) {
      test(`${source}: a worker stopped after the first part; a second one finishes it, identical to an uninterrupted run (${timezone})`, async () => {
        const body = { dataset, part_max_rows: 7, compression: "gzip", timezone };
        const first = await startTestService({ EXPORTD_CONFIG: configFile });
        const key = await first.key("acme");
        // Stop the worker as soon as the first part is recorded: the export goes back to the queue.
        const store = first.store;
        const recordPart = store.recordPart.bind(store);
        let stopped: Promise<void> | null = null;
        store.recordPart = async (...args) => {
          const result = await recordPart(...args);
          stopped ??= first.worker!.stop();
          return result;
        };
        const res = await first.app!.inject({
          method: "POST",
          url: "/v1/exports",
          headers: { authorization: `Bearer ${key}` },
          payload: { from: "2026-03-01", to: "2026-11-01", ...body },
        });
        const id = (res.json() as ExportView).id;
        await waitFor(
          async () => stopped,
          (s) => s !== null,
        );
        await stopped;
        const tenantId = (await store.findTenantByName("acme"))!.id;
        const halfway = await store.getExport(tenantId, id);
        assert.equal(halfway?.status, "queued");
        assert.equal(halfway?.parts.length, 1);
        await first.close();

        const second = await startTestService({
          EXPORTD_CONFIG: configFile,
          EXPORTD_DATA_DIR: first.dataDir,
        });
        try {
          const resumed = await waitFor(
            () => second.store.getExport(tenantId, id),
            (e) => e?.status === "succeeded",
          );
          const res2 = await second.app!.inject({
            method: "POST",
            url: "/v1/exports",
            headers: { authorization: `Bearer ${key}` },
            payload: { from: "2026-03-01", to: "2026-11-01", ...body },
          });
          const id2 = (res2.json() as ExportView).id;
          const uninterrupted = await waitFor(
            () => second.store.getExport(tenantId, id2),
            (e) => e?.status === "succeeded",
          );
          assert.equal(resumed?.progress.rows, sortedFor(source, rows, "acme").length);
          assert.deepEqual(
            resumed?.parts.map((p) => [p.rows, p.sha256]),
            uninterrupted?.parts.map((p) => [p.rows, p.sha256]),
          );
        } finally {
          await second.dispose();
        }
      });
    }
  }

  test("limits: too many rows and too much data fail for good; a long range is refused at create", async () => {
    const rowsFailed = await runExport("acme", { dataset: "pg_few_rows" });
    assert.equal(rowsFailed.status, "failed");
    assert.deepEqual(rowsFailed.error && [rowsFailed.error.code, rowsFailed.error.retryable], [
      "too_many_rows",
      false,
    ]);
    for (const dataset of ["pg_few_bytes", "lite_few_bytes"]) {
      const bytesFailed = await runExport("acme", { dataset });
      assert.equal(bytesFailed.status, "failed", dataset);
      assert.deepEqual(bytesFailed.error && [bytesFailed.error.code, bytesFailed.error.retryable], [
        "too_much_data",
        false,
      ]);
    }
    const res = await svc.app!.inject({
      method: "POST",
      url: "/v1/exports",
      headers: headers("acme"),
      payload: { dataset: "pg_short", from: "2026-03-01", to: "2026-03-09" },
    });
    assert.equal(res.statusCode, 400);
    assert.equal(res.json().error.code, "invalid_date_range");
  });

  test("dry run: exact estimate and whether it passes the limits, nothing created", async () => {
    for (const [dataset, exceeds] of [
      ["pg_rows", false],
      ["lite_rows", false],
      ["pg_few_rows", true],
    ] as const) {
      const res = await svc.app!.inject({
        method: "POST",
        url: "/v1/exports",
        headers: headers("globex"),
        payload: {
          dataset,
          from: "2026-03-01",
          to: "2026-11-01",
          filters: { kind: "globex-kind-1" },
          dry_run: true,
        },
      });
      assert.equal(res.statusCode, 200, res.body);
      const body = res.json();
      assert.equal(body.estimated_rows, ROWS_PER_KIND);
      assert.equal(body.exceeds_limits, exceeds);
    }
    const list = await svc.app!.inject({
      url: "/v1/exports?dataset=pg_few_rows",
      headers: headers("globex"),
    });
    assert.deepEqual(list.json().data, []);
  });

  test("bad filter values are refused at create", async () => {
    const res = await svc.app!.inject({
      method: "POST",
      url: "/v1/exports",
      headers: headers("acme"),
      payload: {
        dataset: "pg_rows",
        from: "2026-03-01",
        to: "2026-11-01",
        filters: { id: "1 OR 1=1", flag: "yes" },
      },
    });
    assert.equal(res.statusCode, 400);
    assert.deepEqual(
      res.json().error.details.map((d: { field: string }) => d.field),
      ["filters.id", "filters.flag"],
    );
  });

  test("GET /v1/datasets lists the demo and the configured datasets with columns, filters and limits", async () => {
    const res = await svc.app!.inject({ url: "/v1/datasets", headers: headers("acme") });
    const data = res.json().data as {
      name: string;
      columns: { name: string }[];
      filters: { name: string; type: string }[];
      limits: Record<string, number>;
    }[];
    const pgRows = data.find((d) => d.name === "pg_rows");
    assert.ok(data.some((d) => d.name === "events"));
    assert.deepEqual(
      pgRows?.columns.map((c) => c.name),
      NAMES,
    );
    assert.deepEqual(
      pgRows?.filters.map((f) => [f.name, f.type]),
      [
        ["kind", "string"],
        ["label", "string"],
        ["id", "integer"],
        ["flag", "boolean"],
      ],
    );
    assert.deepEqual(pgRows?.limits, {
      max_range_days: 366,
      max_rows: 10_000_000,
      max_bytes: 10 * 1024 ** 3,
    });
  });
});

const ROWS_PER_KIND = 20;
