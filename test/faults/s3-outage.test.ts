/**
 * The S3 server (s3rver) stops for about ten seconds and comes back on the same port while exports
 * run: they wait it out (back-off, resuming from their last published part) and succeed on their
 * first attempt, each part whole (sha256 and rows checked by downloading it); an export canceled
 * during the outage loses its files once the server is back (the sweeper retries the purge).
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { after, before, test } from "node:test";
import { gunzipSync } from "node:zlib";
import { S3ObjectStore } from "../../src/object-store/s3.js";
import { startTestS3, type TestS3 } from "../helpers/s3.js";
import { pastMidnight, startTestService, type TestService, waitFor } from "../helpers/service.js";

interface View {
  id: string;
  status: string;
  attempts: number;
  progress: { parts: number };
  error: { code: string } | null;
  parts: { index: number; rows: number; sha256: string; bytes: number; url: string }[];
}

let s3: TestS3;
let svc: TestService;
before(async () => {
  s3 = await startTestS3("outage");
  svc = await startTestService({
    ...s3.env,
    EXPORTD_WORKER_CONCURRENCY: "3",
    EXPORTD_LEASE_SECONDS: "3",
    EXPORTD_STORAGE_RETRY_SECONDS: "120",
    EXPORTD_SWEEP_INTERVAL_SECONDS: "0.5",
  });
});
after(async () => {
  await svc?.dispose();
  await s3?.stop();
});

const DAY = 86_400_000;
const sha256 = (bytes: Buffer) => createHash("sha256").update(bytes).digest("hex");
const isFinal = (e: View) => e.status !== "queued" && e.status !== "running";

test("a 10 s S3 outage mid-export: exports ride it out on their first attempt; a cancel during it is purged after", async (t) => {
  await svc.store.ensureTenant("acme", Date.now());
  await svc.store.updateTenant("acme", { overrides: { maxRunning: 3 } });
  const headers = { authorization: `Bearer ${await svc.key("acme")}` };
  const get = async (id: string) =>
    (await svc.app!.inject({ method: "GET", url: `/v1/exports/${id}`, headers })).json() as View;
  const to = pastMidnight();
  const days = 12;
  const ids: string[] = [];
  for (let i = 0; i < 3; i++) {
    const created = await svc.app!.inject({
      method: "POST",
      url: "/v1/exports",
      headers,
      payload: {
        dataset: "events",
        from: new Date(to - (days + i) * DAY).toISOString(),
        to: new Date(to - i * DAY).toISOString(),
        part_max_rows: 40_000,
      },
    });
    assert.equal(created.statusCode, 202, created.body);
    ids.push(created.json().id as string);
  }
  const [keep1, keep2, doomed] = ids as [string, string, string];

  // Stop the server once every export has published a part and is still writing.
  await waitFor(
    () => Promise.all(ids.map(get)),
    (views) => views.every((v) => isFinal(v) || v.progress.parts >= 1),
    60_000,
  );
  await s3.pause();
  const down = Date.now();
  const atPause = await Promise.all(ids.map(get));
  for (const v of atPause) assert.equal(v.status, "running", `${v.id} was still running when S3 stopped`);
  t.diagnostic(`S3 stopped with ${atPause.map((v) => v.progress.parts).join("/")} parts published`);

  const canceled = await svc.app!.inject({ method: "POST", url: `/v1/exports/${doomed}/cancel`, headers });
  assert.equal(canceled.statusCode, 200, `a cancel during the outage still answers: ${canceled.body}`);

  await new Promise((r) => setTimeout(r, 10_000));
  const duringOutage = await Promise.all([keep1, keep2].map(get));
  for (const v of duringOutage)
    assert.equal(v.status, "running", `${v.id} waits, neither failed nor requeued`);
  await s3.resume();
  const up = Date.now();
  // How long until the runs notice: the first part published after the server is back.
  await waitFor(
    () => Promise.all([keep1, keep2].map(get)),
    (vs) => vs.some((v, i) => isFinal(v) || v.progress.parts > (duringOutage[i] as View).progress.parts),
    30_000,
  );
  const firstPartAfter = Date.now() - up;

  const done = await waitFor(
    () => Promise.all([keep1, keep2].map(get)),
    (vs) => vs.every(isFinal),
    90_000,
  );
  const metrics = (await svc.app!.inject({ url: "/metrics" })).body;
  const retries = Number(/^exportd_storage_retries_total (\d+)/m.exec(metrics)?.[1]);
  t.diagnostic(
    `outage ${((up - down) / 1000).toFixed(1)} s; ${retries} storage retries; first part ${(firstPartAfter / 1000).toFixed(1)} s and all done ${((Date.now() - up) / 1000).toFixed(1)} s after S3 came back`,
  );
  assert.ok(retries >= 2, `the runs waited and retried (${retries})`);
  assert.match(metrics, /^exportd_lease_takeovers_total 0$/m, "the heartbeat kept the leases while waiting");

  const rowsPerDay = DAY / 2000; // one demo event per 2-second slot
  const store = new S3ObjectStore(s3.settings);
  try {
    for (const v of done) {
      assert.equal(v.status, "succeeded", `${v.id}: ${JSON.stringify(v.error)}`);
      assert.equal(v.attempts, 1, "the outage used up no attempt");
      assert.deepEqual(
        v.parts.map((p) => p.index),
        v.parts.map((_, i) => i),
      );
      let rows = 0;
      for (const p of v.parts) {
        const res = await fetch(p.url);
        assert.equal(res.status, 200);
        const bytes = Buffer.from(await res.arrayBuffer());
        assert.equal(sha256(bytes), p.sha256, `${v.id} part ${p.index}`);
        assert.equal(gunzipSync(bytes).toString().trimEnd().split("\r\n").length, p.rows + 1);
        rows += p.rows;
      }
      assert.equal(rows, days * rowsPerDay, "every row once");
      const keys = (await store.list("exports/")).filter((k) => k.includes(v.id)).sort();
      assert.deepEqual(keys.length, v.parts.length, `the bucket holds exactly the published parts: ${keys}`);
    }
    // The canceled export's parts go once the sweeper's retry reaches a working S3.
    const left = await waitFor(
      async () => (await store.list("exports/")).filter((k) => k.includes(doomed)),
      (keys) => keys.length === 0,
      30_000,
    );
    assert.deepEqual(left, []);
    assert.equal((await get(doomed)).status, "canceled");
  } finally {
    await store.close();
  }
});
