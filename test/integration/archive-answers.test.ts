/**
 * The zip archive's answers in process: a single-dataset export asks for `"archive": "zip"` and gets
 * one (manifest + its part, checked by unzip); without it there is none (status null, 404 on the
 * download route and on a forged archive link signed for it); another tenant's key cannot reach it;
 * after the retention sweep the archive link answers 410 export_expired like a part's; a list of
 * datasets holds each once.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { archiveKey } from "../../src/domain/naming.js";
import { fetchLink, injectClient, signLocalLink } from "../helpers/inject-client.js";
import { pastMidnight, startTestService, type TestService, tempDir } from "../helpers/service.js";

const HOUR = 3_600_000;

describe("archive answers", () => {
  let now = Date.now();
  let svc: TestService;
  const dir = tempDir("exportd-archive-answers-");
  before(async () => {
    svc = await startTestService(
      { EXPORTD_RETENTION_DAYS: "7", EXPORTD_SWEEP_INTERVAL_SECONDS: "3600" },
      () => now,
    );
  });
  after(async () => {
    await svc.dispose();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  const client = (key: string) => injectClient(svc, key);
  const to = pastMidnight();
  const oneHour = {
    dataset: "events",
    from: new Date(to - HOUR).toISOString(),
    to: new Date(to).toISOString(),
  };

  test("a single-dataset export with archive zip: manifest and its part, unzip accepts it, Range works", async () => {
    const api = client(await svc.key("acme"));
    const done = await api.run({ ...oneHour, archive: "zip", part_max_rows: 1000 });
    assert.equal(done.status, "succeeded");
    assert.equal(done.parts.length, 2);
    assert.deepEqual(
      done.manifest?.datasets[0]?.parts.map((p) => p.path),
      ["events/part-000.csv.gz", "events/part-001.csv.gz"],
    );
    const res = await fetchLink(svc, done.archive?.url as string);
    assert.equal(res.statusCode, 200);
    assert.equal(res.rawPayload.length, done.archive?.bytes);
    const file = path.join(dir, "one.zip");
    fs.writeFileSync(file, res.rawPayload);
    assert.match(execFileSync("unzip", ["-t", file], { encoding: "utf8" }), /No errors detected/);
    const middle = await fetchLink(svc, done.archive?.url as string, { range: "bytes=100-199" });
    assert.equal(middle.statusCode, 206);
    assert.equal(middle.headers["content-range"], `bytes 100-199/${done.archive?.bytes}`);
    assert.ok(middle.rawPayload.equals(res.rawPayload.subarray(100, 200)));
    // An If-Range naming another version is served whole.
    const stale = await fetchLink(svc, done.archive?.url as string, {
      range: "bytes=100-199",
      "if-range": '"zip-old"',
    });
    assert.equal(stale.statusCode, 200);
    assert.equal(stale.rawPayload.length, done.archive?.bytes);

    // Another tenant's key does not see the export at all.
    const other = client(await svc.key("globex"));
    assert.equal((await other.inject(`/v1/exports/${done.id}/download?archive=zip`)).statusCode, 404);

    // Past retention: the link answers as the API does.
    now = Date.parse(done.expires_at as string) + 60_000;
    const fresh = await api.inject(`/v1/exports/${done.id}/download?archive=zip&redirect=false`);
    assert.equal(fresh.statusCode, 200, "the link is handed out until the sweep");
    await svc.sweeper!.sweepOnce();
    const expired = await fetchLink(svc, fresh.json().url);
    assert.equal(expired.statusCode, 410, expired.body);
    assert.equal(expired.json().error.code, "export_expired");
    now = Date.now();
  });

  test("If-Match and If-Unmodified-Since hold an archive to its version, as they hold a part (412)", async () => {
    const api = client(await svc.key("acme"));
    const done = await api.run({ ...oneHour, archive: "zip" });
    assert.equal(done.status, "succeeded");
    const whole = await fetchLink(svc, done.archive?.url as string);
    const etag = whole.headers.etag as string;
    const modified = whole.headers["last-modified"] as string;
    const long = "Mon, 01 Jan 2001 00:00:00 GMT";
    for (const [url, what] of [
      [done.parts[0]?.url as string, "part"],
      [done.archive?.url as string, "archive"],
    ] as const) {
      const refused: Record<string, string>[] = [
        { "if-match": '"zip-another-version"' },
        { "if-match": '"zip-another-version"', range: "bytes=0-9" },
        { "if-unmodified-since": long },
        { "if-unmodified-since": long, range: "bytes=0-9" },
      ];
      for (const headers of refused) {
        const res = await fetchLink(svc, url, headers);
        assert.equal(res.statusCode, 412, `${what} ${JSON.stringify(headers)}: ${res.body.slice(0, 200)}`);
        assert.equal(res.json().error.code, "precondition_failed");
      }
    }
    // The archive's own tag and date (or *) let it through; If-Match wins over If-Unmodified-Since.
    const passed: Record<string, string>[] = [
      { "if-match": etag },
      { "if-match": `"zip-x", ${etag}` },
      { "if-match": "*" },
      { "if-unmodified-since": modified },
      { "if-match": etag, "if-unmodified-since": long },
      { "if-unmodified-since": "not a date" },
    ];
    for (const headers of passed) {
      const res = await fetchLink(svc, done.archive?.url as string, { ...headers, range: "bytes=0-9" });
      assert.equal(res.statusCode, 206, `${JSON.stringify(headers)}: ${res.body.slice(0, 200)}`);
      assert.ok(res.rawPayload.equals(whole.rawPayload.subarray(0, 10)));
    }
  });

  test("without archive: none in the status, 404 on the download route and on a link signed for it", async () => {
    const api = client(await svc.key("acme"));
    const done = await api.run(oneHour);
    assert.equal(done.status, "succeeded");
    assert.equal(done.archive, null);
    assert.equal(done.manifest, null);
    const route = await api.inject(`/v1/exports/${done.id}/download?archive=zip`);
    assert.equal(route.statusCode, 404);
    assert.equal(route.json().error.code, "not_found");
    const tenant = (await svc.store.findTenantByName("acme"))?.id as string;
    const link = await signLocalLink(svc, archiveKey(tenant, done.id), "x.zip", 600, now);
    const forged = await fetchLink(svc, link.url);
    assert.equal(forged.statusCode, 404);
    assert.equal(forged.json().error.code, "not_found");
  });

  test("a list of datasets holds each once; a list of one is zipped by default", async () => {
    const api = client(await svc.key("acme"));
    const twice = await svc.app!.inject({
      method: "POST",
      url: "/v1/exports",
      headers: { authorization: `Bearer ${await svc.key("acme")}` },
      payload: { datasets: [{ name: "events" }, { name: "events" }], from: oneHour.from, to: oneHour.to },
    });
    assert.equal(twice.statusCode, 400);
    assert.equal(twice.json().error.details[0].code, "duplicate_dataset");
    const single = await api.run({
      datasets: [{ name: "events", columns: ["id", "type"] }],
      from: oneHour.from,
      to: oneHour.to,
    });
    assert.equal(single.status, "succeeded");
    assert.ok(single.archive?.url, "a list of one dataset is zipped by default");
    assert.deepEqual(
      single.parts.map((p) => p.dataset),
      ["events"],
    );
  });
});
