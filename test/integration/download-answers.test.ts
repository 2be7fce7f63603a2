/**
 * One answer for one state, one type for one kind of file: a signed link used after the retention
 * sweep answers as the API does (410 export_expired), and both object stores serve each format ×
 * compression with the same Content-Type.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { HeadObjectCommand, S3Client } from "@aws-sdk/client-s3";
import { contentTypeOf } from "../../src/object-store/content-type.js";
import { fetchLink, injectClient, signLocalLink } from "../helpers/inject-client.js";
import { startTestS3, type TestS3 } from "../helpers/s3.js";
import { pastMidnight, startTestService, type TestService } from "../helpers/service.js";

const HOUR = 3_600_000;
const DAY = 24 * HOUR;

const oneHour = () => {
  const to = pastMidnight();
  return { dataset: "events", from: new Date(to - HOUR).toISOString(), to: new Date(to).toISOString() };
};

describe("a signed link after the retention sweep", () => {
  let now = Date.now();
  let svc: TestService;
  before(async () => {
    svc = await startTestService(
      { EXPORTD_RETENTION_DAYS: "7", EXPORTD_SWEEP_INTERVAL_SECONDS: "3600" },
      () => now,
    );
  });
  after(() => svc.dispose());

  test("answers 410 export_expired on /files, as the download route does; a forgotten export 404", async () => {
    const api = injectClient(svc, await svc.key("acme"));
    const done = await api.run(oneHour());
    assert.equal(done.status, "succeeded");
    // A link signed a minute before the export expires is still valid after the sweep.
    now = Date.parse(done.expires_at!) - 60_000;
    const url = (await api.get(done.id)).parts[0]!.url!;
    assert.equal((await fetchLink(svc, url)).statusCode, 200);
    now += 2 * 60_000;
    await svc.sweeper!.sweepOnce();
    assert.equal((await api.get(done.id)).status, "expired");

    const viaLink = await fetchLink(svc, url);
    const viaApi = await api.download(done.id);
    assert.equal(viaLink.statusCode, 410, viaLink.body);
    assert.equal(viaLink.json().error.code, "export_expired");
    assert.equal(viaApi.statusCode, viaLink.statusCode);
    assert.equal(viaApi.json().error.code, viaLink.json().error.code);

    // Once the export itself is forgotten, nothing is known about the file: 404, as the API answers.
    now += 180 * DAY;
    await svc.sweeper!.sweepOnce();
    const key = decodeURIComponent(new URL(url).pathname).replace("/files/", "");
    const fresh = await signLocalLink(svc, key, done.parts[0]!.filename, 1200, now);
    const forgotten = await fetchLink(svc, fresh.url);
    assert.equal(forgotten.statusCode, 404, forgotten.body);
    assert.equal(forgotten.json().error.code, "not_found");
    assert.equal((await api.download(done.id)).statusCode, 404);
  });

  test("a validly signed link to a key no export ever had answers 404 not_found", async () => {
    const key = "exports/nobody/0190f5e4-0000-7000-8000-000000000000/part-000.a1.csv.gz";
    const link = await signLocalLink(svc, key, "x.csv.gz", 1200, now);
    const res = await fetchLink(svc, link.url);
    assert.equal(res.statusCode, 404);
    assert.equal(res.json().error.code, "not_found");
  });
});

describe("the signed links of a disabled or deleted tenant", () => {
  let now = Date.now();
  let svc: TestService;
  before(async () => {
    svc = await startTestService({}, () => now);
  });
  after(() => svc.dispose());

  test("are refused within the tenant cache's second: 403 tenant_disabled, 200 again once enabled, 404 once deleted", async () => {
    const api = injectClient(svc, await svc.key("paused-co"));
    const other = injectClient(svc, await svc.key("active-co"));
    const done = await api.run({ ...oneHour(), archive: "zip" });
    const kept = await other.run(oneHour());
    assert.equal(done.status, "succeeded");
    const view = await api.get(done.id);
    const links = [view.parts[0]!.url!, view.archive!.url!];
    const otherLink = (await other.get(kept.id)).parts[0]!.url!;
    for (const url of links) assert.equal((await fetchLink(svc, url)).statusCode, 200, url);

    const stamp = () => ({ actor: "test", at: now });
    assert.ok(await svc.store.setTenantDisabled("paused-co", true, stamp()));
    now += 2_000;
    for (const url of links) {
      const res = await fetchLink(svc, url);
      assert.equal(res.statusCode, 403, res.body);
      assert.equal(res.json().error.code, "tenant_disabled");
      assert.doesNotMatch(res.body, /paused-co/);
      // Without a valid signature the tenant's state is not told: the link is refused as altered.
      const altered = await fetchLink(svc, url.replace(/signature=[^&]+/, "signature=AAAA"));
      assert.equal(altered.json().error.code, "invalid_signature");
    }
    assert.equal((await fetchLink(svc, otherLink)).statusCode, 200, "another tenant's links work");

    assert.ok(await svc.store.setTenantDisabled("paused-co", false, stamp()));
    now += 2_000;
    for (const url of links) assert.equal((await fetchLink(svc, url)).statusCode, 200, url);

    // The tenant's rows gone while its files are still on disk (the delete removes the files
    // first; a part a worker was writing can outlive them): not found, never served.
    assert.ok(await svc.store.deleteTenant("paused-co", stamp()));
    now += 2_000;
    for (const url of links) {
      const res = await fetchLink(svc, url);
      assert.equal(res.statusCode, 404, res.body);
      assert.equal(res.json().error.code, "not_found");
    }
    assert.equal((await fetchLink(svc, otherLink)).statusCode, 200);
  });
});

const COMBINATIONS = [
  { format: "csv", compression: "gzip", type: "application/gzip" },
  { format: "csv", compression: "none", type: "text/csv; charset=utf-8" },
  { format: "jsonl", compression: "gzip", type: "application/gzip" },
  { format: "jsonl", compression: "none", type: "application/x-ndjson" },
] as const;

describe("both object stores serve one Content-Type per kind of file", () => {
  let s3: TestS3;
  let local: TestService;
  let remote: TestService;
  before(async () => {
    s3 = await startTestS3();
    local = await startTestService();
    remote = await startTestService(s3.env);
  });
  after(async () => {
    await local?.dispose();
    await remote?.dispose();
    await s3?.stop();
  });

  for (const { format, compression, type } of COMBINATIONS) {
    test(`${format} × ${compression} → ${type} on local storage and on S3`, async () => {
      assert.equal(contentTypeOf(`x.${format}${compression === "gzip" ? ".gz" : ""}`), type);
      const body = { ...oneHour(), format, compression };

      const localApi = injectClient(local, await local.key("acme"));
      const onDisk = await localApi.run(body);
      assert.equal(onDisk.status, "succeeded");
      const localRes = await fetchLink(local, onDisk.parts[0]!.url!);
      assert.equal(localRes.statusCode, 200);
      assert.equal(localRes.headers["content-type"], type);

      const remoteApi = injectClient(remote, await remote.key("acme"));
      const inS3 = await remoteApi.run(body);
      assert.equal(inS3.status, "succeeded");
      const s3Res = await fetch(inS3.parts[0]!.url!);
      assert.equal(s3Res.status, 200);
      await s3Res.arrayBuffer();
      assert.equal(s3Res.headers.get("content-type"), type, "the presigned link's type");
      // The object's own type too, for clients that read the bucket without the link.
      const sdk = new S3Client({
        region: s3.settings.region,
        endpoint: s3.settings.endpoint!,
        forcePathStyle: true,
        credentials: { accessKeyId: "S3RVER", secretAccessKey: "S3RVER" },
      });
      try {
        const key = decodeURIComponent(new URL(inS3.parts[0]!.url!).pathname).replace(
          `/${s3.settings.bucket}/`,
          "",
        );
        const head = await sdk.send(new HeadObjectCommand({ Bucket: s3.settings.bucket, Key: key }));
        assert.equal(head.ContentType, type, "the stored object's type");
      } finally {
        sdk.destroy();
      }
    });
  }
});
