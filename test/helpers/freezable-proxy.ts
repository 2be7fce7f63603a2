/**
 * A TCP proxy that can hang like a stalled network or a frozen server: `freeze()` stops forwarding
 * and stops reading on every connection it carries (the peers' kernels still accept bytes until
 * their windows fill, and nothing errors), and new connections are accepted but not forwarded;
 * `thaw()` lets everything flow again. `freezeExisting()` hangs only the connections open now, so
 * new ones pass: a hung connection, not a hung server. `freezeAfter(bytes)` hangs the connections open
 * once that many more bytes have come back from the server (like freezeExisting).
 */
import net from "node:net";
import { freePort } from "./net.js";

export interface FreezableProxy {
  /** Where clients connect: 127.0.0.1:port. */
  port: number;
  freeze(): void;
  freezeAfter(bytes: number): void;
  freezeExisting(): void;
  thaw(): void;
  /** Whether a freeze (of any kind) is on. */
  readonly frozen: boolean;
  close(): Promise<void>;
}

/** `port`: listen there (a proxy started again on the port of one that was closed). */
export async function startFreezableProxy(
  target: { host: string; port: number },
  listenOn?: number,
): Promise<FreezableProxy> {
  const port = listenOn ?? (await freePort());
  /** Sockets of every connection, and those hung by freezeExisting. */
  const sockets = new Set<net.Socket>();
  const hung = new Set<net.Socket>();
  let frozen = false;
  let armedBytes: number | null = null;

  const isHung = (s: net.Socket) => frozen || hung.has(s);
  const freeze = () => {
    frozen = true;
    armedBytes = null;
    for (const s of sockets) s.pause();
  };
  const hangExisting = () => {
    armedBytes = null;
    for (const s of sockets) {
      hung.add(s);
      s.pause();
    }
  };
  const server = net.createServer((client) => {
    const upstream = net.connect(target.port, target.host);
    const pair = [client, upstream];
    for (const s of pair) {
      sockets.add(s);
      s.on("error", () => undefined);
      s.on("close", () => {
        sockets.delete(s);
        hung.delete(s);
        for (const other of pair) other.destroy();
      });
    }
    // Not pipe(): its drain handler would resume a socket this proxy paused on purpose.
    const forward = (from: net.Socket, to: net.Socket) => {
      from.on("data", (chunk: Buffer) => {
        if (!to.write(chunk)) {
          from.pause();
          to.once("drain", () => {
            if (!isHung(from)) from.resume();
          });
        }
      });
      from.on("end", () => to.end());
    };
    forward(client, upstream);
    forward(upstream, client);
    upstream.on("data", (chunk: Buffer) => {
      if (armedBytes === null) return;
      armedBytes -= chunk.length;
      if (armedBytes <= 0) hangExisting();
    });
    if (frozen) for (const s of pair) s.pause();
  });
  await new Promise<void>((resolve) => server.listen(port, "127.0.0.1", resolve));

  return {
    port,
    freeze,
    freezeAfter(bytes) {
      armedBytes = bytes;
    },
    freezeExisting: hangExisting,
    thaw() {
      frozen = false;
      armedBytes = null;
      for (const s of sockets) if (!hung.has(s)) s.resume();
    },
    get frozen() {
      return frozen || hung.size > 0;
    },
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
