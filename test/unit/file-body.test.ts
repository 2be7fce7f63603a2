/** The download buffer pool: its byte budget for large buffers and the reuse of what comes back. */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { ChunkPool, DownloadSlots, MAX_CHUNK_BYTES, MIN_CHUNK_BYTES } from "../../src/http/file-body.js";

describe("ChunkPool", () => {
  test("large buffers only within the budget; past it, small ones", () => {
    const pool = new ChunkPool(3 * MAX_CHUNK_BYTES);
    const large = [pool.take(true), pool.take(true), pool.take(true)];
    for (const b of large) assert.equal(b.length, MAX_CHUNK_BYTES);
    assert.equal(pool.take(true).length, MIN_CHUNK_BYTES, "the budget is spent");
    assert.equal(pool.largeInUse, 3);
    pool.give(large[0] as Buffer);
    assert.equal(pool.take(true), large[0], "a returned large buffer is reused, not reallocated");
    assert.equal(pool.take(false).length, MIN_CHUNK_BYTES);
  });

  test("small buffers are reused too", () => {
    const pool = new ChunkPool(MAX_CHUNK_BYTES);
    const small = pool.take(false);
    pool.give(small);
    assert.equal(pool.take(false), small);
  });
});

describe("DownloadSlots", () => {
  test("refuses past the cap and admits again after a release", () => {
    const slots = new DownloadSlots(2);
    assert.equal(slots.tryAcquire(), true);
    assert.equal(slots.tryAcquire(), true);
    assert.equal(slots.tryAcquire(), false);
    slots.release();
    assert.equal(slots.inFlight, 1);
    assert.equal(slots.tryAcquire(), true);
  });
});
