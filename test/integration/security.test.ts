/**
 * The security suite, against a listening server: keys (missing, garbage, revoked, rotated out),
 * scopes on every route, other tenants' ids on every id route, signed links (tampered, expired,
 * re-used after expiry), path traversal on the file route, and oversized bodies.
 */
import assert from "node:assert/strict";
import fs from "node:fs";
import net from "node:net";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { keyPrefix } from "../../src/domain/api-keys.js";
import { SCOPES, type Scope } from "../../src/domain/scopes.js";
import { KEY_CACHE_MS } from "../../src/http/auth.js";
import { LinkSigner } from "../../src/object-store/signing.js";
import { rotateApiKey } from "../../src/usecases/api-keys.js";
import { listen, type RawResponse, rawRequest } from "../helpers/http.js";
import { pastMidnight, startTestService, type TestService, waitFor } from "../helpers/service.js";

let now = Date.now();
let svc: TestService;
let base: string;
let keyA: string;
let keyB: string;
let exportId: string;
let partUrl: URL;
const to = pastMidnight();
const createBody = JSON.stringify({
  dataset: "events",
  from: new Date(to - 3_600_000).toISOString(),
  to: new Date(to).toISOString(),
});

const bearer = (key: string) => ({ authorization: `Bearer ${key}` });

/** A verified key is trusted for KEY_CACHE_MS per process; one that lost its validity is refused after. */
async function assertRefusedOnceCacheLapses(key: string): Promise<void> {
  now += KEY_CACHE_MS;
  assertError(await rawRequest(base, "GET", "/v1/exports", bearer(key)), 401, "unauthorized");
}
const jsonHeaders = (key: string) => ({ ...bearer(key), "content-type": "application/json" });

function assertError(res: RawResponse, status: number, code: string): { message: string } {
  assert.equal(res.status, status, res.body);
  const body = res.json<{ error: { code: string; message: string; request_id: string } }>();
  assert.equal(body.error.code, code);
  assert.equal(res.headers["x-request-id"], body.error.request_id);
  return body.error;
}

before(async () => {
  svc = await startTestService({}, () => now);
  base = await listen(svc);
  keyA = await svc.key("tenant-a");
  keyB = await svc.key("tenant-b");
  const created = await rawRequest(base, "POST", "/v1/exports", jsonHeaders(keyA), createBody);
  assert.equal(created.status, 202, created.body);
  exportId = created.json<{ id: string }>().id;
  const done = await waitFor(
    async () =>
      (await rawRequest(base, "GET", `/v1/exports/${exportId}`, bearer(keyA))).json<{
        status: string;
        parts: { url: string }[];
      }>(),
    (e) => e.status === "succeeded",
  );
  partUrl = new URL(done.parts[0]!.url);
});
after(() => svc.dispose());

/** Every authenticated route, with the scope it needs. */
const routes = (id: string): [string, string, Scope, string | undefined][] => [
  ["POST", "/v1/exports", "exports:write", createBody],
  ["GET", "/v1/exports", "exports:read", undefined],
  ["GET", `/v1/exports/${id}`, "exports:read", undefined],
  ["POST", `/v1/exports/${id}/cancel`, "exports:write", undefined],
  ["GET", `/v1/exports/${id}/download`, "exports:download", undefined],
  ["GET", "/v1/datasets", "datasets:read", undefined],
];

describe("API keys", () => {
  const badHeaders: [string, Record<string, string>][] = [
    ["missing", {}],
    ["empty bearer", { authorization: "Bearer " }],
    ["basic auth", { authorization: "Basic dXNlcjpwYXNz" }],
    ["garbage", { authorization: "Bearer garbage" }],
    ["well-formed, unknown", { authorization: "Bearer exd_aaaaaaaaaa_bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb" }],
    ["key in the query only", {}],
  ];
  for (const [name, headers] of badHeaders) {
    test(`${name} → 401 unauthorized on every route`, async () => {
      for (const [method, url, , body] of routes(exportId)) {
        const q = name === "key in the query only" ? `${url.includes("?") ? "&" : "?"}api_key=${keyA}` : "";
        const res = await rawRequest(
          base,
          method,
          url + q,
          { ...headers, "content-type": "application/json" },
          body,
        );
        assertError(res, 401, "unauthorized");
        assert.match(String(res.headers["www-authenticate"]), /^Bearer/);
      }
    });
  }

  test("right prefix, wrong secret → 401", async () => {
    const forged = `${keyA.slice(0, -4)}${keyA.endsWith("AAAA") ? "BBBB" : "AAAA"}`;
    assert.equal(keyPrefix(forged), keyPrefix(keyA));
    assertError(await rawRequest(base, "GET", "/v1/exports", bearer(forged)), 401, "unauthorized");
  });

  test("revoked and rotated-out keys → 401; the rotated-in key works with the same scopes", async () => {
    const key = await svc.key("tenant-a", ["exports:read"]);
    assert.equal((await rawRequest(base, "GET", "/v1/exports", bearer(key))).status, 200);
    const rotated = await rotateApiKey(svc.store, keyPrefix(key)!, now);
    await assertRefusedOnceCacheLapses(key);
    assert.equal((await rawRequest(base, "GET", "/v1/exports", bearer(rotated!.key))).status, 200);
    assertError(
      await rawRequest(base, "POST", "/v1/exports", jsonHeaders(rotated!.key), createBody),
      403,
      "insufficient_scope",
    );
    await svc.store.revokeApiKey(rotated!.prefix, now);
    await assertRefusedOnceCacheLapses(rotated!.key);
  });

  test("keys are stored as hashes only", async () => {
    const db = fs.readFileSync(path.join(svc.dataDir, "exportd.sqlite"));
    const wal = fs.existsSync(path.join(svc.dataDir, "exportd.sqlite-wal"))
      ? fs.readFileSync(path.join(svc.dataDir, "exportd.sqlite-wal"))
      : Buffer.alloc(0);
    for (const key of [keyA, keyB]) {
      // The secret is everything after exd_<prefix>_ — base64url, so it may itself hold "_".
      const secret = key.split("_").slice(2).join("_");
      assert.equal(db.includes(secret), false);
      assert.equal(wal.includes(secret), false);
    }
  });
});

describe("scopes", () => {
  for (const scope of SCOPES) {
    test(`a key without ${scope} → 403 insufficient_scope naming it, on every route that needs it`, async () => {
      const key = await svc.key(
        "tenant-a",
        SCOPES.filter((s) => s !== scope),
      );
      for (const [method, url, needed, body] of routes(exportId)) {
        const res = await rawRequest(base, method, url, jsonHeaders(key), body);
        if (needed === scope) {
          const error = assertError(res, 403, "insufficient_scope");
          assert.ok(error.message.includes(scope));
        } else {
          assert.ok(res.status < 400 || res.status === 409, `${method} ${url} → ${res.status}`);
        }
      }
    });
  }
});

describe("tenants", () => {
  test("another tenant's export is 404 on every id route and absent from its list", async () => {
    for (const [method, url, , body] of routes(exportId)) {
      if (!url.includes(exportId)) continue;
      assertError(await rawRequest(base, method, url, jsonHeaders(keyB), body), 404, "not_found");
    }
    const list = (await rawRequest(base, "GET", "/v1/exports", bearer(keyB))).json<{
      data: { id: string }[];
    }>();
    assert.equal(
      list.data.some((e) => e.id === exportId),
      false,
    );
    // And the owner still sees it untouched.
    const own = await rawRequest(base, "GET", `/v1/exports/${exportId}`, bearer(keyA));
    assert.equal(own.json<{ status: string }>().status, "succeeded");
  });
});

describe("signed links", () => {
  const fileGet = (url: URL | string, headers: Record<string, string> = {}) => {
    const u = typeof url === "string" ? url : url.pathname + url.search;
    return rawRequest(base, "GET", u, headers);
  };

  test("the link works without a key and ignores one that is sent", async () => {
    assert.equal((await fileGet(partUrl)).status, 200);
    assert.equal((await fileGet(partUrl, bearer("nonsense"))).status, 200);
  });

  test("tampered links → 403 invalid_signature", async () => {
    const sig = partUrl.searchParams.get("signature")!;
    const variants = [
      ["signature", `${sig.slice(0, -1)}${sig.endsWith("A") ? "B" : "A"}`],
      ["signature", ""],
      ["expires", String(Number(partUrl.searchParams.get("expires")) + 1)],
      ["expires", "abc"],
      ["filename", "evil.exe"],
    ];
    for (const [name, value] of variants) {
      const u = new URL(partUrl);
      u.searchParams.set(name!, value!);
      assertError(await fileGet(u), 403, "invalid_signature");
    }
  });

  test("a link is used exactly as issued: leading zeros in expires or an extra parameter → 403 invalid_signature; HEAD and Range keep working", async () => {
    const expires = partUrl.searchParams.get("expires")!;
    assert.match(expires, /^[1-9]\d*$/, "exportd writes expires without leading zeros");
    const altered = [
      partUrl.search.replace(`expires=${expires}`, `expires=0${expires}`),
      partUrl.search.replace(`expires=${expires}`, `expires=00${expires}`),
      `${partUrl.search}&download=1`,
      `${partUrl.search}&x=`,
      `${partUrl.search}&=x`,
      `?utm_source=mail&${partUrl.search.slice(1)}`,
    ];
    for (const search of altered) {
      assert.notEqual(search, partUrl.search);
      assertError(await fileGet(partUrl.pathname + search), 403, "invalid_signature");
    }
    // The same parameters in another order are the same link.
    const reordered = new URLSearchParams([...partUrl.searchParams].reverse());
    assert.equal((await fileGet(`${partUrl.pathname}?${reordered}`)).status, 200);
    const head = await rawRequest(base, "HEAD", partUrl.pathname + partUrl.search);
    assert.equal(head.status, 200);
    assert.equal(head.body, "");
    const range = await fileGet(partUrl, { range: "bytes=0-9" });
    assert.equal(range.status, 206);
    assert.equal(range.headers["content-length"], "10");
  });

  test("expired, and re-used after expiry → 403 link_expired", async () => {
    assert.equal((await fileGet(partUrl)).status, 200, "used once while valid");
    const saved = now;
    now = Number(partUrl.searchParams.get("expires")) * 1000 + 1;
    try {
      assertError(await fileGet(partUrl), 403, "link_expired");
      assertError(await fileGet(partUrl, { range: "bytes=0-10" }), 403, "link_expired");
    } finally {
      now = saved;
    }
  });

  test("path traversal and encoded slashes never reach a file, even when signed with the real secret", async () => {
    const secret = fs.readFileSync(path.join(svc.dataDir, "signing-secret"), "utf8").trim();
    const signer = new LinkSigner(secret);
    const expires = Math.floor(now / 1000) + 600;
    const keys = [
      "../signing-secret",
      "../exportd.sqlite",
      "exports/../../signing-secret",
      "exports/%2e%2e/%2e%2e/signing-secret",
      "exports%2F..%2F..%2Fsigning-secret",
      "..%2Fsigning-secret",
      "%2e%2e%2fsigning-secret",
      "exports/./x",
      "/etc/passwd",
      "exports//x",
      `${partUrl.pathname.replace("/files/", "")}%00.txt`,
      "exports/x/.hidden",
    ];
    for (const key of keys) {
      const signature = signer.sign({ key, expires, filename: "f" });
      const query = `?expires=${expires}&filename=f&signature=${signature}`;
      const res = await rawRequest(base, "GET", `/files/${key}${query}`);
      assert.ok([400, 403, 404].includes(res.status), `${key} → ${res.status}`);
      assert.equal(res.body.includes(secret), false, `${key} leaked the secret`);
      assert.equal(res.body.includes("SQLite format"), false, `${key} leaked the database`);
      assert.ok(res.json<{ error: { code: string } }>().error.code);
    }
  });
});

describe("malformed HTTP", () => {
  test("bytes that are not HTTP get a 400 in the envelope, then the connection closes", async () => {
    const url = new URL(base);
    for (const garbage of ["GARBAGE\r\n\r\n", "GET / HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n"]) {
      const answer = await new Promise<string>((resolve, reject) => {
        const socket = net.connect(Number(url.port), url.hostname, () => socket.write(garbage));
        let text = "";
        socket.on("data", (d: Buffer) => {
          text += d.toString();
        });
        socket.on("end", () => resolve(text));
        socket.on("error", reject);
      });
      assert.match(answer, /^HTTP\/1\.1 400 /);
      const body = JSON.parse(answer.slice(answer.indexOf("\r\n\r\n") + 4));
      assert.equal(body.error.code, "invalid_request");
      assert.match(body.error.request_id, /^req_/);
    }
  });
});

describe("bodies", () => {
  test("an oversized body → 413 payload_too_large, and nothing is created", async () => {
    const before = (await rawRequest(base, "GET", "/v1/exports", bearer(keyA))).json<{ data: unknown[] }>()
      .data.length;
    const huge = JSON.stringify({
      dataset: "events",
      from: "2026-11-01",
      to: "2026-11-02",
      pad: "x".repeat(1 << 20),
    });
    assertError(
      await rawRequest(base, "POST", "/v1/exports", jsonHeaders(keyA), huge),
      413,
      "payload_too_large",
    );
    const afterCount = (await rawRequest(base, "GET", "/v1/exports", bearer(keyA))).json<{
      data: unknown[];
    }>().data.length;
    assert.equal(afterCount, before);
  });
});
