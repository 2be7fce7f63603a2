/**
 * Closing a listener without waiting on its clients' keep-alive connections. `app.close()` (Fastify,
 * then Node's `server.close()`) stops accepting and closes the connections Node counts as idle, then
 * waits for every other one to end by itself. Two kinds never would, short of a timeout:
 * - a connection opened but not used yet: Node counts it as receiving a request (its header timer
 *   runs from the connect), and `server.close()` also stops the checker that enforces that timer.
 *   undici (Node's fetch) opens such connections ahead of need, e.g. right after a request on
 *   another connection is aborted, and closes them itself only after the keep-alive time (~70 s);
 * - a connection whose request was in flight at close: when its response ends, Node keeps it open
 *   for the keep-alive timeout (72 s), since the response was started before the close.
 * The drain tracks every connection and its requests in flight: at close, a connection without one
 * is destroyed at once, one with a request in flight ends as soon as its last response is written
 * (`Connection: close` if its headers are not out yet), and whatever is left when the grace period
 * ends is destroyed.
 */
import type { IncomingMessage, Server, ServerResponse } from "node:http";
import type { Socket } from "node:net";
import type { FastifyInstance } from "fastify";

/**
 * Installs the drain on the app's server: its `preClose` hook starts it, so it runs on every
 * `app.close()`. `graceMs` bounds how long requests in flight may take to finish (0: not at all).
 */
export function installConnectionDrain(app: FastifyInstance, graceMs: number): void {
  const server: Server = app.server;
  /** Every open connection and the responses it still owes. */
  const connections = new Map<Socket, Set<ServerResponse>>();
  let draining = false;

  server.on("connection", (socket: Socket) => {
    if (draining) {
      // Accepted between the close and the listener's end: nothing was asked on it yet.
      socket.destroy();
      return;
    }
    connections.set(socket, new Set());
    socket.once("close", () => connections.delete(socket));
  });
  server.on("request", (req: IncomingMessage, res: ServerResponse) => {
    const socket = req.socket;
    const owed = connections.get(socket);
    if (!owed) return;
    owed.add(res);
    // `close` comes after the response is written (or the connection broke): Node has already
    // decided the connection's fate, keep-alive included, so the drain ends it here.
    res.once("close", () => {
      owed.delete(res);
      if (draining && owed.size === 0) socket.destroySoon();
    });
  });

  app.addHook("preClose", (done) => {
    draining = true;
    for (const [socket, owed] of connections) {
      if (owed.size === 0) {
        socket.destroy();
        continue;
      }
      // The client learns not to send another request on it. Requests it pipelined behind the one
      // in flight are not answered: the connection closes after that answer, and RFC 9112 §9.3.2
      // has the client retry unanswered requests on a new connection (browsers and fetch do not
      // pipeline).
      for (const res of owed) if (!res.headersSent) res.setHeader("connection", "close");
    }
    const destroyAll = () => {
      for (const socket of connections.keys()) socket.destroy();
    };
    if (graceMs === 0) destroyAll();
    else setTimeout(destroyAll, graceMs).unref();
    done();
  });
}
