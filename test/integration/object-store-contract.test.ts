/**
 * One contract, every object store: the local folder and S3 (a real S3-compatible server) must
 * behave the same, or one of them drifts. Plus what only S3 does: presigned links.
 */
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import type { Readable } from "node:stream";
import { finished } from "node:stream/promises";
import { after, before, describe, test } from "node:test";
import { LocalObjectStore } from "../../src/object-store/local.js";
import { S3ObjectStore } from "../../src/object-store/s3.js";
import { LinkSigner } from "../../src/object-store/signing.js";
import type { ObjectStore } from "../../src/object-store/types.js";
import { startTestS3, type TestS3 } from "../helpers/s3.js";
import { tempDir } from "../helpers/service.js";

async function put(store: ObjectStore, key: string, body: Buffer): Promise<void> {
  const upload = await store.upload(key);
  upload.stream.end(body);
  await upload.commit();
}

let s3: TestS3;
before(async () => {
  s3 = await startTestS3();
});
after(() => s3.stop());

const adapters: [string, () => ObjectStore][] = [
  ["local", () => new LocalObjectStore(tempDir(), new LinkSigner("k".repeat(32)), "http://localhost")],
  ["s3", () => new S3ObjectStore(s3.settings)],
];

for (const [name, make] of adapters) {
  describe(`object store contract: ${name}`, () => {
    let store: ObjectStore;
    const prefix = `exports/t-${name}/e1/`;
    before(() => {
      store = make();
    });
    after(() => store.close());

    test("ping", async () => {
      await store.ping();
    });

    test("a committed upload is listed under its prefix; others are not", async () => {
      await put(store, `${prefix}part-000.a1.csv.gz`, Buffer.from("hello"));
      await put(store, `exports/t-${name}/e2/part-000.a1.csv.gz`, Buffer.from("other"));
      assert.deepEqual(await store.list(prefix), [`${prefix}part-000.a1.csv.gz`]);
    });

    test("an upload is invisible until committed; abort leaves nothing", async () => {
      const upload = await store.upload(`${prefix}part-001.a1.csv.gz`);
      upload.stream.write(randomBytes(1024));
      assert.deepEqual(await store.list(prefix), [`${prefix}part-000.a1.csv.gz`]);
      await upload.abort();
      assert.deepEqual(await store.list(prefix), [`${prefix}part-000.a1.csv.gz`]);
    });

    test("a large upload (several multipart chunks) arrives whole", async () => {
      const body = randomBytes(20 * 1024 * 1024 + 123);
      const key = `${prefix}part-002.a1.csv.gz`;
      const upload = await store.upload(key);
      for (let i = 0; i < body.length; i += 1 << 20) {
        if (!upload.stream.write(body.subarray(i, i + (1 << 20)))) {
          await new Promise((r) => upload.stream.once("drain", r));
        }
      }
      upload.stream.end();
      await finished(upload.stream);
      await upload.commit();
      assert.ok((await store.list(prefix)).includes(key));
    });

    test("an abandoned upload in flight is dropped and never listed", async () => {
      const key = `${prefix}part-003.a1.csv.gz`;
      const upload = await store.upload(key);
      // More than one multipart chunk, so S3 really holds an unfinished upload.
      upload.stream.write(randomBytes(9 * 1024 * 1024));
      await new Promise((r) => setTimeout(r, 500));
      await store.dropIncompleteUploads(prefix);
      assert.equal((await store.list(prefix)).includes(key), false);
      await upload.abort();
    });

    test("delete removes one object; deletePrefix removes everything under the prefix only", async () => {
      await store.delete(`${prefix}part-002.a1.csv.gz`);
      assert.deepEqual(await store.list(prefix), [`${prefix}part-000.a1.csv.gz`]);
      await store.deletePrefix(prefix);
      assert.deepEqual(await store.list(prefix), []);
      assert.deepEqual(await store.list(`exports/t-${name}/e2/`), [
        `exports/t-${name}/e2/part-000.a1.csv.gz`,
      ]);
    });

    describe("openRange", () => {
      const key = `exports/t-${name}/range/part-000.a1.csv.gz`;
      const body = randomBytes(3 * 1024 * 1024 + 17);
      const read = async (stream: Readable): Promise<Buffer> => {
        const chunks: Buffer[] = [];
        for await (const chunk of stream) chunks.push(chunk as Buffer);
        return Buffer.concat(chunks);
      };
      before(() => put(store, key, body));

      test("answers exactly the bytes asked: whole, first, last, a middle run", async () => {
        for (const [start, end] of [
          [0, body.length - 1],
          // Not [0, 0]: s3rver reads `bytes=0-0` as `bytes=0-` (real S3 does not); openRange
          // refuses its answer as the wrong length, which is right but no contract of the store.
          [0, 9],
          [body.length - 1, body.length - 1],
          [1_000_003, 2_500_000],
        ] as const) {
          const got = await read(await store.openRange(key, start, end));
          assert.equal(got.length, end - start + 1, `${start}-${end}`);
          assert.ok(got.equals(body.subarray(start, end + 1)), `${start}-${end}`);
        }
      });

      test("a missing object rejects as missing; a range past the end is refused", async () => {
        await assert.rejects(
          store.openRange(`exports/t-${name}/range/nope.csv.gz`, 0, 9),
          (err: { code?: string; name?: string }) => err.code === "ENOENT" || err.name === "NoSuchKey",
        );
        await assert.rejects(async () =>
          read(await store.openRange(key, body.length - 10, body.length + 10)),
        );
      });

      test("streams left after their first chunk free their connection or file (60 in a row, then one more)", {
        timeout: 20_000,
      }, async () => {
        // The S3 client holds at most 50 sockets: a leaked one per stream would hang the 51st read.
        for (let i = 0; i < 60; i++) {
          const stream = await store.openRange(key, 0, body.length - 1);
          await new Promise<void>((resolve, reject) => {
            stream.once("data", () => resolve());
            stream.once("error", reject);
          });
          stream.destroy();
        }
        const abort = new AbortController();
        const stream = await store.openRange(key, 10, 1_000_009, abort.signal);
        const closed = new Promise((resolve) => stream.once("close", resolve));
        abort.abort();
        await closed;
        assert.equal(stream.destroyed, true, "aborting the signal destroys the stream");
        const last = await read(await store.openRange(key, 10, 19));
        assert.ok(last.equals(body.subarray(10, 20)));
      });
    });

    test("signed links expire when asked", async () => {
      const now = Date.now();
      const link = await store.signedLink(`${prefix}x`, "x.csv", 1200, now);
      assert.equal(link.expiresAt, Math.floor(now / 1000) * 1000 + 1_200_000);
      assert.match(link.url, /^http/);
    });
  });
}

describe("S3 presigned links", () => {
  test("a presigned link downloads the part with its file name, then expires", async () => {
    const store = new S3ObjectStore(s3.settings);
    try {
      const body = randomBytes(100_000);
      const key = "exports/t/e/part-000.a1.csv.gz";
      await put(store, key, body);
      const link = await store.signedLink(key, "events_2026-11-01_2026-11-02.part-000.csv.gz", 2, Date.now());
      const res = await fetch(link.url);
      assert.equal(res.status, 200);
      assert.match(
        String(res.headers.get("content-disposition")),
        /events_2026-11-01_2026-11-02\.part-000\.csv\.gz/,
      );
      const got = Buffer.from(await res.arrayBuffer());
      assert.equal(
        createHash("sha256").update(got).digest("hex"),
        createHash("sha256").update(body).digest("hex"),
      );
      await new Promise((r) => setTimeout(r, 3100));
      assert.equal((await fetch(link.url)).status, 403, "expired");
    } finally {
      await store.close();
    }
  });
});
