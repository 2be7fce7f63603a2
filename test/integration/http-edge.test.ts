/**
 * The HTTP surface against careless or hostile clients, in process (inject) where that shows the
 * behaviour: scopes on every registered route (links only for exports:download), errors of Fastify
 * and its plugins in the envelope with catalogued codes, strict JSON types in bodies, strict query
 * values, and the per-address limit on requests with missing or invalid keys.
 */
import assert from "node:assert/strict";
import type { AddressInfo } from "node:net";
import net from "node:net";
import { after, before, describe, test } from "node:test";
import { ERROR_CATALOGUE } from "../../src/domain/errors.js";
import { SCOPES, type Scope } from "../../src/domain/scopes.js";
import type { ErrorEnvelope } from "../../src/http/errors.js";
import { listen, rawRequest } from "../helpers/http.js";
import { pastMidnight, startTestService, type TestService, waitFor } from "../helpers/service.js";

let now = Date.now();
let svc: TestService;
let fullKey: string;
let exportId: string;
const to = pastMidnight();
const createBody = {
  dataset: "events",
  from: new Date(to - 3_600_000).toISOString(),
  to: new Date(to).toISOString(),
};

interface Envelope {
  error: { code: string; message: string; request_id: string; details: { field: string; code: string }[] };
}

/** The answer is the envelope, its code is catalogued, and the status is the catalogue's. */
function assertEnvelope(res: { statusCode: number; body: string }, status: number, code: string): Envelope {
  assert.equal(res.statusCode, status, res.body);
  const body = JSON.parse(res.body) as Envelope;
  assert.equal(body.error.code, code, res.body);
  assert.equal(ERROR_CATALOGUE[code as keyof typeof ERROR_CATALOGUE]?.status, status);
  assert.match(body.error.request_id, /^req_/);
  return body;
}

const inject = (
  method: string,
  url: string,
  key: string | null,
  payload?: unknown,
  headers: Record<string, string> = {},
) =>
  svc.app!.inject({
    method: method as "GET",
    url,
    headers: { ...(key ? { authorization: `Bearer ${key}` } : {}), ...headers },
    ...(payload === undefined ? {} : { payload: payload as object }),
  });

before(async () => {
  svc = await startTestService({ EXPORTD_UNAUTHENTICATED_PER_MINUTE: "20" }, () => now);
  fullKey = await svc.key("edge");
  const created = await inject("POST", "/v1/exports", fullKey, createBody);
  assert.equal(created.statusCode, 202, created.body);
  exportId = created.json<{ id: string }>().id;
  await waitFor(
    async () => (await inject("GET", `/v1/exports/${exportId}`, fullKey)).json<{ status: string }>().status,
    (s) => s === "succeeded",
  );
});
after(() => svc.dispose());

describe("scopes on every route", () => {
  /** A concrete request for a registered route pattern. */
  const concrete = (url: string) =>
    url.replace(":id", exportId).replace("*", url.startsWith("/files/") ? "exports/x" : "index.html");

  test("every registered route × every key: 403 insufficient_scope without the scope, never a link without exports:download", async () => {
    const routes = svc.app!.routeScopes.filter((r) => r.method !== "HEAD");
    // The walk covers what the API has, so a new route is walked without touching this test.
    assert.ok(routes.some((r) => r.url === "/v1/exports/:id/download"));
    assert.ok(routes.filter((r) => r.scope !== null).length >= 6);
    const keySets: Scope[][] = [
      [...SCOPES],
      ...SCOPES.map((s) => SCOPES.filter((other) => other !== s)),
      ...SCOPES.map((s) => [s]),
    ];
    for (const scopes of keySets) {
      const key = await svc.key("edge", scopes);
      for (const route of routes) {
        const url = concrete(route.url);
        const res = await inject(route.method, url, key, route.method === "POST" ? createBody : undefined);
        const where = `${route.method} ${route.url} with [${scopes.join(",")}]`;
        if (route.scope !== null && !scopes.includes(route.scope)) {
          const body = assertEnvelope(res, 403, "insufficient_scope");
          assert.ok(body.error.message.includes(route.scope), where);
          continue;
        }
        if (res.statusCode === 403)
          assert.notEqual(res.json<ErrorEnvelope>().error.code, "insufficient_scope", where);
        assert.ok(res.statusCode < 500, `${where} → ${res.statusCode}`);
        if (!scopes.includes("exports:download") && route.url !== "/files/*") {
          assert.doesNotMatch(res.body, /signature=/, `${where} handed out a link`);
          assert.doesNotMatch(String(res.headers.location ?? ""), /signature=/, where);
        }
      }
    }
  });

  test("a read-only key sees parts without links, also from the cached final document", async () => {
    const readOnly = await svc.key("edge", ["exports:read"]);
    // The full key fills the serialized-document cache first, with links.
    const withLinks = (await inject("GET", `/v1/exports/${exportId}`, fullKey)).json<{
      parts: { url: string | null }[];
    }>();
    assert.match(String(withLinks.parts[0]?.url), /signature=/);
    for (const url of [`/v1/exports/${exportId}`, "/v1/exports"]) {
      const res = await inject("GET", url, readOnly);
      assert.equal(res.statusCode, 200);
      const body = res.json<{ parts?: unknown[]; data?: { parts: unknown[] }[] }>();
      const parts = (body.parts ?? body.data?.find((e) => e.parts.length > 0)?.parts) as {
        rows: number;
        bytes: number;
        sha256: string;
        url: string | null;
        url_expires_at: string | null;
      }[];
      assert.ok(parts.length > 0);
      for (const part of parts) {
        assert.ok(part.rows > 0 && part.bytes > 0);
        assert.match(part.sha256, /^[0-9a-f]{64}$/);
        assert.equal(part.url, null);
        assert.equal(part.url_expires_at, null);
      }
    }
    // And the full key still gets its links after the read-only one filled its own document.
    const again = (await inject("GET", `/v1/exports/${exportId}`, fullKey)).json<{
      parts: { url: string | null }[];
    }>();
    assert.match(String(again.parts[0]?.url), /signature=/);
  });
});

describe("errors of Fastify and its plugins", () => {
  test("the /docs file server's 403 and 404 are envelopes with catalogued codes, never 500", async () => {
    // Over a socket: inject would normalise the path before the router sees it.
    const base = await listen(svc);
    const raw = async (path: string) => {
      const res = await rawRequest(base, "GET", path);
      return { statusCode: res.status, body: res.body };
    };
    assertEnvelope(await raw("/docs/static/.."), 403, "forbidden");
    assertEnvelope(await raw("/docs/static/%00"), 403, "forbidden");
    assertEnvelope(await raw("/docs/static/no-such-file.js"), 404, "not_found");
  });

  test("an unknown method on a path → 404 not_found in the envelope", async () => {
    assertEnvelope(await inject("DELETE", "/v1/exports", fullKey), 404, "not_found");
  });

  test("a missing or malformed Host → 400 invalid_request naming host", async () => {
    // inject always sends a Host; a malformed one shows the same check.
    const res = await inject("GET", "/healthz", null, undefined, { host: "bad host/x" });
    const body = assertEnvelope(res, 400, "invalid_request");
    assert.equal(body.error.details[0]?.field, "host");
    assert.equal((await inject("GET", "/healthz", null, undefined, { host: "[::1]:8080" })).statusCode, 200);
  });
});

describe("strict JSON types in bodies", () => {
  const cases: [string, Record<string, unknown>, string][] = [
    ["dry_run: 0", { dry_run: 0 }, "dry_run"],
    ["dry_run: null", { dry_run: null }, "dry_run"],
    ['dry_run: "true"', { dry_run: "true" }, "dry_run"],
    ["part_max_rows: true", { part_max_rows: true }, "part_max_rows"],
    ['part_max_rows: "5"', { part_max_rows: "5" }, "part_max_rows"],
    ['columns: "id"', { columns: "id" }, "columns"],
    ["csv.header: 1", { csv: { header: 1 } }, "csv.header"],
    ["dataset: 5", { dataset: 5 }, "dataset"],
  ];
  for (const [name, change, field] of cases) {
    test(`${name} → 400 invalid_request, ${field} invalid_type, nothing queued`, async () => {
      const before = (await inject("GET", "/v1/exports?limit=100", fullKey)).json<{ data: unknown[] }>().data
        .length;
      const res = await inject("POST", "/v1/exports", fullKey, { ...createBody, ...change });
      const body = assertEnvelope(res, 400, "invalid_request");
      assert.ok(
        body.error.details.some((d) => d.field === field && d.code === "invalid_type"),
        JSON.stringify(body.error.details),
      );
      const afterCount = (await inject("GET", "/v1/exports?limit=100", fullKey)).json<{ data: unknown[] }>()
        .data.length;
      assert.equal(afterCount, before);
    });
  }

  test("query strings still take digits and true/false, and refuse anything else", async () => {
    assert.equal((await inject("GET", "/v1/exports?limit=5", fullKey)).statusCode, 200);
    assert.equal(
      (await inject("GET", `/v1/exports/${exportId}/download?part=0&redirect=false`, fullKey)).statusCode,
      200,
    );
    const bad: [string, string][] = [
      ["/v1/exports?limit=abc", "limit"],
      ["/v1/exports?limit=", "limit"],
      [`/v1/exports/${exportId}/download?part=1.5`, "part"],
      [`/v1/exports/${exportId}/download?part=`, "part"],
      [`/v1/exports/${exportId}/download?redirect=maybe`, "redirect"],
      [`/v1/exports/${exportId}/download?redirect=1`, "redirect"],
    ];
    for (const [url, field] of bad) {
      const body = assertEnvelope(await inject("GET", url, fullKey), 400, "invalid_request");
      assert.ok(
        body.error.details.some((d) => d.field === field),
        `${url}: ${JSON.stringify(body.error.details)}`,
      );
    }
  });
});

describe("strict values in query strings", () => {
  test("integers are plain decimal digits only: 0x0, +0, 0.0, a leading space, 1e1 → 400 invalid_type naming the field", async () => {
    const download = `/v1/exports/${exportId}/download`;
    const bad: [string, string][] = [
      [`${download}?part=0x0`, "part"],
      [`${download}?part=%2B0`, "part"],
      [`${download}?part=+0`, "part"],
      [`${download}?part=0.0`, "part"],
      [`${download}?part=%200`, "part"],
      [`${download}?part=0%20`, "part"],
      [`${download}?part=-0`, "part"],
      [`${download}?part=${"0".repeat(16)}`, "part"],
      ["/v1/exports?limit=1e1", "limit"],
      ["/v1/exports?limit=0b1", "limit"],
      ["/v1/exports?limit=%0A5", "limit"],
    ];
    for (const [url, field] of bad) {
      const body = assertEnvelope(await inject("GET", url, fullKey), 400, "invalid_request");
      assert.deepEqual(
        body.error.details.map((d) => [d.field, d.code]),
        [[field, "invalid_type"]],
        `${url}: ${JSON.stringify(body.error.details)}`,
      );
    }
    // Every problem at once: the integer rule and ajv's own checks of the other parameters.
    const both = assertEnvelope(
      await inject("GET", `${download}?part=0x0&redirect=maybe`, fullKey),
      400,
      "invalid_request",
    );
    assert.deepEqual(both.error.details.map((d) => d.field).sort(), ["part", "redirect"]);
    // Digits still convert, repeated once or not, and bounds still hold.
    const link = await inject("GET", `${download}?part=0&redirect=false`, fullKey);
    assert.equal(link.json<{ part: number }>().part, 0);
    assert.equal((await inject("GET", "/v1/exports?limit=007", fullKey)).statusCode, 200);
    assertEnvelope(await inject("GET", "/v1/exports?limit=101", fullKey), 400, "invalid_request");
  });

  test("booleans are only true or false", async () => {
    const download = `/v1/exports/${exportId}/download?part=0&redirect=`;
    for (const value of ["TRUE", "False", "1", "0", "yes", "%20true", "true%20"]) {
      const body = assertEnvelope(await inject("GET", download + value, fullKey), 400, "invalid_request");
      assert.deepEqual(
        body.error.details.map((d) => d.field),
        ["redirect"],
        value,
      );
    }
    assert.equal((await inject("GET", `${download}true`, fullKey)).statusCode, 302);
    assert.equal((await inject("GET", `${download}false`, fullKey)).statusCode, 200);
  });
});

describe("requests without a valid key", () => {
  test("two Authorization headers → 400 invalid_request naming authorization, whichever comes first, also on a real socket", async () => {
    const bogus = "Bearer exd_aaaaaaaaaa_bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
    for (const pair of [
      [`Bearer ${fullKey}`, bogus],
      [bogus, `Bearer ${fullKey}`],
      [`Bearer ${fullKey}`, `Bearer ${fullKey}`],
    ]) {
      const res = await svc.app!.inject({
        method: "GET",
        url: "/v1/exports",
        // light-my-request sends an array as repeated header lines; its type only says string.
        headers: { authorization: pair } as unknown as Record<string, string>,
      });
      const body = assertEnvelope(res, 400, "invalid_request");
      assert.deepEqual(
        body.error.details.map((d) => d.field),
        ["authorization"],
      );
    }
    // Node's server keeps only the first Authorization in request.headers: the raw lines decide.
    const base = svc.app!.server.listening
      ? `http://127.0.0.1:${(svc.app!.server.address() as AddressInfo).port}`
      : await listen(svc);
    const { port } = new URL(base);
    const answer = await new Promise<string>((resolve, reject) => {
      const socket = net.connect(Number(port), "127.0.0.1", () =>
        socket.write(
          `GET /v1/exports HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${fullKey}\r\n` +
            `Authorization: ${bogus}\r\nConnection: close\r\n\r\n`,
        ),
      );
      let text = "";
      socket.setEncoding("utf8");
      socket.on("data", (chunk: string) => {
        text += chunk;
      });
      socket.on("end", () => resolve(text));
      socket.on("error", reject);
    });
    assert.match(answer, /^HTTP\/1\.1 400 /);
    assert.match(answer, /"code":"invalid_request"/);
    assert.match(answer, /"field":"authorization"/);
    // One header still works.
    assert.equal((await inject("GET", "/v1/exports", fullKey)).statusCode, 200);
  });

  test("an address past its budget of bad keys gets 429 rate_limited with Retry-After, without a key lookup; a verified key still passes", async () => {
    const good = await svc.key("edge", ["exports:read"]);
    assert.equal((await inject("GET", "/v1/exports", good)).statusCode, 200);
    let lookups = 0;
    const original = svc.store.findApiKeyByPrefix.bind(svc.store);
    svc.store.findApiKeyByPrefix = async (prefix: string) => {
      lookups += 1;
      return original(prefix);
    };
    try {
      const statuses: number[] = [];
      for (let i = 0; i < 40; i++) {
        const bad = i % 2 === 0 ? "exd_aaaaaaaaaa_bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb" : null;
        statuses.push((await inject("GET", "/v1/exports", bad)).statusCode);
      }
      assert.deepEqual(statuses.slice(0, 20), Array(20).fill(401));
      assert.deepEqual(statuses.slice(20), Array(20).fill(429));
      assert.equal(lookups, 10, "only the bad keys within the budget were looked up");
      const limited = await inject("GET", "/v1/exports", "exd_aaaaaaaaaa_bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb");
      assertEnvelope(limited, 429, "rate_limited");
      assert.ok(Number(limited.headers["retry-after"]) >= 1);
      // The key verified within the last second passes; after the window, bad keys are 401 again.
      assert.equal((await inject("GET", "/v1/exports", good)).statusCode, 200);
      now += 61_000;
      assertEnvelope(await inject("GET", "/v1/exports", null), 401, "unauthorized");
    } finally {
      svc.store.findApiKeyByPrefix = original;
    }
  });
});
