/**
 * Exports run by the in-process worker on a real SQLite file and local storage, downloaded through
 * the signed-link route: parts, formats, filters, time zones, retention and forgetting.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { gunzipSync } from "node:zlib";
import { parse } from "csv-parse/sync";
import type { Export } from "../../clients/typescript/src/index.js";
import { fetchLink, type InjectClient, injectClient } from "../helpers/inject-client.js";
import { pastMidnight, startTestService, type TestService, waitFor } from "../helpers/service.js";

const HOUR = 3_600_000;
const DAY = 24 * HOUR;

describe("export flow", () => {
  let svc: TestService;
  let h: InjectClient;
  const to = pastMidnight();

  before(async () => {
    svc = await startTestService();
    h = injectClient(svc, await svc.key("acme"));
  });
  after(() => svc.dispose());

  test("csv.gz in several parts: each part whole, with header, sha256 and row count as stated", async () => {
    const created = await h.create({
      dataset: "events",
      from: new Date(to - 6 * HOUR).toISOString(),
      to: new Date(to).toISOString(),
      part_max_rows: 3000,
    });
    const done = await h.settled(created.id);
    assert.equal(done.status, "succeeded", JSON.stringify(done.error));
    // One event per 2-second slot: 6 hours hold 10,800 rows → 3000, 3000, 3000, 1800.
    assert.deepEqual(
      done.parts.map((p) => p.rows),
      [3000, 3000, 3000, 1800],
    );
    assert.equal(done.progress.rows, 10_800);
    assert.equal(done.progress.percent, 100);
    assert.equal(done.progress.estimated_rows, 10_800);
    const ids = new Set<string>();
    let lastTime = "";
    for (const part of done.parts) {
      assert.match(part.filename, /^events_\d{4}-\d{2}-\d{2}_\d{4}-\d{2}-\d{2}\.part-00\d\.csv\.gz$/);
      const res = await fetchLink(svc, part.url!);
      assert.equal(res.statusCode, 200);
      const bytes = res.rawPayload;
      assert.equal(bytes.length, part.bytes);
      assert.equal(createHash("sha256").update(bytes).digest("hex"), part.sha256);
      assert.ok(String(res.headers["content-disposition"]).includes(part.filename));
      const records = parse(gunzipSync(bytes), { columns: true }) as Record<string, string>[];
      assert.equal(records.length, part.rows);
      for (const r of records) {
        assert.deepEqual(Object.keys(r), ["id", "occurred_at", "type", "user_id", "properties"]);
        JSON.parse(r.properties as string);
        assert.ok(r.occurred_at! >= lastTime, "ordered by time across parts");
        lastTime = r.occurred_at!;
        ids.add(r.id!);
      }
    }
    assert.equal(ids.size, 10_800, "no row twice, none lost at part boundaries");
  });

  test("download route: part required when several, out of range → 400, redirect=false → JSON link", async () => {
    const created = await h.create({
      dataset: "events",
      from: new Date(to - HOUR).toISOString(),
      to: new Date(to).toISOString(),
      part_max_rows: 1000,
    });
    const done = await h.settled(created.id);
    assert.equal(done.parts.length, 2);
    const missing = await h.download(done.id);
    assert.equal(missing.statusCode, 400);
    assert.equal(missing.json().error.details[0].field, "part");
    assert.equal((await h.download(done.id, "?part=2")).statusCode, 400);
    const redirect = await h.download(done.id, "?part=1");
    assert.equal(redirect.statusCode, 302);
    assert.equal(redirect.headers["cache-control"], "no-store");
    const link = (await h.download(done.id, "?part=1&redirect=false")).json();
    assert.equal(link.part, 1);
    assert.equal(link.filename, done.parts[1]!.filename);
    const ttl = Date.parse(link.expires_at) - Date.now();
    assert.ok(ttl > 19 * 60_000 && ttl <= 20 * 60_000, `20-minute link, got ${ttl} ms`);
    const file = await fetchLink(svc, link.url);
    assert.equal(createHash("sha256").update(file.rawPayload).digest("hex"), done.parts[1]!.sha256);
  });

  test("jsonl, uncompressed, filtered and with chosen columns: every line is JSON with just those columns", async () => {
    const created = await h.create({
      dataset: "events",
      from: new Date(to - DAY).toISOString(),
      to: new Date(to).toISOString(),
      format: "jsonl",
      compression: "none",
      columns: ["occurred_at", "type", "properties"],
      filters: { type: ["purchase", "signup"] },
    });
    const done = await h.settled(created.id);
    assert.equal(done.status, "succeeded");
    const body = (await fetchLink(svc, done.parts[0]!.url!)).body;
    const lines = body.trimEnd().split("\n");
    assert.equal(lines.length, done.parts[0]!.rows);
    assert.ok(
      lines.length > 1000 && lines.length < 43_200 * 0.2,
      `about 15% of a day's events, got ${lines.length}`,
    );
    for (const line of lines) {
      const row = JSON.parse(line);
      assert.deepEqual(Object.keys(row), ["occurred_at", "type", "properties"]);
      assert.ok(row.type === "purchase" || row.type === "signup");
      assert.equal(typeof row.properties, "object", "JSON columns are embedded as JSON");
    }
  });

  test("timestamps carry the request's time zone offset; a date means midnight there", async () => {
    const created = await h.create({
      dataset: "events",
      from: "2026-03-08",
      to: "2026-03-09",
      timezone: "America/New_York",
      format: "jsonl",
      columns: ["occurred_at"],
    });
    const view = await h.get(created.id);
    assert.equal((view as unknown as { request: { from: string } }).request.from, "2026-03-08T05:00:00.000Z");
    const done = await h.settled(created.id);
    const lines = gunzipSync((await fetchLink(svc, done.parts[0]!.url!)).rawPayload)
      .toString()
      .trimEnd()
      .split("\n")
      .map((l) => JSON.parse(l).occurred_at as string);
    // The DST change at 02:00 local: -05:00 before, -04:00 after, and instants still in order.
    assert.match(lines[0]!, /^2026-03-08T00:00:0\d\.\d{3}-05:00$/);
    assert.match(lines[lines.length - 1]!, /^2026-03-08T23:59:5\d\.\d{3}-04:00$/);
    const instants = lines.map((l) => Date.parse(l));
    for (let i = 1; i < instants.length; i++) assert.ok(instants[i]! > instants[i - 1]!);
    assert.equal(lines.length, 23 * 1800, "a 23-hour day");
  });

  test("an empty result still yields one part: a CSV with just the header", async () => {
    const created = await h.create({
      dataset: "events",
      from: new Date(to - HOUR).toISOString(),
      to: new Date(to).toISOString(),
      filters: { user_id: "user_999999" },
      compression: "none",
      csv: { delimiter: ";", bom: true },
    });
    const done = await h.settled(created.id);
    assert.equal(done.status, "succeeded");
    assert.equal(done.parts.length, 1);
    assert.equal(done.parts[0]!.rows, 0);
    const body = (await fetchLink(svc, done.parts[0]!.url!)).rawPayload.toString("utf8");
    assert.equal(body, "\uFEFFid;occurred_at;type;user_id;properties\r\n");
  });

  test("Range requests and conditional GETs on a part", async () => {
    const created = await h.create({
      dataset: "events",
      from: new Date(to - HOUR).toISOString(),
      to: new Date(to).toISOString(),
    });
    const done = await h.settled(created.id);
    const url = done.parts[0]!.url!;
    const whole = (await fetchLink(svc, url)).rawPayload;
    const cut = Math.floor(whole.length / 3);
    const first = await fetchLink(svc, url, { range: `bytes=0-${cut - 1}` });
    const rest = await fetchLink(svc, url, { range: `bytes=${cut}-` });
    assert.equal(first.statusCode, 206);
    assert.equal(first.headers["content-range"], `bytes 0-${cut - 1}/${whole.length}`);
    assert.equal(rest.statusCode, 206);
    assert.ok(Buffer.concat([first.rawPayload, rest.rawPayload]).equals(whole));
    const etag = String((await fetchLink(svc, url)).headers.etag);
    assert.equal((await fetchLink(svc, url, { "if-none-match": etag })).statusCode, 304);
    const outside = await fetchLink(svc, url, { range: `bytes=${whole.length + 10}-` });
    assert.equal(outside.statusCode, 416);
    assert.equal(outside.json().error.code, "range_not_satisfiable");
    assert.equal(outside.headers["content-range"], `bytes */${whole.length}`);
    const mismatch = await fetchLink(svc, url, { "if-match": '"not-this-file"' });
    assert.equal(mismatch.statusCode, 412);
    assert.equal(mismatch.json().error.code, "precondition_failed");
  });

  test("tampered links → 403 invalid_signature; the file route never needs the API key", async () => {
    const created = await h.create({
      dataset: "events",
      from: new Date(to - HOUR).toISOString(),
      to: new Date(to).toISOString(),
    });
    const url = new URL((await h.settled(created.id)).parts[0]!.url!);
    const variants: string[] = [];
    const sig = url.searchParams.get("signature")!;
    const withParam = (name: string, value: string) => {
      const u = new URL(url);
      u.searchParams.set(name, value);
      return u.toString();
    };
    variants.push(withParam("signature", (sig[0] === "A" ? "B" : "A") + sig.slice(1)));
    variants.push(withParam("expires", String(Number(url.searchParams.get("expires")) + 3600)));
    variants.push(withParam("filename", "other.csv.gz"));
    variants.push(url.toString().replace("part-000", "part-001"));
    variants.push(url.toString().replace("/files/exports/", "/files/exports/../"));
    const noSig = new URL(url);
    noSig.searchParams.delete("signature");
    variants.push(noSig.toString());
    for (const v of variants) {
      const res = await fetchLink(svc, v);
      assert.equal(res.statusCode, 403, v);
      assert.equal(res.json().error.code, "invalid_signature", v);
    }
  });
});

describe("metrics", () => {
  test("/metrics counts exports by status, rows, bytes and parts", async () => {
    const svc = await startTestService();
    try {
      const h = injectClient(svc, await svc.key("acme"));
      const to = pastMidnight();
      const a = await h.create({
        dataset: "events",
        from: new Date(to - HOUR).toISOString(),
        to: new Date(to).toISOString(),
      });
      const b = await h.create({
        dataset: "events",
        from: new Date(to - 2 * HOUR).toISOString(),
        to: new Date(to).toISOString(),
        part_max_rows: 1000,
      });
      const done = [await h.settled(a.id), await h.settled(b.id)];
      // A run is counted once it has returned, after it wrote the final status: wait for the count.
      const metric = (text: string, name: string) =>
        Number(new RegExp(`^${name} (\\S+)$`, "m").exec(text)?.[1]);
      const text = await waitFor(
        async () => (await svc.app!.inject({ method: "GET", url: "/metrics" })).body,
        (t) => metric(t, 'exportd_export_run_seconds_count{outcome="succeeded"}') === 2,
      );
      const value = (name: string) => metric(text, name);
      assert.equal(value('exportd_exports{status="succeeded"}'), 2);
      assert.equal(value("exportd_queue_depth"), 0);
      const parts = done.flatMap((e) => e.parts);
      assert.equal(value("exportd_rows_exported_total"), 1800 + 3600);
      assert.equal(value("exportd_parts_published_total"), parts.length);
      assert.equal(
        value("exportd_bytes_exported_total"),
        parts.reduce((sum, p) => sum + p.bytes, 0),
      );
      assert.equal(value('exportd_export_run_seconds_count{outcome="succeeded"}'), 2);
      assert.match(text, /^exportd_process_resident_memory_bytes /m);
    } finally {
      await svc.dispose();
    }
  });
});

describe("links expire; retention deletes files; metadata is forgotten", () => {
  let now = Date.now();
  let svc: TestService;
  let h: InjectClient;

  before(async () => {
    svc = await startTestService(
      { EXPORTD_RETENTION_DAYS: "7", EXPORTD_SWEEP_INTERVAL_SECONDS: "3600" },
      () => now,
    );
    h = injectClient(svc, await svc.key("acme"));
  });
  after(() => svc.dispose());

  test("expired link → 403 link_expired; after retention → expired, 410, files gone; after 180 days → 404", async () => {
    const to = pastMidnight();
    const created = await h.create({
      dataset: "events",
      from: new Date(to - HOUR).toISOString(),
      to: new Date(to).toISOString(),
    });
    const done = await h.settled(created.id);
    assert.equal(done.status, "succeeded");
    assert.ok(Math.abs(Date.parse(done.expires_at!) - (now + 7 * DAY)) < 5000);
    const url = done.parts[0]!.url!;

    now += 21 * 60_000;
    const expired = await fetchLink(svc, url);
    assert.equal(expired.statusCode, 403);
    assert.equal(expired.json().error.code, "link_expired");
    // A fresh link from the API works again.
    assert.equal((await fetchLink(svc, (await h.get(done.id)).parts[0]!.url!)).statusCode, 200);

    now += 7 * DAY;
    await svc.sweeper!.sweepOnce();
    const after7 = await h.get(done.id);
    assert.equal(after7.status, "expired");
    assert.equal(after7.parts[0]!.url, null, "no link to a deleted file");
    assert.equal(after7.parts[0]!.sha256, done.parts[0]!.sha256, "the metadata stays");
    const gone = await h.download(done.id);
    assert.equal(gone.statusCode, 410);
    assert.equal(gone.json().error.code, "export_expired");
    const dir = path.join(svc.dataDir, "objects", path.dirname(new URL(url).pathname.replace("/files/", "")));
    assert.equal(fs.existsSync(dir), false, "files deleted");

    now += 180 * DAY;
    await svc.sweeper!.sweepOnce();
    const res = await svc.app!.inject({
      method: "GET",
      url: `/v1/exports/${done.id}`,
      headers: { authorization: `Bearer ${await svc.key("acme")}` },
    });
    assert.equal(res.statusCode, 404);
  });
});

describe("status reads of queued and running exports", () => {
  let svc: TestService;
  let h: InjectClient;
  const to = pastMidnight();

  before(async () => {
    // No worker: the test moves the exports itself, through the store.
    svc = await startTestService({ EXPORTD_ROLE: "api" });
    h = injectClient(svc, await svc.key("acme"));
  });
  after(() => svc.dispose());

  test("every change shows in the next read: queue place, claim, progress, parts, success", async () => {
    const request = {
      dataset: "events",
      from: new Date(to - HOUR).toISOString(),
      to: new Date(to).toISOString(),
    };
    const first = await h.create(request);
    const second = await h.create(request);
    const readOnlyKey = await svc.key("acme", ["exports:read"]);
    const asReader = async (id: string): Promise<Export> =>
      (
        await svc.app!.inject({
          method: "GET",
          url: `/v1/exports/${id}`,
          headers: { authorization: `Bearer ${readOnlyKey}` },
        })
      ).json();
    const read = (id: string) => h.get(id) as Promise<Export>;
    assert.equal((await read(second.id)).queue_position, 2);
    assert.equal((await read(second.id)).queue_position, 2, "read again, unchanged");
    assert.equal((await asReader(second.id)).queue_position, 2);

    const lease = { owner: "test-worker", now: Date.now() + 1000, leaseMs: 600_000 };
    assert.equal((await svc.store.claimExport(lease))?.id, first.id);
    assert.equal((await read(second.id)).queue_position, 1, "the export ahead was claimed");
    assert.equal((await svc.store.claimExport(lease))?.id, second.id);
    const running = await read(second.id);
    assert.deepEqual([running.status, running.queue_position], ["running", null]);

    assert.equal(
      await svc.store.updateProgress(second.id, lease, { percent: 40, rows: 7, parts: 0 }, 20),
      "ok",
    );
    assert.deepEqual((await read(second.id)).progress, {
      percent: 40,
      rows: 7,
      parts: 0,
      estimated_rows: 20,
      bytes: 0,
      dataset: null,
    });
    const part = { index: 0, objectKey: "k/part-000.csv.gz", rows: 7, bytes: 70, sha256: "ab".repeat(32) };
    const parts = { percent: 50, rows: 7, parts: 1 };
    assert.equal(await svc.store.recordPart(second.id, lease, part, "c1", parts), "ok");
    for (const view of [await read(second.id), await asReader(second.id)]) {
      assert.equal(view.progress.parts, 1);
      assert.deepEqual(
        view.parts.map((p) => [p.index, p.rows, p.url]),
        [[0, 7, null]],
        "a running export lists its parts without links",
      );
    }

    assert.equal(await svc.store.completeExport(second.id, lease, Date.now() + HOUR), "ok");
    const done = await read(second.id);
    assert.equal(done.status, "succeeded");
    assert.match(done.parts[0]?.url ?? "", /^http/, "a succeeded export's part has a link");
    assert.equal((await asReader(second.id)).parts[0]?.url, null, "never for a key without exports:download");
  });
});
