/**
 * SIGTERM against the real server process, with clients that leave connections behind: progress
 * streams read with Node's fetch (undici) and aborted — undici then opens spare connections it sends
 * nothing on —, bare TCP connections that never send a request, idle keep-alive connections on the
 * public and the operator listener (EXPORTD_ADMIN_PORT), and a download in flight. The process must
 * end the open streams, let the download finish, close the rest at once and exit: before the fix it
 * waited for the clients to drop their connections (undici: after the 72 s keep-alive time).
 * A download whose client stops reading is cut when EXPORTD_SHUTDOWN_GRACE_SECONDS ends.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import http from "node:http";
import net from "node:net";
import { after, before, describe, test } from "node:test";
import { freePort } from "../helpers/net.js";
import {
  api,
  createKey,
  type ExportView,
  type ServerProcess,
  startServer,
  stopAll,
  tempDataDir,
} from "../helpers/server-process.js";
import { pastMidnight, waitFor } from "../helpers/service.js";

const DAY = 86_400_000;
/** The server's keep-alive timeout (http/app.ts): a process that waits on its clients exits after it. */
const KEEP_ALIVE_MS = 72_000;

after(() => stopAll());

/** Resolves with the exit code once the process has exited. */
function exitOf(server: ServerProcess): Promise<number | null> {
  const { child } = server;
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(child.exitCode);
  return new Promise((resolve) => child.once("exit", (code) => resolve(code)));
}

/** A TCP connection that sends nothing; resolves once connected. */
function bareConnection(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, "127.0.0.1", () => resolve(socket));
    socket.once("error", reject);
  });
}

/** GET on a keep-alive agent; the connection stays open and idle afterwards. */
function keepAliveGet(agent: http.Agent, url: string): Promise<number> {
  return new Promise((resolve, reject) => {
    http
      .get(url, { agent }, (res) => {
        res.resume();
        res.once("end", () => resolve(res.statusCode ?? 0));
      })
      .once("error", reject);
  });
}

/** Opens a progress stream with fetch and reads its first event. */
async function openStream(url: string, key: string, id: string) {
  const controller = new AbortController();
  const res = await fetch(`${url}/v1/exports/${id}/events`, {
    headers: { authorization: `Bearer ${key}` },
    signal: controller.signal,
  });
  assert.equal(res.status, 200);
  const reader = (res.body as ReadableStream<Uint8Array>).getReader();
  let text = "";
  while (!text.includes("event: ")) {
    const { value, done } = await reader.read();
    assert.ok(!done, "the stream ended before its first event");
    text += Buffer.from(value).toString();
  }
  return { controller, reader };
}

/** Reads what is left of a body; the bytes, or the error that broke it. */
async function readRest(reader: ReadableStreamDefaultReader<Uint8Array>): Promise<Buffer | Error> {
  const chunks: Buffer[] = [];
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return Buffer.concat(chunks);
      chunks.push(Buffer.from(value));
    }
  } catch (err) {
    return err as Error;
  }
}

describe("SIGTERM with clients that keep connections open", () => {
  const dataDir = tempDataDir();
  let key: string;
  /** A succeeded export with one part of several MB, more than the sockets between us buffer. */
  let part: ExportView["parts"][number];

  before(async () => {
    // A first process (worker included) makes the file to download, then stops.
    const maker = await startServer({ dataDir });
    key = createKey(dataDir, "acme");
    const to = pastMidnight();
    const created = await api(maker.url, key).post("/v1/exports", {
      dataset: "events",
      from: new Date(to - 14 * DAY).toISOString(),
      to: new Date(to).toISOString(),
      format: "csv",
      part_max_rows: 10_000_000,
    });
    assert.equal(created.status, 202, JSON.stringify(created.json));
    const done = await waitFor(
      async () => (await api(maker.url, key).get(`/v1/exports/${created.json.id}`)).json,
      (e) => e.status !== "queued" && e.status !== "running",
      120_000,
    );
    assert.equal(done.status, "succeeded", JSON.stringify(done.error));
    part = done.parts[0] as ExportView["parts"][number];
    assert.ok(part.bytes > 8 * 1024 * 1024, `part of ${part.bytes} bytes`);
    await maker.stop();
  });

  /**
   * An API-only process (no worker: the watched export stays queued, its streams stay open) with
   * the operator API on its own port, and a download of the part started and left unread.
   */
  async function serveWithDownload(graceSeconds: number) {
    const adminPort = await freePort();
    const server = await startServer({
      dataDir,
      env: {
        EXPORTD_ROLE: "api",
        EXPORTD_ADMIN_PORT: String(adminPort),
        EXPORTD_SHUTDOWN_GRACE_SECONDS: String(graceSeconds),
        EXPORTD_LOG_LEVEL: "info",
      },
    });
    // The link was signed by the first process: the same path and signature, on this one's port.
    const link = new URL(part.url);
    const download = await fetch(`${server.url}${link.pathname}${link.search}`);
    assert.equal(download.status, 200);
    const body = (download.body as ReadableStream<Uint8Array>).getReader();
    const first = await body.read();
    assert.ok(!first.done);
    return { server, adminPort, body, first: Buffer.from(first.value) };
  }

  /** SIGTERM, then waits until the process says it is shutting down. */
  async function terminate(server: ServerProcess): Promise<void> {
    server.child.kill("SIGTERM");
    await waitFor(
      () => server.output(),
      (out) => out.includes('"msg":"shutting down"'),
    );
  }

  test("streams end, idle connections close, the download in flight completes, then the process exits", {
    timeout: 150_000,
  }, async () => {
    const { server, adminPort, body, first } = await serveWithDownload(60);
    const client = api(server.url, key);
    const queued = await client.post("/v1/exports", {
      dataset: "events",
      from: new Date(pastMidnight() - DAY).toISOString(),
      to: new Date(pastMidnight()).toISOString(),
      format: "csv",
    });
    assert.equal(queued.status, 202, JSON.stringify(queued.json));
    const id = queued.json.id;

    const streams = [];
    for (let i = 0; i < 3; i++) streams.push(await openStream(server.url, key, id));
    // Idle keep-alive connections of fetch, of Node's http client and on the operator listener.
    assert.equal((await client.get(`/v1/exports/${id}`)).status, 200);
    const agent = new http.Agent({ keepAlive: true });
    assert.equal(await keepAliveGet(agent, `${server.url}/healthz`), 200);
    assert.equal(await keepAliveGet(agent, `http://127.0.0.1:${adminPort}/healthz`), 200);
    // Connections that never carry a request: undici's spares after an abort, and bare ones.
    for (const stream of streams.slice(0, 2)) stream.controller.abort();
    const bare = [await bareConnection(server.port), await bareConnection(adminPort)];
    const bareClosed = bare.map((s) => new Promise<void>((resolve) => s.once("close", () => resolve())));
    for (const s of bare) s.on("error", () => undefined);

    const exited = exitOf(server);
    await terminate(server);
    // The stream left open ends cleanly (not cut).
    const rest = await readRest((streams[2] as (typeof streams)[number]).reader);
    assert.ok(Buffer.isBuffer(rest), `the open stream ended with ${String(rest)}`);
    // The process cannot have exited: the download is not read yet, and it is larger than what
    // the sockets between us hold.
    assert.equal(server.child.exitCode, null, "exited before the download in flight was read");
    const tail = await readRest(body);
    assert.ok(Buffer.isBuffer(tail), `the download broke: ${String(tail)}`);
    const whole = Buffer.concat([first, tail]);
    assert.equal(whole.length, part.bytes);
    assert.equal(createHash("sha256").update(whole).digest("hex"), part.sha256);
    const downloaded = Date.now();

    assert.equal(await exited, 0, server.stderr());
    // Waiting on any client connection would mean waiting for the keep-alive time (the clients
    // close idle connections near it): the process must exit well before.
    const waited = Date.now() - downloaded;
    assert.ok(waited < KEEP_ALIVE_MS / 2, `exited ${waited} ms after the download ended`);
    await Promise.all(bareClosed);
    agent.destroy();
  });

  test("a download whose client stops reading is cut when the grace period ends", {
    timeout: 150_000,
  }, async () => {
    const { server, body, first } = await serveWithDownload(1);
    const exited = exitOf(server);
    const idle = await bareConnection(server.port);
    idle.on("error", () => undefined);
    await terminate(server);
    // Nothing more is read until the process is gone.
    assert.equal(await exited, 0, server.stderr());
    const rest = await readRest(body);
    assert.ok(
      rest instanceof Error || first.length + rest.length < part.bytes,
      "the download was cut, not completed",
    );
  });
});
