/**
 * Hostile and careless clients against the built CLI as a real server process, over raw sockets:
 * what Node's server answers before Fastify (Expect, Host, CONNECT, oversized headers), paths the
 * /docs file server refuses, 200 clients reading a large download at about 1 KB/s (the server's RSS
 * stays bounded, also for a second wave; one more gets 503), and a client that
 * stops reading.
 */
import assert from "node:assert/strict";
import fs from "node:fs";
import net from "node:net";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { ERROR_CATALOGUE } from "../../src/domain/errors.js";
import { api, createKey, type ServerProcess, startServer, stopAll } from "../helpers/server-process.js";
import { pastMidnight, waitFor } from "../helpers/service.js";

const PART_BYTES = 96 * 1024 * 1024;
const SLOW_CLIENTS = 200;
const RSS_CEILING_MB = 300;

interface RawAnswer {
  status: number;
  headers: Record<string, string>;
  body: string;
}

/** Sends `text` as is on a fresh connection and reads the answer until the server closes it. */
function exchange(port: number, text: string): Promise<RawAnswer> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, "127.0.0.1", () => socket.write(text));
    const chunks: Buffer[] = [];
    socket.setTimeout(10_000, () => socket.destroy(new Error("no answer within 10 s")));
    socket.on("data", (d: Buffer) => chunks.push(d));
    socket.on("error", reject);
    socket.on("close", () => {
      const raw = Buffer.concat(chunks).toString("utf8");
      const split = raw.indexOf("\r\n\r\n");
      if (split < 0) return reject(new Error(`no HTTP answer: ${JSON.stringify(raw)}`));
      const [statusLine, ...lines] = raw.slice(0, split).split("\r\n");
      const headers: Record<string, string> = {};
      for (const line of lines) {
        const colon = line.indexOf(":");
        headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
      }
      resolve({ status: Number(statusLine?.split(" ")[1]), headers, body: raw.slice(split + 4) });
    });
  });
}

/** The answer is the envelope with a catalogued code whose documented status is the one sent. */
function assertEnvelope(answer: RawAnswer, status: number, code: string): void {
  assert.equal(answer.status, status, answer.body);
  assert.match(answer.headers["content-type"] ?? "", /^application\/json/);
  const body = JSON.parse(answer.body) as { error: { code: string; request_id: string; details: unknown[] } };
  assert.equal(body.error.code, code);
  assert.equal(ERROR_CATALOGUE[code as keyof typeof ERROR_CATALOGUE].status, status);
  assert.match(body.error.request_id, /^req_/);
  assert.ok(Array.isArray(body.error.details));
}

/** The server process's resident memory, MB (VmRSS from /proc). */
function rssMb(pid: number): number {
  const status = fs.readFileSync(`/proc/${pid}/status`, "utf8");
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1]) / 1024;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Creates a one-hour demo export, waits for it, and returns its one part's signed link and file. */
async function succeededPart(server: ServerProcess): Promise<{ link: URL; file: string }> {
  const key = createKey(server.dataDir, "edge");
  const client = api(server.url, key);
  const to = pastMidnight();
  const created = await client.post("/v1/exports", {
    dataset: "events",
    from: new Date(to - 3_600_000).toISOString(),
    to: new Date(to).toISOString(),
  });
  assert.equal(created.status, 202);
  const id = created.json.id;
  await waitFor(
    async () => (await client.get(`/v1/exports/${id}`)).json.status,
    (s) => s === "succeeded",
  );
  const link = await client.get<{ url: string }>(`/v1/exports/${id}/download?redirect=false`);
  const url = new URL(link.json.url);
  const file = path.join(server.dataDir, "objects", decodeURIComponent(url.pathname.replace("/files/", "")));
  assert.ok(fs.existsSync(file), file);
  return { link: url, file };
}

/** Puts `bytes` bytes in place of the part's file (the link signs the key and name, not the content). */
function growPart(file: string, bytes: number): void {
  const block = Buffer.alloc(1024 * 1024, "exportd ");
  const fd = fs.openSync(`${file}.grow`, "w");
  for (let written = 0; written < bytes; written += block.length) fs.writeSync(fd, block);
  fs.closeSync(fd);
  fs.renameSync(`${file}.grow`, file);
}

interface Reader {
  socket: net.Socket;
  /** Resolves with the status line's code once the headers arrived. */
  status: Promise<number>;
  received(): number;
}

/**
 * A download over a raw socket whose client takes `bytesPerSecond` (0: never reads after the
 * headers). Node reads a paused socket no further, so the kernel's buffers fill and the server's
 * writes wait on the client.
 */
function reader(port: number, link: URL, bytesPerSecond: number): Reader {
  const socket = net.connect(port, "127.0.0.1");
  socket.setNoDelay(true);
  let received = 0;
  let head = "";
  let resolveStatus: (status: number) => void = () => undefined;
  const status = new Promise<number>((resolve, reject) => {
    resolveStatus = resolve;
    socket.once("error", reject);
    socket.once("close", () => reject(new Error("closed before the headers")));
  });
  socket.write(`GET ${link.pathname}${link.search} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`);
  let headersSeen = false;
  // read() of a paused socket emits 'data' too, so this counts every byte the client took.
  socket.on("data", (d: Buffer) => {
    received += d.length;
    if (headersSeen) return;
    head += d.subarray(0, 4096).toString("latin1");
    const match = /^HTTP\/1\.1 (\d{3})/.exec(head);
    if (!match || !head.includes("\r\n\r\n")) return;
    headersSeen = true;
    resolveStatus(Number(match[1]));
    socket.pause();
    if (bytesPerSecond > 0) {
      const timer = setInterval(() => socket.read(Math.min(bytesPerSecond, socket.readableLength)), 1000);
      socket.once("close", () => clearInterval(timer));
    }
  });
  socket.on("error", () => undefined);
  return { socket, status, received: () => received };
}

after(() => stopAll());

describe("what Node's server answers before Fastify, in the envelope", () => {
  let server: ServerProcess;
  before(async () => {
    server = await startServer();
  });

  const cases: [string, string, number, string][] = [
    ["Expect: bogus", "GET /healthz HTTP/1.1\r\nHost: x\r\nExpect: bogus\r\n\r\n", 417, "expectation_failed"],
    ["no Host header", "GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n", 400, "invalid_request"],
    [
      "a malformed Host",
      "GET /healthz HTTP/1.1\r\nHost: a b\r\nConnection: close\r\n\r\n",
      400,
      "invalid_request",
    ],
    [
      "CONNECT",
      "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
      405,
      "method_not_allowed",
    ],
    [
      "headers over 16 KiB",
      `GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ${"a".repeat(20_000)}\r\n\r\n`,
      431,
      "header_too_large",
    ],
    [
      "GET /docs/static/.. as is",
      "GET /docs/static/.. HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
      403,
      "forbidden",
    ],
    [
      "GET /docs/static/%00",
      "GET /docs/static/%00 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
      403,
      "forbidden",
    ],
    ["an unknown path", "GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 404, "not_found"],
  ];
  for (const [name, text, status, code] of cases) {
    test(`${name} → ${status} ${code}`, async () => {
      const answer = await exchange(server.port, text);
      assertEnvelope(answer, status, code);
      if (code === "method_not_allowed") assert.equal(answer.headers.allow, "GET, HEAD, POST");
    });
  }

  test("the server still answers normally after all of them", async () => {
    const answer = await exchange(
      server.port,
      "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert.equal(answer.status, 200);
    assert.equal(server.child.exitCode, null);
  });
});

describe("clients that send too slowly", () => {
  test("headers or a body that do not arrive within the request timeout → 408 request_timeout, connection closed", {
    timeout: 30_000,
  }, async () => {
    const server = await startServer({ env: { EXPORTD_REQUEST_TIMEOUT_SECONDS: "1" } });
    const key = createKey(server.dataDir, "slow");
    const partial = [
      "GET /healthz HTTP/1.1\r\nHost: x\r\n",
      `POST /v1/exports HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${key}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"data`,
    ];
    for (const text of partial) {
      const started = Date.now();
      const answer = await exchange(server.port, text);
      assertEnvelope(answer, 408, "request_timeout");
      assert.ok(Date.now() - started >= 900, "not before the timeout");
    }
  });

  test("a request refused before its body arrived is answered once, then the connection closes", {
    timeout: 30_000,
  }, async () => {
    const server = await startServer({ env: { EXPORTD_REQUEST_TIMEOUT_SECONDS: "1" } });
    const answer = await exchange(
      server.port,
      'POST /v1/exports HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"data',
    );
    assertEnvelope(answer, 401, "unauthorized");
    assert.equal(answer.headers.connection, "close");
    assert.doesNotMatch(answer.body, /HTTP\/1\.1 408/, "no second answer on the same connection");
  });
});

describe("downloads under slow and stalled clients", () => {
  test(`${SLOW_CLIENTS} clients at 1 KB/s keep RSS under ${RSS_CEILING_MB} MB, twice in a row, and one more gets 503`, {
    timeout: 90_000,
  }, async () => {
    const server = await startServer({ env: { EXPORTD_MAX_DOWNLOADS: String(SLOW_CLIENTS) } });
    const pid = server.child.pid as number;
    const { link, file } = await succeededPart(server);
    growPart(file, PART_BYTES);
    const baseline = rssMb(pid);

    /** Download slots in use, from /metrics. */
    const inFlight = async () =>
      Number(
        /^exportd_downloads_in_flight (\d+)$/m.exec(await (await fetch(`${server.url}/metrics`)).text())?.[1],
      );
    /** SLOW_CLIENTS readers for `seconds`, RSS sampled every 200 ms; returns the peak. */
    const wave = async (seconds: number, whileReading: () => Promise<void>): Promise<number> => {
      // A slot is freed once the server sees its client leave, after the client closed its socket:
      // a wave sent right after another may otherwise meet slots not yet freed.
      await waitFor(inFlight, (n) => n === 0);
      const readers = Array.from({ length: SLOW_CLIENTS }, () => reader(server.port, link, 1024));
      try {
        const statuses = await Promise.all(readers.map((r) => r.status));
        assert.deepEqual(new Set(statuses), new Set([200]));
        assert.equal(await inFlight(), SLOW_CLIENTS);
        await whileReading();
        let peak = 0;
        for (let i = 0; i < seconds * 5; i++) {
          peak = Math.max(peak, rssMb(pid));
          await sleep(200);
        }
        return peak;
      } finally {
        for (const r of readers) r.socket.destroy();
      }
    };
    const first = await wave(5, async () => {
      // Past the cap: the envelope, 503, Retry-After.
      const refused = await exchange(
        server.port,
        `GET ${link.pathname}${link.search} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`,
      );
      assertEnvelope(refused, 503, "too_many_downloads");
      assert.ok(Number(refused.headers["retry-after"]) >= 1);
    });
    // Every slot is free again once they left: a whole wave is admitted again.
    const second = await wave(3, async () => undefined);
    const left = rssMb(pid);
    console.log(
      `RSS: baseline ${baseline.toFixed(0)} MB, ${SLOW_CLIENTS} slow readers ${first.toFixed(0)} MB, ` +
        `second wave ${second.toFixed(0)} MB, after they left ${left.toFixed(0)} MB`,
    );
    assert.ok(first < RSS_CEILING_MB, `peak RSS ${first.toFixed(0)} MB`);
    // The pool's buffers serve the second wave too: memory does not pile up wave after wave.
    assert.ok(second < RSS_CEILING_MB, `second wave ${second.toFixed(0)} MB after ${first.toFixed(0)} MB`);
    assert.ok(left < RSS_CEILING_MB);
  });

  test("a client that takes no bytes for the stall timeout is disconnected", {
    timeout: 60_000,
  }, async () => {
    const server = await startServer({ env: { EXPORTD_DOWNLOAD_STALL_SECONDS: "1" } });
    const { link, file } = await succeededPart(server);
    growPart(file, 32 * 1024 * 1024);
    const stalled = reader(server.port, link, 0);
    assert.equal(await stalled.status, 200);
    await sleep(4000);
    // A cut connection only shows once the client reads what its kernel kept: read on, to the end.
    const closed = new Promise((resolve) => stalled.socket.once("close", resolve));
    stalled.socket.resume();
    await closed;
    assert.ok(stalled.received() < 32 * 1024 * 1024, `the download was cut: ${stalled.received()} bytes`);
    // The slot it held is free: a normal client downloads the whole part.
    const res = await fetch(link);
    assert.equal((await res.arrayBuffer()).byteLength, 32 * 1024 * 1024);
  });
});
