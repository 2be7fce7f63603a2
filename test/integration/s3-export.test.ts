/** Exports stored in S3 (a real S3-compatible server): presigned downloads, and the server dying mid-upload. */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { after, before, test } from "node:test";
import { gunzipSync } from "node:zlib";
import { S3ObjectStore } from "../../src/object-store/s3.js";
import { injectClient, isSettled } from "../helpers/inject-client.js";
import { startTestS3, type TestS3 } from "../helpers/s3.js";
import { pastMidnight, startTestService, type TestService, waitFor } from "../helpers/service.js";

let s3: TestS3;
before(async () => {
  s3 = await startTestS3();
});
after(() => s3.stop());

interface View {
  id: string;
  status: string;
  attempts: number;
  error: { code: string; retryable: boolean } | null;
  parts: { rows: number; sha256: string; bytes: number; url: string; filename: string }[];
}

async function run(svc: TestService, body: Record<string, unknown>): Promise<View> {
  return injectClient<View>(svc, await svc.key("acme")).run(body);
}

test("an export lands in S3; the download redirects to a presigned link that needs no key", async () => {
  const svc = await startTestService(s3.env);
  try {
    const to = pastMidnight();
    const done = await run(svc, {
      dataset: "events",
      from: new Date(to - 6 * 3_600_000).toISOString(),
      to: new Date(to).toISOString(),
      part_max_rows: 4000,
    });
    assert.equal(done.status, "succeeded");
    assert.deepEqual(
      done.parts.map((p) => p.rows),
      [4000, 4000, 2800],
    );
    for (const part of done.parts) {
      assert.ok(part.url.startsWith(s3.settings.endpoint!), part.url);
      const res = await fetch(part.url);
      assert.equal(res.status, 200);
      assert.match(
        String(res.headers.get("content-disposition")),
        new RegExp(part.filename.replaceAll(".", "\\.")),
      );
      const bytes = Buffer.from(await res.arrayBuffer());
      assert.equal(createHash("sha256").update(bytes).digest("hex"), part.sha256);
      assert.equal(gunzipSync(bytes).toString().trimEnd().split("\r\n").length, part.rows + 1);
    }
    const store = new S3ObjectStore(s3.settings);
    const keys = await store.list("exports/");
    await store.close();
    assert.equal(keys.filter((k) => k.includes(done.id)).length, 3, "exactly the published parts");
  } finally {
    await svc.dispose();
  }
});

test("the S3 server stays down past the retry budget: retries, then a clear failure, and no partial part", async () => {
  const svc = await startTestService({
    ...s3.env,
    EXPORTD_MAX_ATTEMPTS: "2",
    EXPORTD_RETRY_BASE_MS: "200",
    // Each attempt rides out the outage for one second only, then fails.
    EXPORTD_STORAGE_RETRY_SECONDS: "1",
    EXPORTD_WORKER_CONCURRENCY: "1",
  });
  try {
    const headers = { authorization: `Bearer ${await svc.key("acme")}` };
    const to = pastMidnight();
    const created = await svc.app!.inject({
      method: "POST",
      url: "/v1/exports",
      headers,
      payload: {
        dataset: "events",
        from: new Date(to - 30 * 86_400_000).toISOString(),
        to: new Date(to).toISOString(),
        compression: "none",
        part_max_rows: 300_000,
      },
    });
    const id = created.json().id as string;
    const get = async () =>
      (await svc.app!.inject({ method: "GET", url: `/v1/exports/${id}`, headers })).json() as View;
    await waitFor(get, (e) => e.status === "running", 30_000);
    await new Promise((r) => setTimeout(r, 300)); // well into the first part's upload
    await s3.pause();
    let done: View;
    try {
      done = await waitFor(get, isSettled, 90_000);
    } finally {
      await s3.resume();
    }
    assert.equal(done.status, "failed");
    assert.equal(done.error?.code, "storage_error");
    assert.equal(done.error?.retryable, true, "a system error: retrying later may work");
    assert.equal(done.attempts, 2);
    assert.deepEqual(done.parts, []);
    const store = new S3ObjectStore(s3.settings);
    const left = (await store.list("exports/")).filter((k) => k.includes(id));
    await store.close();
    assert.deepEqual(left, [], "nothing partial listed");
  } finally {
    await svc.dispose();
  }
});
