/**
 * The console's pure parts (console/src/): the event-stream parser, the time-left estimate, the
 * create body built from the form, the page's wording of sizes and durations; and the server's
 * choice of content coding for the console's files.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { SseParser } from "../../clients/typescript/src/sse.js";
import { EtaEstimator, fractionDone } from "../../console/src/eta.js";
import { formatBytes, formatDuration } from "../../console/src/format.js";
import { createBody, defaultRange, filterValues } from "../../console/src/request.js";
import type { Dataset } from "../../console/src/types.js";
import { chooseEncoding } from "../../src/http/console/files.js";

test("SSE: events across chunk boundaries, CRLF split between chunks, comments, ids, multi-line data", () => {
  const parser = new SseParser();
  assert.deepEqual(parser.push(": ping\n\nevent: progress\nid: 1\nda"), []);
  assert.deepEqual(parser.push('ta: {"a":1}\r'), []);
  const events = parser.push("\n\r\nevent: status\nid: 2\ndata: x\ndata:y\n\n: ping\n\ndata: plain\n\n");
  assert.deepEqual(events, [
    { event: "progress", data: '{"a":1}', id: "1" },
    { event: "status", data: "x\ny", id: "2" },
    { event: "message", data: "plain", id: "2" },
  ]);
  assert.equal(parser.lastEventId, "2");
  // An event without data is not dispatched; its type does not leak into the next one.
  assert.deepEqual(parser.push("event: progress\n\ndata: z\n\n"), [{ event: "message", data: "z", id: "2" }]);
});

test("ETA: unknown until progress moved over 1.5 s, then the time left at the recent pace", () => {
  const eta = new EtaEstimator();
  const sample = (rows: number) => ({ percent: 0, rows, estimated_rows: 1000 });
  assert.equal(eta.update(sample(0), 0), null);
  assert.equal(eta.update(sample(100), 1000), null, "under 1.5 s of samples");
  // 200 rows in 2 s → 100 rows/s; 800 left → 8 s.
  assert.equal(eta.update(sample(200), 2000), 8);
  assert.equal(eta.update(sample(200), 2000 + 1), 8 * (2001 / 2000), "a pause slows the pace");
  // Without an estimate the percent is the progress.
  assert.equal(fractionDone({ percent: 40, rows: 5, estimated_rows: null }), 0.4);
  assert.equal(fractionDone({ percent: 40, rows: 5000, estimated_rows: 1000 }), 1, "capped at done");
  // The basis changing (the estimate arriving) starts over instead of reading a backwards move.
  eta.update({ percent: 90, rows: 0, estimated_rows: null }, 3000);
  assert.equal(eta.update({ percent: 90, rows: 10, estimated_rows: 1000 }, 3500), null);
});

test("create body: filters split on commas, columns only when some are left out", () => {
  const dataset = {
    name: "events",
    columns: ["id", "occurred_at", "type"].map((name) => ({ name, type: "string", description: "" })),
  } as Dataset;
  const state = {
    dataset: "events",
    from: "2026-11-01T00:00",
    to: "2026-11-02T00:00",
    timezone: "Europe/Paris",
    format: "csv",
    filters: { type: " click , purchase,", user_id: "user_1", empty: " , " },
    columns: ["type", "id"],
  };
  assert.deepEqual(createBody(state, dataset), {
    dataset: "events",
    from: "2026-11-01T00:00",
    to: "2026-11-02T00:00",
    timezone: "Europe/Paris",
    format: "csv",
    filters: { type: ["click", "purchase"], user_id: "user_1" },
    columns: ["id", "type"],
  });
  const all = createBody({ ...state, filters: {}, columns: ["id", "occurred_at", "type"] }, dataset);
  assert.equal(all.columns, undefined);
  assert.equal(all.filters, undefined);
  assert.deepEqual(filterValues("a,,b , c"), ["a", "b", "c"]);
  assert.deepEqual(defaultRange(Date.UTC(2026, 10, 30, 15, 4), 7), {
    from: "2026-11-23T00:00",
    to: "2026-11-30T00:00",
  });
});

test("the page's words for sizes and durations", () => {
  assert.equal(formatBytes(512), "512 B");
  assert.equal(formatBytes(1536), "1.5 KiB");
  assert.equal(formatBytes(35 * 1024 ** 2), "35.0 MiB");
  assert.equal(formatBytes(300 * 1024 ** 3), "300 GiB");
  assert.equal(formatDuration(0.2), "under a second");
  assert.equal(formatDuration(44.6), "45 s");
  assert.equal(formatDuration(200), "3 min 20 s");
  assert.equal(formatDuration(7500), "2 h 5 min");
});

test("content coding for the console's files: brotli, then gzip, q=0 refuses, * stands for the rest", () => {
  assert.equal(chooseEncoding("gzip, deflate, br, zstd"), "br");
  assert.equal(chooseEncoding("gzip"), "gzip");
  assert.equal(chooseEncoding("br;q=0, gzip;q=0.5"), "gzip");
  assert.equal(chooseEncoding("*;q=0"), "identity");
  assert.equal(chooseEncoding("*"), "br");
  assert.equal(chooseEncoding("identity"), "identity");
  assert.equal(chooseEncoding(undefined), "identity");
});
