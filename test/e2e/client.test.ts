/**
 * The typed client (clients/typescript) and the progress stream against real exportd processes:
 * - A (`serve`, API and worker) on one data folder, B (`serve --role api`) on the same folder, so a
 *   stream served by B follows an export A's worker runs (several API processes);
 * - C (`--role api`, nothing ever runs) on its own folder, where exports stay queued until canceled:
 *   Last-Event-ID resume, the final `status` event, heartbeats, the stream cap and its fallback.
 * Create → wait through SSE → download every part verified; a download cut mid-part and resumed
 * with Range; a tampered partial file caught by SHA-256; 503 (maintenance) retried after its
 * Retry-After; a 429 whose Retry-After is longer than the client accepts; scopes.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import {
  ChecksumMismatchError,
  type Export,
  ExportdAbortError,
  ExportdApiError,
  ExportdClient,
  readEvents,
} from "../../clients/typescript/src/index.js";
import { downloadAll, downloadPart } from "../../clients/typescript/src/node.js";
import {
  cli,
  createKey,
  type ServerProcess,
  startServer,
  stopAll,
  tempDataDir,
} from "../helpers/server-process.js";
import { pastMidnight, waitFor } from "../helpers/service.js";

const DAY = 86_400_000;
const to = pastMidnight();
const oneDay = { dataset: "events", from: new Date(to - DAY).toISOString(), to: new Date(to).toISOString() };
const sha256 = (file: string) => createHash("sha256").update(fs.readFileSync(file)).digest("hex");
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

after(() => stopAll());

/** Opens a raw progress stream (fetch, as a browser would) and returns its response. */
function openStream(server: ServerProcess, key: string, id: string, headers: Record<string, string> = {}) {
  const controller = new AbortController();
  const res = fetch(`${server.url}/v1/exports/${id}/events`, {
    headers: { authorization: `Bearer ${key}`, ...headers },
    signal: controller.signal,
  });
  return { res, controller };
}

/** The stream's text as it arrives, until `until` holds or `ms` pass. */
async function readUntil(res: Response, until: (text: string) => boolean, ms: number): Promise<string> {
  const reader = res.body!.getReader();
  const decoder = new TextDecoder();
  let text = "";
  const deadline = Date.now() + ms;
  try {
    while (!until(text) && Date.now() < deadline) {
      const next = await Promise.race([
        reader.read(),
        sleep(Math.max(1, deadline - Date.now())).then(() => null),
      ]);
      if (next === null || next.done) break;
      text += decoder.decode(next.value, { stream: true });
    }
  } finally {
    reader.releaseLock();
  }
  return text;
}

describe("client and progress stream against a server with a worker (A) and an API-only process (B)", () => {
  let a: ServerProcess;
  let b: ServerProcess;
  let key: string;
  let client: ExportdClient;

  before(async () => {
    const dataDir = tempDataDir();
    a = await startServer({ dataDir, env: { EXPORTD_EVENT_POLL_MS: "100" } });
    b = await startServer({ dataDir, env: { EXPORTD_ROLE: "api", EXPORTD_EVENT_POLL_MS: "100" } });
    key = createKey(dataDir, "acme");
    client = new ExportdClient({ baseUrl: b.url, apiKey: key });
  });

  test("create on B → wait through B's progress stream while A's worker runs it → every part downloaded and verified", async () => {
    const created = await client.createExport({ ...oneDay, part_max_rows: 15_000 });
    assert.equal(created.status, "queued");
    const seen: Export[] = [];
    const done = await client.waitForExport(created.id, { onProgress: (e) => seen.push(e) });
    assert.equal(done.status, "succeeded");
    assert.equal(done.parts.length, 3);
    assert.ok(seen.length >= 2, `progress reported ${seen.length} time(s)`);
    assert.equal(seen.at(-1)?.status, "succeeded");
    // Each event's data is the status document: the final one lists the same parts as GET.
    const got = await client.getExport(created.id);
    assert.deepEqual(
      seen.at(-1)?.parts.map((p) => p.sha256),
      got.parts.map((p) => p.sha256),
    );

    const dir = path.join(tempDataDir(), "out");
    const files = await downloadAll(client, done, dir);
    assert.equal(files.length, 3);
    for (const [i, f] of files.entries()) {
      assert.equal(sha256(f.path), done.parts[i]!.sha256);
      assert.equal(fs.statSync(f.path).size, done.parts[i]!.bytes);
    }
    assert.deepEqual(
      fs.readdirSync(dir).filter((n) => n.endsWith(".partial")),
      [],
    );
    // Again: the verified files are kept, nothing is fetched.
    const again = await downloadAll(client, done, dir);
    assert.ok(again.every((f) => f.skipped && f.fetched === 0));
  });

  test("a download cut mid-part resumes with Range; a tampered partial file is caught and deleted", async () => {
    const exp = await client.waitForExport(
      (await client.createExport({ ...oneDay, compression: "none" })).id,
    );
    assert.equal(exp.status, "succeeded");
    const part = exp.parts[0]!;
    assert.ok(part.bytes > 1_000_000, `part of ${part.bytes} bytes`);
    const dir = path.join(tempDataDir(), "out");

    // Cut it once 64 KiB are on disk.
    const controller = new AbortController();
    await assert.rejects(
      downloadPart(client, exp, 0, dir, {
        signal: controller.signal,
        onBytes: (written) => {
          if (written >= 64 * 1024) controller.abort();
        },
      }),
      ExportdAbortError,
    );
    const partial = path.join(dir, `${part.filename}.partial`);
    const kept = fs.statSync(partial).size;
    assert.ok(kept > 0 && kept < part.bytes, `partial file of ${kept} bytes`);
    assert.equal(fs.existsSync(path.join(dir, part.filename)), false);

    // Resume: only the rest is fetched, and the whole file is the part.
    const resumed = await downloadPart(client, exp, 0, dir);
    assert.equal(resumed.fetched, part.bytes - kept);
    assert.ok(resumed.fetched < part.bytes);
    assert.equal(sha256(resumed.path), part.sha256);

    // Tamper: cut again, change a byte of what is on disk, resume → mismatch, nothing left behind.
    fs.rmSync(resumed.path);
    const second = new AbortController();
    await assert.rejects(
      downloadPart(client, exp, 0, dir, {
        signal: second.signal,
        onBytes: (written) => {
          if (written >= 64 * 1024) second.abort();
        },
      }),
      ExportdAbortError,
    );
    const fd = fs.openSync(partial, "r+");
    fs.writeSync(fd, Buffer.from("X"), 0, 1, 10);
    fs.closeSync(fd);
    await assert.rejects(downloadPart(client, exp, 0, dir), (err: unknown) => {
      assert.ok(err instanceof ChecksumMismatchError);
      assert.equal(err.expected, part.sha256);
      return true;
    });
    assert.equal(fs.existsSync(partial), false, "the partial file is deleted");
    assert.equal(fs.existsSync(path.join(dir, part.filename)), false, "nothing under the part's name");
  });

  test("503 in maintenance is retried after its Retry-After, with one Idempotency-Key: one export", async () => {
    const probe = async () =>
      (
        await fetch(`${a.url}/v1/exports/0190f5e4-0000-7000-8000-000000000000/cancel`, {
          method: "POST",
          headers: { authorization: `Bearer ${key}` },
        })
      ).status;
    cli(a.dataDir, ["maintenance", "on", "--retry-after", "1"]);
    await waitFor(probe, (s) => s === 503, 10_000);
    const answers: { status: number; at: number; key: string | null }[] = [];
    const recording = new ExportdClient({
      baseUrl: a.url,
      apiKey: key,
      fetch: async (input, init) => {
        const res = await fetch(input, init);
        const headers = new Headers(init?.headers);
        answers.push({ status: res.status, at: Date.now(), key: headers.get("idempotency-key") });
        return res;
      },
    });
    const before = (await client.listExportsPage({ limit: 100 })).data.length;
    const creating = recording.createExport(oneDay);
    await sleep(1_500);
    cli(a.dataDir, ["maintenance", "off"]);
    const created = await creating;
    assert.equal(answers[0]?.status, 503);
    assert.equal(answers.at(-1)?.status, 202);
    for (let i = 1; i < answers.length; i++) {
      assert.ok(answers[i]!.at - answers[i - 1]!.at >= 950, "waited Retry-After (1 s) between tries");
    }
    assert.equal(new Set(answers.map((x) => x.key)).size, 1, "the same Idempotency-Key on every try");
    assert.equal((await client.listExportsPage({ limit: 100 })).data.length, before + 1);
    await client.waitForExport(created.id);
  });

  test("429 with a Retry-After longer than the client accepts fails at once with the wait in the error", async () => {
    const limited = createKey(a.dataDir, "slow");
    cli(a.dataDir, ["tenants", "set", "slow", "--requests-per-minute", "1"]);
    const slow = new ExportdClient({ baseUrl: a.url, apiKey: limited, maxRetryWaitMs: 2_000 });
    await waitFor(
      () =>
        slow.listExportsPage().then(
          () => 200,
          (e: ExportdApiError) => e.status,
        ),
      (s) => s === 429,
      10_000,
    );
    const started = Date.now();
    let retryAfterMs = 0;
    await assert.rejects(slow.getExport("0190f5e4-0000-7000-8000-000000000000"), (err: unknown) => {
      assert.ok(err instanceof ExportdApiError);
      assert.equal(err.code, "rate_limited");
      assert.ok((err.retryAfterSeconds ?? 0) > 2, `Retry-After ${err.retryAfterSeconds}`);
      retryAfterMs = (err.retryAfterSeconds ?? 0) * 1000;
      return true;
    });
    // Failed at once: a retry would have come after the Retry-After, not before (a bound of the
    // answer itself, not of how fast a loaded machine answers).
    const elapsed = Date.now() - started;
    assert.ok(elapsed < retryAfterMs, `failed after ${elapsed} ms, Retry-After ${retryAfterMs} ms`);
  });

  test("list is an async iterator over pages", async () => {
    const all = [];
    for await (const exp of client.listExports({ limit: 1 })) all.push(exp.id);
    assert.ok(all.length >= 3);
    assert.equal(new Set(all).size, all.length);
  });

  test("scopes: the stream needs exports:read; without exports:download it carries no links", async () => {
    const exp = (await client.listExportsPage({ limit: 1, status: "succeeded" })).data[0]!;
    const noRead = createKey(a.dataDir, "acme", ["datasets:read"]);
    const refused = await fetch(`${b.url}/v1/exports/${exp.id}/events`, {
      headers: { authorization: `Bearer ${noRead}` },
    });
    assert.equal(refused.status, 403);
    assert.equal(((await refused.json()) as { error: { code: string } }).error.code, "insufficient_scope");
    const unauthenticated = await fetch(`${b.url}/v1/exports/${exp.id}/events`);
    assert.equal(unauthenticated.status, 401);

    const readOnly = new ExportdClient({
      baseUrl: b.url,
      apiKey: createKey(a.dataDir, "acme", ["exports:read"]),
    });
    const events = [];
    for await (const e of readOnly.events(exp.id)) events.push(e);
    assert.equal(events.length, 1);
    assert.equal(events[0]!.event, "status");
    assert.ok(events[0]!.export.parts.length > 0);
    assert.ok(events[0]!.export.parts.every((p) => p.url === null));
    const withLinks = [];
    for await (const e of client.events(exp.id)) withLinks.push(e);
    assert.ok(withLinks[0]!.export.parts.every((p) => typeof p.url === "string"));

    const otherTenant = new ExportdClient({ baseUrl: b.url, apiKey: createKey(a.dataDir, "other") });
    await assert.rejects(otherTenant.waitForExport(exp.id), (err: unknown) => {
      assert.ok(err instanceof ExportdApiError);
      assert.equal(err.status, 404);
      assert.equal(err.code, "not_found");
      return true;
    });
  });
});

describe("progress stream of exports that stay queued (C: API only, nothing runs)", () => {
  let c: ServerProcess;
  let key: string;
  let client: ExportdClient;

  before(async () => {
    c = await startServer({
      env: {
        EXPORTD_ROLE: "api",
        EXPORTD_EVENT_POLL_MS: "100",
        EXPORTD_EVENT_HEARTBEAT_SECONDS: "0.2",
        EXPORTD_MAX_EVENT_STREAMS: "2",
        // A stream outlives the time a request's headers and body may take.
        EXPORTD_REQUEST_TIMEOUT_SECONDS: "1",
      },
    });
    key = createKey(c.dataDir, "acme");
    client = new ExportdClient({ baseUrl: c.url, apiKey: key });
  });

  test("retry, first event at once, heartbeats; Last-Event-ID resumes; cancel brings the final status event and the end", async () => {
    const exp = await client.createExport(oneDay);
    const first = openStream(c, key, exp.id);
    const res = await first.res;
    assert.equal(res.status, 200);
    assert.match(res.headers.get("content-type") ?? "", /^text\/event-stream/);
    assert.equal(res.headers.get("cache-control"), "no-store");
    const text = await readUntil(res, (t) => t.includes(": ping"), 5_000);
    first.controller.abort();
    assert.match(text, /^retry: 2000\n\n/);
    const event = /event: progress\nid: (\d+)\ndata: (.*)\n\n/.exec(text);
    assert.ok(event, text);
    const id = event[1]!;
    const doc = JSON.parse(event[2]!) as Export;
    assert.equal(doc.status, "queued");
    assert.equal(doc.queue_position, 1);
    assert.deepEqual(doc, { ...(await client.getExport(exp.id)) }, "data is the status document");
    assert.ok(text.includes(": ping\n\n"), "heartbeat comment");

    // Resumed with the id of what the client saw: nothing changed, so no event comes first.
    const resumed = openStream(c, key, exp.id, { "last-event-id": id });
    const resumedRes = await resumed.res;
    const quiet = await readUntil(resumedRes, (t) => t.includes("event:"), 800);
    assert.ok(!quiet.includes("event:"), `no event for an unchanged export: ${quiet}`);

    // Resumed with an id of another state: the current document comes at once.
    const stale = openStream(c, key, exp.id, { "last-event-id": "1" });
    const staleText = await readUntil(await stale.res, (t) => t.includes("event: progress"), 3_000);
    stale.controller.abort();
    assert.match(staleText, /event: progress\nid: \d+\n/);

    // Cancel (the resumed stream is open for longer than the request timeout by then): it gets the
    // final document as `status`, with a larger id, and ends.
    await sleep(1_200);
    await client.cancelExport(exp.id);
    const rest = await readUntil(resumedRes, () => false, 3_000);
    const final = /event: status\nid: (\d+)\ndata: (.*)\n\n/.exec(rest);
    assert.ok(final, rest);
    assert.ok(BigInt(final[1]!) > BigInt(id), "ids increase per export");
    assert.equal((JSON.parse(final[2]!) as Export).status, "canceled");
    // The server ended the stream: reading on finds its end.
    const reader = resumedRes.body!.getReader();
    assert.equal((await reader.read()).done, true);
  });

  test("past EXPORTD_MAX_EVENT_STREAMS: 503 too_many_event_streams with Retry-After; waitForExport falls back to polling", async () => {
    const exp = await client.createExport(oneDay);
    const open = [openStream(c, key, exp.id), openStream(c, key, exp.id)];
    for (const s of open) assert.equal((await s.res).status, 200);
    // Both count once the first event is out.
    await Promise.all(open.map(async (s) => readUntil(await s.res, (t) => t.includes("event:"), 3_000)));
    const third = await fetch(`${c.url}/v1/exports/${exp.id}/events`, {
      headers: { authorization: `Bearer ${key}` },
    });
    assert.equal(third.status, 503);
    assert.ok(Number(third.headers.get("retry-after")) > 0);
    assert.equal(((await third.json()) as { error: { code: string } }).error.code, "too_many_event_streams");

    // The refused stream is not waited out (Retry-After 5 s): the client polls at once.
    const refusedRetryAfterMs = Number(third.headers.get("retry-after")) * 1000;
    const seen: string[] = [];
    const started = Date.now();
    const waiting = client.waitForExport(exp.id, {
      pollIntervalMs: 100,
      onProgress: (e) => seen.push(e.status),
    });
    // The cancel comes once the client has reported the queued export (not after a fixed time: a
    // loaded machine may not have answered the first poll yet), so both states are seen.
    await waitFor(
      () => seen.length,
      (n) => n >= 1,
    );
    const firstReportMs = Date.now() - started;
    await client.cancelExport(exp.id);
    const done = await waiting;
    assert.equal(done.status, "canceled");
    assert.deepEqual(seen, ["queued", "canceled"]);
    assert.ok(
      firstReportMs < refusedRetryAfterMs,
      `first report after ${firstReportMs} ms: the refusal's Retry-After (${refusedRetryAfterMs} ms) was not waited out`,
    );
    for (const s of open) s.controller.abort();
  });

  test("closing the server ends its open streams at once instead of waiting for them", async () => {
    const exp = await client.createExport(oneDay);
    // Room again once the aborted streams of the test before are gone.
    let stream = openStream(c, key, exp.id);
    for (let i = 0; (await stream.res).status !== 200 && i < 50; i++) {
      await sleep(100);
      stream = openStream(c, key, exp.id);
    }
    const res = await stream.res;
    assert.equal(res.status, 200);
    await readUntil(res, (t) => t.includes("event: progress"), 3_000);
    const reader = res.body!.getReader();
    const ended = (async () => {
      for (;;) if ((await reader.read()).done) return true;
    })();
    c.child.kill("SIGTERM");
    assert.equal(await Promise.race([ended, sleep(3_000).then(() => false)]), true, "the stream ended");
  });

  test("readEvents parses CRLF, multi-line data and comments", async () => {
    const body = new Blob([
      ": hi\r\nretry: 10\r\nevent: progress\r\nid: 7\r\ndata: a\r\ndata: b\r\n\r\ndata: x\n\n",
    ]).stream();
    const events = [];
    for await (const e of readEvents(body)) events.push(e);
    assert.deepEqual(events, [
      { event: "progress", id: "7", data: "a\nb", retry: 10 },
      { event: "message", id: "7", data: "x", retry: 10 },
    ]);
  });
});
