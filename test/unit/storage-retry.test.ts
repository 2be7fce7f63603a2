/** The object-store retry policy: back-off with jitter inside a budget, and which failures may pass. */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { StorageError } from "../../src/object-store/errors.js";
import { Backoff, isPermanentStorageError } from "../../src/object-store/retry.js";

const errno = (code: string) => Object.assign(new Error(code), { code });
const s3 = (name: string, httpStatusCode: number) =>
  Object.assign(new Error(name), { name, $metadata: { httpStatusCode } });

describe("storage retry", () => {
  test("delays double from the base up to the cap, each between half and all of its step", () => {
    for (const random of [0, 0.5, 0.999]) {
      const backoff = new Backoff(
        { budgetMs: 3_600_000, baseMs: 100, capMs: 1000 },
        () => 0,
        () => random,
      );
      const delays = Array.from({ length: 6 }, () => backoff.next() as number);
      const steps = [100, 200, 400, 800, 1000, 1000];
      delays.forEach((d, i) => {
        const step = steps[i] as number;
        assert.ok(d >= step / 2 && d <= step, `try ${i + 1}: ${d} within [${step / 2}, ${step}]`);
      });
      assert.equal(backoff.failures, 6);
    }
  });

  test("the budget runs from the first failure; a reset starts a new one", () => {
    let now = 0;
    const backoff = new Backoff(
      { budgetMs: 1000, baseMs: 400, capMs: 10_000 },
      () => now,
      () => 1,
    );
    assert.equal(backoff.next(), 400);
    now = 900;
    assert.equal(backoff.next(), 100, "never waits past the budget");
    now = 1000;
    assert.equal(backoff.next(), null, "budget spent");
    backoff.reset();
    now = 5000;
    assert.equal(backoff.next(), 400, "progress gave a fresh budget");
  });

  test("what waiting cannot fix is permanent; outages, full disks and cut streams are not", () => {
    for (const code of ["EACCES", "EROFS", "EPERM", "ENOENT"]) {
      assert.equal(isPermanentStorageError(new StorageError(errno(code))), true, code);
    }
    assert.equal(isPermanentStorageError(new StorageError(s3("AccessDenied", 403))), true);
    assert.equal(isPermanentStorageError(s3("NoSuchBucket", 404)), true);
    for (const code of [
      "ENOSPC",
      "EDQUOT",
      "EIO",
      "ECONNREFUSED",
      "ECONNRESET",
      "ERR_STREAM_PREMATURE_CLOSE",
    ]) {
      assert.equal(isPermanentStorageError(new StorageError(errno(code))), false, code);
    }
    for (const [name, status] of [
      ["InternalError", 500],
      ["ServiceUnavailable", 503],
      ["SlowDown", 429],
      ["RequestTimeout", 408],
    ] as const) {
      assert.equal(isPermanentStorageError(new StorageError(s3(name, status))), false, name);
    }
    const wrapped = new StorageError(Object.assign(new Error("upload failed"), { cause: errno("EROFS") }));
    assert.equal(isPermanentStorageError(wrapped), true, "a cause chain is followed");
  });
});
