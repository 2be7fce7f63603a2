/**
 * Tenant isolation and key scopes against the real server process, with keys from the real CLI:
 * another tenant's export is a 404 on every route (and indistinguishable from an unknown id), a
 * read-only key is refused writes and downloads, missing / garbage / altered / revoked keys are
 * 401, and every error answer carries the one envelope with its request id in x-request-id.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, test } from "node:test";
import { KEY_CACHE_MS } from "../../src/http/auth.js";
import {
  type ApiResponse,
  api,
  cli,
  createKey,
  type ErrorBody,
  type ExportView,
  type ServerProcess,
  startServer,
  stopAll,
} from "../helpers/server-process.js";
import { pastMidnight, waitFor } from "../helpers/service.js";

let server: ServerProcess;
let keyA: string;
let keyB: string;
let readOnlyA: string;
let exportId: string;

const to = pastMidnight();
const smallExport = {
  dataset: "events",
  from: new Date(to - 3_600_000).toISOString(),
  to: new Date(to).toISOString(),
  format: "csv",
  compression: "gzip",
};

before(async () => {
  server = await startServer();
  keyA = createKey(server.dataDir, "acme");
  keyB = createKey(server.dataDir, "globex");
  readOnlyA = createKey(server.dataDir, "acme", ["exports:read"]);
});
after(() => stopAll());

/** Asserts the status, the code and the whole error envelope; returns the body. */
function assertError(res: ApiResponse, status: number, code: string, what = ""): ErrorBody {
  const label = `${what} → ${JSON.stringify(res.json)}`;
  assert.equal(res.status, status, label);
  assert.match(res.headers.get("content-type") ?? "", /^application\/json/, label);
  const body = res.json as ErrorBody;
  assert.deepEqual(Object.keys(body), ["error"], label);
  assert.deepEqual(Object.keys(body.error).sort(), ["code", "details", "message", "request_id"], label);
  assert.equal(body.error.code, code, label);
  assert.equal(typeof body.error.message, "string", label);
  assert.ok(body.error.message.length > 0, label);
  assert.ok(Array.isArray(body.error.details), label);
  assert.match(body.error.request_id, /^req_/, label);
  assert.equal(res.headers.get("x-request-id"), body.error.request_id, label);
  assert.equal(res.headers.get("cache-control"), "no-store", label);
  return body;
}

test("keys from the CLI look like keys, one per call", () => {
  for (const key of [keyA, keyB, readOnlyA]) assert.match(key, /^exd_[A-Za-z0-9]+_[A-Za-z0-9_-]+$/);
  assert.equal(new Set([keyA, keyB, readOnlyA]).size, 3);
});

test("tenant A creates an export; it runs to succeeded", async () => {
  const a = api(server.url, keyA);
  const created = await a.post("/v1/exports", smallExport);
  assert.equal(created.status, 202, JSON.stringify(created.json));
  exportId = created.json.id;
  const done = await waitFor(
    async () => (await a.get(`/v1/exports/${exportId}`)).json,
    (e) => !["queued", "running"].includes(e.status),
    30_000,
  );
  assert.equal(done.status, "succeeded", JSON.stringify(done.error));
});

test("tenant B gets 404 not_found on A's export, exactly as for an id that does not exist", async () => {
  const b = api(server.url, keyB);
  const unknown = randomUUID();
  for (const [method, route] of [
    ["GET", (id: string) => `/v1/exports/${id}`],
    ["POST", (id: string) => `/v1/exports/${id}/cancel`],
    ["GET", (id: string) => `/v1/exports/${id}/download`],
    ["GET", (id: string) => `/v1/exports/${id}/download?redirect=false`],
  ] as const) {
    const theirs = assertError(await b.request(method, route(exportId)), 404, "not_found", route(exportId));
    const none = assertError(await b.request(method, route(unknown)), 404, "not_found", route(unknown));
    assert.equal(theirs.error.message, none.error.message, "no hint that the id exists elsewhere");
    assert.deepEqual(theirs.error.details, none.error.details);
  }
  // B's cancel did nothing to A's export.
  const a = api(server.url, keyA);
  const mine = await a.get(`/v1/exports/${exportId}`);
  assert.equal(mine.status, 200);
  assert.equal(mine.json.status, "succeeded");
  const download = await a.get(`/v1/exports/${exportId}/download`);
  assert.equal(download.status, 302);
});

test("tenant B's list does not contain A's export; A's does", async () => {
  const listB = await api(server.url, keyB).get<{ data: ExportView[] }>("/v1/exports");
  assert.equal(listB.status, 200);
  assert.ok(!listB.json.data.some((e) => e.id === exportId));
  assert.deepEqual(listB.json.data, [], "B has no exports at all");

  const listA = await api(server.url, keyA).get<{ data: ExportView[] }>("/v1/exports");
  assert.equal(listA.status, 200);
  assert.deepEqual(
    listA.json.data.map((e) => e.id),
    [exportId],
  );
});

test("a key with only exports:read: 403 insufficient_scope on create, cancel and download; reads work", async () => {
  const reader = api(server.url, readOnlyA);
  const create = assertError(
    await reader.post("/v1/exports", smallExport),
    403,
    "insufficient_scope",
    "create",
  );
  assert.deepEqual(create.error.details, [
    { field: "authorization", code: "missing_scope", message: "exports:write" },
  ]);
  const download = assertError(
    await reader.get(`/v1/exports/${exportId}/download`),
    403,
    "insufficient_scope",
    "download",
  );
  assert.equal(download.error.details[0]?.message, "exports:download");
  assertError(await reader.post(`/v1/exports/${exportId}/cancel`), 403, "insufficient_scope", "cancel");

  const status = await reader.get(`/v1/exports/${exportId}`);
  assert.equal(status.status, 200);
  assert.equal(status.json.id, exportId);
  const list = await reader.get<{ data: ExportView[] }>("/v1/exports");
  assert.equal(list.status, 200);
  assert.deepEqual(
    list.json.data.map((e) => e.id),
    [exportId],
  );
  // Still only one export: the refused create made none.
  const count = (await api(server.url, keyA).get<{ data: ExportView[] }>("/v1/exports")).json.data.length;
  assert.equal(count, 1);
});

test("no Authorization, a garbage key, an altered key and a revoked key → 401 unauthorized", async () => {
  const none = await api(server.url, null).get(`/v1/exports/${exportId}`);
  assertError(none, 401, "unauthorized", "no Authorization");
  assert.match(none.headers.get("www-authenticate") ?? "", /^Bearer/);
  assertError(
    await api(server.url, null).post("/v1/exports", smallExport),
    401,
    "unauthorized",
    "no key, POST",
  );

  assertError(await api(server.url, "garbage").get("/v1/exports"), 401, "unauthorized", "garbage key");
  assertError(
    await api(server.url, null).get("/v1/exports", { authorization: "Basic dXNlcjpwYXNz" }),
    401,
    "unauthorized",
    "Basic scheme",
  );
  // A real key's prefix with its secret altered in one character.
  const last = keyA[keyA.length - 1] === "A" ? "B" : "A";
  const altered = keyA.slice(0, -1) + last;
  assertError(await api(server.url, altered).get("/v1/exports"), 401, "unauthorized", "altered key");

  // A key revoked through the CLI stops working in the running server within the second its
  // verification is cached for, and stays refused.
  const doomed = createKey(server.dataDir, "acme");
  assert.equal((await api(server.url, doomed).get("/v1/exports")).status, 200);
  const prefix = doomed.split("_")[1]!;
  cli(server.dataDir, ["keys", "revoke", prefix]);
  const revokedAt = Date.now();
  // The key's cached verification was filled before the revoke, so a request sent once
  // KEY_CACHE_MS have passed since must be refused — judged by when each try was sent, not by how
  // soon a loaded machine answers.
  const tries: { sentAt: number; status: number }[] = [];
  const refused = await waitFor(
    async () => {
      const sentAt = Date.now();
      const res = await api(server.url, doomed).get("/v1/exports");
      tries.push({ sentAt, status: res.status });
      return res;
    },
    (res) => res.status === 401,
  );
  assert.deepEqual(
    tries.filter((t) => t.status !== 401 && t.sentAt > revokedAt + KEY_CACHE_MS),
    [],
    "refused once the key cache's lifetime has passed",
  );
  assertError(refused, 401, "unauthorized", "revoked key");
  assertError(await api(server.url, doomed).get("/v1/exports"), 401, "unauthorized", "still revoked");
  // The other keys of the tenant are untouched.
  assert.equal((await api(server.url, keyA).get("/v1/exports")).status, 200);
});
