/** The WHERE clause exportd writes for SQL datasets: tenant first, and a seekable bound on resume. */
import assert from "node:assert/strict";
import { test } from "node:test";
import type { DatasetConfig } from "../../src/config/file.js";
import { type QueryScope, whereClause } from "../../src/sources/sql/build-query.js";

const dataset = {
  tenantColumn: "account",
  timeColumn: "created_at",
  keyColumn: "id",
} as DatasetConfig;
const bind = (value: unknown) => `<${String(value)}>`;
const scope: QueryScope = { tenant: "acme", from: 100, to: 200, filters: [], after: null };

test("a fresh read is bounded by the request's range, tenant first", () => {
  assert.equal(
    whereClause(dataset, scope, bind),
    `"account" = <acme> AND "created_at" >= <100> AND "created_at" < <200>`,
  );
});

test("a resumed read takes the cursor's time as its lower bound, so an index seeks to it", () => {
  const where = whereClause(dataset, { ...scope, after: { time: 150, key: 7 } }, bind);
  assert.equal(
    where,
    `"account" = <acme> AND "created_at" >= <150> AND "created_at" < <200> AND ("created_at", "id") > (<150>, <7>)`,
  );
});
