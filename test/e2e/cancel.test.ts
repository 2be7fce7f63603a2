/**
 * Cancel against the real server process: a running export with published parts is canceled, its
 * files are gone within two seconds and stay gone (the work really stopped); a queued export is
 * canceled before it ever writes; the final state answers 409 to a second cancel and to downloads.
 */
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { after, test } from "node:test";
import {
  api,
  createKey,
  type ErrorBody,
  type ExportView,
  filesUnder,
  startServer,
  stopAll,
} from "../helpers/server-process.js";
import { pastMidnight, waitFor } from "../helpers/service.js";

after(() => stopAll());

const DAY = 86_400_000;
const to = pastMidnight();
const thirtyDays = {
  dataset: "events",
  from: new Date(to - 30 * DAY).toISOString(),
  to: new Date(to).toISOString(),
  format: "csv",
  compression: "gzip",
  part_max_rows: 100_000,
};

function assertError(res: { status: number; headers: Headers; json: unknown }, status: number, code: string) {
  assert.equal(res.status, status, JSON.stringify(res.json));
  const body = res.json as ErrorBody;
  assert.equal(body.error.code, code);
  assert.equal(res.headers.get("x-request-id"), body.error.request_id);
  return body;
}

/** The export's files: objects/exports/<tenant id>/<export id>/… (the tenant folder is looked up). */
function exportFiles(dataDir: string, id: string): string[] {
  const root = path.join(dataDir, "objects", "exports");
  if (!fs.existsSync(root)) return [];
  return fs.readdirSync(root).flatMap((tenant) => filesUnder(path.join(root, tenant, id)));
}

test("cancel a running export with published parts: 200, files gone within 2 s, then 409s", async () => {
  // One export at a time, so the second one waits in the queue.
  const server = await startServer({ env: { EXPORTD_WORKER_CONCURRENCY: "1" } });
  const http = api(server.url, createKey(server.dataDir, "acme"));

  const createdRunning = await http.post("/v1/exports", thirtyDays);
  assert.equal(createdRunning.status, 202, JSON.stringify(createdRunning.json));
  const id = createdRunning.json.id;
  const createdQueued = await http.post("/v1/exports", thirtyDays);
  assert.equal(createdQueued.status, 202, JSON.stringify(createdQueued.json));
  const queuedId = createdQueued.json.id;

  const running = await waitFor(
    async () => (await http.get(`/v1/exports/${id}`)).json,
    (e) => (e.status === "running" && e.progress.parts >= 1) || !["queued", "running"].includes(e.status),
    60_000,
  );
  assert.equal(running.status, "running");
  assert.ok(running.cancellable);
  assert.ok(exportFiles(server.dataDir, id).length >= 1, "published parts are on disk before the cancel");

  // The queued one first: canceled before it ever ran.
  const queued = (await http.get(`/v1/exports/${queuedId}`)).json;
  assert.equal(queued.status, "queued");
  const canceledQueued = await http.post(`/v1/exports/${queuedId}/cancel`);
  assert.equal(canceledQueued.status, 200, JSON.stringify(canceledQueued.json));
  assert.equal(canceledQueued.json.status, "canceled");

  const canceled = await http.post(`/v1/exports/${id}/cancel`);
  const canceledAt = Date.now();
  assert.equal(canceled.status, 200, JSON.stringify(canceled.json));
  assert.equal(canceled.json.id, id);
  assert.equal(canceled.json.status, "canceled");
  assert.equal(canceled.json.cancellable, false);

  // Within two seconds the export's files are deleted (the folder gone or empty).
  await waitFor(
    () => exportFiles(server.dataDir, id),
    (files) => files.length === 0,
    2000,
  );
  assert.ok(Date.now() - canceledAt <= 2500, "files deleted within about two seconds");

  const view = await http.get(`/v1/exports/${id}`);
  assert.equal(view.status, 200);
  assert.equal(view.json.status, "canceled");
  assert.deepEqual(view.json.parts, []);
  assert.equal(view.json.cancellable, false);
  assert.notEqual(view.json.error?.code, "internal_error");

  const twice = await http.post(`/v1/exports/${id}/cancel`);
  const body = assertError(twice, 409, "not_cancellable");
  assert.equal(body.error.details[0]?.code, "canceled");
  assertError(await http.get(`/v1/exports/${id}/download`), 409, "export_not_ready");
  assertError(await http.get(`/v1/exports/${id}/download?redirect=false`), 409, "export_not_ready");

  // Canceled means stopped: nothing is written again and the status stays canceled.
  await new Promise((r) => setTimeout(r, 2000));
  assert.deepEqual(exportFiles(server.dataDir, id), []);
  const later = (await http.get(`/v1/exports/${id}`)).json;
  assert.equal(later.status, "canceled");
  assert.deepEqual(later.parts, []);
  const laterQueued = (await http.get(`/v1/exports/${queuedId}`)).json;
  assert.equal(laterQueued.status, "canceled", "a canceled queued export is never claimed");
  assert.equal(laterQueued.attempts, 0);
  assert.deepEqual(exportFiles(server.dataDir, queuedId), []);
  assertError(await http.post(`/v1/exports/${queuedId}/cancel`), 409, "not_cancellable");

  const listed = await http.get<{ data: ExportView[] }>("/v1/exports?status=canceled");
  assert.equal(listed.status, 200);
  assert.deepEqual(listed.json.data.map((e) => e.id).sort(), [id, queuedId].sort());
  assert.deepEqual(
    filesUnder(path.join(server.dataDir, "objects")).filter((f) => f.includes(".upload-")),
    [],
    "no temporary upload left behind",
  );
});
