/**
 * A real webhook receiver over HTTP for tests: records every request (headers, raw body, arrival
 * time), answers what the test scripts (a status, a redirect, never), and verifies signatures two
 * ways — with the `standardwebhooks` library and with an independent node:crypto HMAC check.
 */
import assert from "node:assert/strict";
import { createHmac, timingSafeEqual } from "node:crypto";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { Webhook } from "standardwebhooks";

export interface Received {
  id: string;
  timestamp: string;
  signature: string;
  body: string;
  json: {
    id: string;
    type: string;
    timestamp: string;
    tenant: { id: string; name: string | null } | null;
    data: Record<string, unknown>;
  };
  at: number;
  headers: http.IncomingHttpHeaders;
  /** The status the receiver answered with; null when it never answered (a hang). */
  answer: number | null;
}

/** What to answer: a status, a redirect, or no answer at all (the request hangs). */
export type Answer = { status: number; location?: string; body?: string } | "hang";

export class Receiver {
  readonly received: Received[] = [];
  /** Answers used in order; once empty, `fallback`. */
  script: Answer[] = [];
  fallback: Answer = { status: 204 };
  /** How long each answer is held back (a slow receiver keeps deliveries in flight). */
  delayMs = 0;
  private server: http.Server | null = null;
  private readonly hanging = new Set<http.ServerResponse>();
  port = 0;

  get url(): string {
    return `http://127.0.0.1:${this.port}/hooks`;
  }

  async start(port = 0): Promise<this> {
    this.server = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", () => {
        const body = Buffer.concat(chunks).toString("utf8");
        const answer = this.script.shift() ?? this.fallback;
        this.received.push({
          id: String(req.headers["webhook-id"]),
          timestamp: String(req.headers["webhook-timestamp"]),
          signature: String(req.headers["webhook-signature"]),
          body,
          json: JSON.parse(body),
          at: Date.now(),
          headers: req.headers,
          answer: answer === "hang" ? null : answer.status,
        });
        if (answer === "hang") {
          this.hanging.add(res);
          return;
        }
        const send = () => {
          res.writeHead(answer.status, answer.location ? { location: answer.location } : {});
          res.end(answer.body ?? "ok");
        };
        if (this.delayMs > 0) setTimeout(send, this.delayMs);
        else send();
      });
    });
    await new Promise<void>((resolve) => this.server?.listen(port, "127.0.0.1", resolve));
    this.port = (this.server.address() as AddressInfo).port;
    return this;
  }

  async stop(): Promise<void> {
    for (const res of this.hanging) res.destroy();
    this.hanging.clear();
    this.server?.closeAllConnections();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
    this.server = null;
  }

  ofType(type: string): Received[] {
    return this.received.filter((r) => r.json.type === type);
  }

  /**
   * The first request of each webhook-id, in arrival order (of one type when given). Delivery is at
   * least once: an answer the deliverer did not read within its timeout — on a loaded machine the
   * timer can fire before the waiting answer is read — is sent again. A repeat must carry the same
   * body, asserted here, so only true repeats are folded away.
   */
  distinct(type?: string): Received[] {
    const first = new Map<string, Received>();
    for (const r of type === undefined ? this.received : this.ofType(type)) {
      const seen = first.get(r.id);
      if (seen === undefined) first.set(r.id, r);
      else assert.equal(r.body, seen.body, `a repeat of ${r.id} carries the same body`);
    }
    return [...first.values()];
  }
}

/** The independent check: HMAC-SHA256 of `id.timestamp.body` with the base64 key after `whsec_`. */
export function hmacSignature(secret: string, r: Pick<Received, "id" | "timestamp" | "body">): string {
  const key = Buffer.from(secret.replace(/^whsec_/, ""), "base64");
  return createHmac("sha256", key).update(`${r.id}.${r.timestamp}.${r.body}`).digest("base64");
}

/** Asserts that `secret` verifies the delivery with the library and with the HMAC check. */
export function assertSigned(secret: string, r: Received): void {
  new Webhook(secret).verify(r.body, {
    "webhook-id": r.id,
    "webhook-timestamp": r.timestamp,
    "webhook-signature": r.signature,
  });
  const expected = Buffer.from(hmacSignature(secret, r));
  const found = r.signature
    .split(" ")
    .map((s) => s.split(",")[1] ?? "")
    .some((sig) => sig.length === expected.length && timingSafeEqual(Buffer.from(sig), expected));
  assert.ok(found, `no v1 signature of ${r.signature} matches the HMAC check`);
}
