/** The error catalogue's codes: top-level codes and detail codes stay apart. */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { DETAIL_CODES, ERROR_CATALOGUE } from "../../src/domain/errors.js";
import { EXPORT_STATUSES } from "../../src/domain/export.js";

describe("error codes", () => {
  test("no detail code is also a top-level code", () => {
    const topLevel = new Set(Object.keys(ERROR_CATALOGUE));
    const detailCodes = [...Object.keys(DETAIL_CODES), ...EXPORT_STATUSES];
    const clashes = detailCodes.filter((code) => topLevel.has(code));
    assert.deepEqual(clashes, [], `detail codes named like top-level codes: ${clashes.join(", ")}`);
  });

  test("codes are stable lowercase identifiers", () => {
    for (const code of [...Object.keys(ERROR_CATALOGUE), ...Object.keys(DETAIL_CODES)]) {
      assert.match(code, /^[a-z][a-z0-9_]*$/);
    }
  });
});
