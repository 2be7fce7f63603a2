/**
 * The console's watchExport (console/src/watch.ts) in Node against real HTTP servers speaking the
 * agreed contract of GET /v1/exports/{id}/events: progress events, a dropped stream resumed with
 * Last-Event-ID, the final status event; and polling GET /v1/exports/{id} when the events route
 * answers 404 (a server without it). The stand-in servers are small on purpose: the real route is
 * exercised by the browser test once the server has it.
 */
import assert from "node:assert/strict";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { after, test } from "node:test";
import { ApiClient, type ApiError } from "../../console/src/api.js";
import type { Export } from "../../console/src/types.js";
import { watchExport } from "../../console/src/watch.js";
import { STATUS } from "../../src/domain/status.js";

const servers: http.Server[] = [];
after(() => Promise.all(servers.map((s) => new Promise((r) => s.close(r)))));

async function listen(handler: http.RequestListener): Promise<string> {
  const server = http.createServer(handler);
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
}

const doc = (status: Export["status"], percent: number): Export =>
  ({
    id: "e1",
    dataset: "events",
    status,
    progress: { percent, rows: percent, parts: 0, estimated_rows: 100 },
  }) as Export;

test("the event stream: progress, a drop resumed with Last-Event-ID, the final status", async () => {
  const lastEventIds: (string | undefined)[] = [];
  let connections = 0;
  const base = await listen((req, res) => {
    assert.equal(req.headers.authorization, "Bearer k1");
    assert.equal(req.url, "/v1/exports/e1/events");
    lastEventIds.push(req.headers["last-event-id"] as string | undefined);
    res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-store" });
    if (connections++ === 0) {
      res.write(`: ping\n\nevent: progress\nid: 1\ndata: ${JSON.stringify(doc(STATUS.running, 10))}\n\n`);
      res.end(`event: progress\nid: 2\ndata: ${JSON.stringify(doc(STATUS.running, 40))}\n\n`); // dropped
    } else {
      res.write(`event: progress\nid: 3\ndata: ${JSON.stringify(doc(STATUS.running, 90))}\r\n\r\n`);
      res.end(`event: status\nid: 4\ndata: ${JSON.stringify(doc(STATUS.succeeded, 100))}\n\n`);
    }
  });
  const seen: number[] = [];
  const modes: string[] = [];
  const final = await watchExport(new ApiClient(base, "k1"), "e1", {
    signal: AbortSignal.timeout(10_000),
    onUpdate: (d) => seen.push(d.progress.percent),
    onMode: (m) => modes.push(m),
    pollMs: 50,
  });
  assert.equal(final.status, STATUS.succeeded);
  assert.deepEqual(seen, [10, 40, 90, 100]);
  assert.deepEqual(lastEventIds, [undefined, "2"]);
  assert.deepEqual(modes, ["stream", "stream"]);
});

test("no events route (404): polling until final; an API error that will not pass is thrown", async () => {
  let polls = 0;
  const base = await listen((req, res) => {
    if (req.url?.endsWith("/events")) {
      res.writeHead(404, { "content-type": "application/json" });
      return res.end(
        JSON.stringify({ error: { code: "not_found", message: "No route.", request_id: "r", details: [] } }),
      );
    }
    if (req.url === "/v1/exports/gone") {
      res.writeHead(404, { "content-type": "application/json" });
      return res.end(
        JSON.stringify({
          error: { code: "not_found", message: "No such export.", request_id: "r2", details: [] },
        }),
      );
    }
    polls++;
    res.writeHead(polls === 2 ? 503 : 200, { "content-type": "application/json" });
    if (polls === 2)
      return res.end(JSON.stringify({ error: { code: "service_unavailable", message: "x", details: [] } }));
    res.end(JSON.stringify(polls < 4 ? doc(STATUS.running, polls * 10) : doc(STATUS.canceled, 30)));
  });
  const client = new ApiClient(base, "k1");
  const modes: string[] = [];
  const troubles: (string | null)[] = [];
  const final = await watchExport(client, "e1", {
    signal: AbortSignal.timeout(10_000),
    onUpdate: () => {},
    onMode: (m) => modes.push(m),
    onTrouble: (e) => troubles.push(e?.code ?? null),
    pollMs: 20,
  });
  assert.equal(final.status, STATUS.canceled);
  assert.deepEqual(modes, ["polling"]);
  assert.ok(troubles.includes("service_unavailable"), "a 503 is ridden out");
  await assert.rejects(
    watchExport(client, "gone", { signal: AbortSignal.timeout(10_000), onUpdate: () => {}, pollMs: 20 }),
    (err: ApiError) =>
      err.code === "not_found" && err.message === "No such export." && err.requestId === "r2",
  );
});
