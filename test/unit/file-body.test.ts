/**
 * The download buffer pool: its byte budget for large buffers and the reuse of what comes back;
 * writeBody's stream pieces (an S3 archive's parts) over a real loopback connection, the next one
 * opened while the current one streams.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { PassThrough, Readable } from "node:stream";
import { describe, test } from "node:test";
import {
  type BodyPiece,
  ChunkPool,
  DownloadSlots,
  MAX_CHUNK_BYTES,
  MIN_CHUNK_BYTES,
  OPEN_AHEAD_BYTES,
  writeBody,
} from "../../src/http/file-body.js";
import { waitFor } from "../helpers/service.js";

/**
 * Serves one request with `pieces` through writeBody; resolves with what the client received,
 * whether the body ended whole, and how writeBody settled. `leaveAfter`: the client leaves after
 * that many bytes.
 */
async function serve(
  pieces: BodyPiece[],
  leaveAfter = Number.POSITIVE_INFINITY,
): Promise<{ body: Buffer; complete: boolean; written: PromiseSettledResult<void> }> {
  let written!: Promise<void>;
  const server = http.createServer((_req, res) => {
    res.writeHead(200);
    written = writeBody(res, pieces, new ChunkPool(4 * MAX_CHUNK_BYTES), 5000);
    written.catch(() => res.destroy());
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  try {
    const { port } = server.address() as AddressInfo;
    const got = await new Promise<{ body: Buffer; complete: boolean }>((resolve) => {
      const req = http.get({ host: "127.0.0.1", port, path: "/" }, (res) => {
        const chunks: Buffer[] = [];
        let n = 0;
        res.on("data", (c: Buffer) => {
          chunks.push(c);
          n += c.length;
          if (n >= leaveAfter) req.destroy();
        });
        res.on("error", () => undefined);
        res.on("close", () => resolve({ body: Buffer.concat(chunks), complete: res.complete }));
      });
      req.on("error", () => undefined);
    });
    const [settled] = await Promise.allSettled([written]);
    return { ...got, written: settled as PromiseSettledResult<void> };
  } finally {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  }
}

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

describe("writeBody with stream pieces", () => {
  test("bytes and streams in order, each stream exactly its length", async () => {
    const a = randomBytes(300_000);
    const b = randomBytes(70_000);
    const got = await serve([
      { kind: "bytes", data: Buffer.from("head") },
      { kind: "stream", stream: Readable.from([a.subarray(0, 1000), a.subarray(1000)]), length: a.length },
      { kind: "bytes", data: Buffer.from("mid") },
      { kind: "stream", stream: async () => Readable.from([b]), length: b.length },
    ]);
    assert.equal(got.complete, true);
    assert.ok(got.body.equals(Buffer.concat([Buffer.from("head"), a, Buffer.from("mid"), b])));
    assert.equal(got.written.status, "fulfilled");
  });

  test("a stream shorter than its length rejects, and the client sees the body cut", async () => {
    const got = await serve([{ kind: "stream", stream: Readable.from([randomBytes(1000)]), length: 2000 }]);
    assert.equal(got.written.status, "rejected");
    assert.equal(got.complete, false);
    assert.equal(got.body.length, 1000);
  });

  test("a stream that errors mid-way rejects; the client sees the body cut", async () => {
    const stream = new PassThrough();
    stream.write(randomBytes(5000));
    setTimeout(() => stream.destroy(new Error("store went away")), 100);
    const got = await serve([{ kind: "stream", stream, length: 10_000 }]);
    assert.equal(got.written.status, "rejected");
    assert.equal(got.complete, false);
  });

  test("a client that leaves while the stream waits on the store: the stream is destroyed at once", {
    timeout: 10_000,
  }, async () => {
    const stream = new PassThrough();
    stream.write(randomBytes(2000)); // then nothing more: a store that stalls
    const started = Date.now();
    const got = await serve([{ kind: "stream", stream, length: 1_000_000 }], 1);
    assert.equal(got.written.status, "fulfilled", "a client leaving is no failure");
    assert.equal(stream.destroyed, true);
    assert.ok(Date.now() - started < 4000, "not held until the stall timeout");
  });

  test("the next stream is opened while the current one streams, one ahead at most", async () => {
    const a = randomBytes(50_000);
    const b = randomBytes(40_000);
    const c = randomBytes(30_000);
    const first = new PassThrough();
    first.write(a.subarray(0, 10_000)); // the rest only once the next part is opened
    const opened: number[] = [];
    let firstEndedWhenSecondOpened: boolean | null = null;
    let openedWhenSecondOpened: number[] = [];
    const got = await serve([
      {
        kind: "stream",
        stream: async () => {
          opened.push(0);
          return first;
        },
        length: a.length,
      },
      { kind: "bytes", data: Buffer.from("header") },
      {
        kind: "stream",
        stream: async () => {
          opened.push(1);
          firstEndedWhenSecondOpened = first.writableEnded;
          openedWhenSecondOpened = [...opened];
          // Without the open ahead, the first part would wait on this for ever (the stall timeout).
          first.end(a.subarray(10_000));
          return Readable.from([b]);
        },
        length: b.length,
      },
      {
        kind: "stream",
        stream: async () => {
          opened.push(2);
          return Readable.from([c]);
        },
        length: c.length,
      },
    ]);
    assert.equal(got.written.status, "fulfilled");
    assert.equal(got.complete, true);
    assert.ok(got.body.equals(Buffer.concat([a, Buffer.from("header"), b, c])));
    assert.equal(firstEndedWhenSecondOpened, false, "opened before the first part was done");
    assert.deepEqual(openedWhenSecondOpened, [0, 1], "not two ahead");
    assert.deepEqual(opened, [0, 1, 2]);
  });

  test("a long stream: the next one is opened only when OPEN_AHEAD_BYTES or fewer remain", async () => {
    const chunk = 16 * 1024;
    const a = randomBytes(OPEN_AHEAD_BYTES + 4 * chunk);
    const b = randomBytes(1000);
    let given = 0;
    let givenWhenSecondOpened = -1;
    function* chunks(): Generator<Buffer> {
      for (let at = 0; at < a.length; at += chunk) {
        given = at + chunk;
        yield a.subarray(at, at + chunk);
      }
    }
    const got = await serve([
      { kind: "stream", stream: async () => Readable.from(chunks()), length: a.length },
      {
        kind: "stream",
        stream: async () => {
          givenWhenSecondOpened = given;
          return Readable.from([b]);
        },
        length: b.length,
      },
    ]);
    assert.equal(got.written.status, "fulfilled");
    assert.ok(got.body.equals(Buffer.concat([a, b])));
    // At least the first 4 chunks were read (the stream may have read more ahead of writeBody).
    assert.ok(givenWhenSecondOpened >= 4 * chunk, `opened after ${givenWhenSecondOpened} bytes of the first`);
  });

  test("a client that leaves: the stream opened ahead is destroyed too, none after it is opened", {
    timeout: 10_000,
  }, async () => {
    const first = new PassThrough();
    first.write(randomBytes(2000)); // then nothing more
    const second = new PassThrough();
    second.write(randomBytes(2000));
    const opened: number[] = [];
    const got = await serve(
      [
        {
          kind: "stream",
          stream: async () => {
            opened.push(0);
            return first;
          },
          length: 100_000,
        },
        {
          kind: "stream",
          stream: async () => {
            opened.push(1);
            return second;
          },
          length: 100_000,
        },
        {
          kind: "stream",
          stream: async () => {
            opened.push(2);
            return new PassThrough();
          },
          length: 100_000,
        },
      ],
      1,
    );
    assert.equal(got.written.status, "fulfilled", "a client leaving is no failure");
    assert.deepEqual(opened, [0, 1]);
    assert.equal(first.destroyed, true);
    // Destroyed once its open settled (here at once); nothing holds its connection.
    await waitFor(
      () => second.destroyed,
      (destroyed) => destroyed,
    );
  });

  test("a stream opened ahead that fails while it waits is opened again in its turn", async () => {
    const a = randomBytes(20_000);
    const b = randomBytes(20_000);
    const first = new PassThrough();
    first.write(a.subarray(0, 5000));
    let opens = 0;
    const got = await serve([
      {
        kind: "stream",
        stream: async () => first,
        length: a.length,
      },
      {
        kind: "stream",
        stream: async () => {
          opens += 1;
          if (opens > 1) return Readable.from([b]);
          const early = new PassThrough();
          early.write(b.subarray(0, 100));
          setImmediate(() => {
            // The store's idle timeout while it waited: an 'error' nobody reads yet.
            early.destroy(new Error("socket timed out"));
            first.end(a.subarray(5000));
          });
          return early;
        },
        length: b.length,
      },
    ]);
    assert.equal(got.written.status, "fulfilled");
    assert.equal(got.complete, true);
    assert.ok(got.body.equals(Buffer.concat([a, b])));
    assert.equal(opens, 2);
  });
});
