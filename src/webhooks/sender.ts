/**
 * Posts one webhook delivery, safely: only to an `https` URL (or `http` when the operator allows
 * it), to an address that is not in a forbidden network (domain/ip-address.ts) unless the operator
 * allows that network, resolved at delivery time and pinned for the connection (the socket goes to
 * the very address that was checked: no DNS rebinding between check and connect), with one timeout
 * for the whole exchange, no redirect followed, and only the first KiB of the answer read.
 */
import { lookup as dnsLookup } from "node:dns/promises";
import http from "node:http";
import https from "node:https";
import type { LookupFunction } from "node:net";
import { formatIp, type IpAddress, type Network, parseIp, refusedAddress } from "../domain/ip-address.js";
import { RESPONSE_LOG_BYTES } from "../domain/webhooks.js";

/** What the operator allows (EXPORTD_WEBHOOK_ALLOW_HTTP, EXPORTD_WEBHOOK_ALLOW_NETWORKS). */
export interface UrlPolicy {
  allowHttp: boolean;
  allowedNetworks: readonly Network[];
}

/** A URL or address a webhook may not use; the message says why (400 invalid_webhook_url at create). */
export class WebhookUrlError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "WebhookUrlError";
  }
}

/** Resolves a name to all its addresses (injectable for tests). */
export type Resolver = (host: string) => Promise<{ address: string; family: number }[]>;

const systemResolver: Resolver = (host) => dnsLookup(host, { all: true, verbatim: true });

/** `resolve` that gives up after `ms` (ETIMEOUT): a slow DNS holds neither a request nor a delivery. */
export function boundedResolver(resolve: Resolver, ms: number): Resolver {
  return (host) =>
    new Promise((done, fail) => {
      const timer = setTimeout(
        () => fail(Object.assign(new Error(`no DNS answer within ${ms} ms`), { code: "ETIMEOUT" })),
        ms,
      );
      resolve(host).then(
        (found) => {
          clearTimeout(timer);
          done(found);
        },
        (err: unknown) => {
          clearTimeout(timer);
          fail(err);
        },
      );
    });
}

/** The URL's form: absolute, https (or http when allowed), no credentials, at most 2,048 characters. */
export function checkUrlForm(raw: string, policy: UrlPolicy): URL {
  if (raw.length > 2048) throw new WebhookUrlError("The URL is longer than 2,048 characters.");
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new WebhookUrlError("Not an absolute URL.");
  }
  if (url.protocol !== "https:" && !(url.protocol === "http:" && policy.allowHttp))
    throw new WebhookUrlError(
      policy.allowHttp ? "The URL must use https or http." : "The URL must use https.",
    );
  if (url.username || url.password) throw new WebhookUrlError("The URL may not carry credentials.");
  if (url.hash) throw new WebhookUrlError("The URL may not carry a fragment.");
  return url;
}

/** The host as an address when it is one (WHATWG URL already turned `0x7f.1`, `2130706433`… into dotted form). */
function literalAddress(url: URL): IpAddress | null {
  const host = url.hostname.replace(/^\[|\]$/g, "");
  return parseIp(host);
}

/**
 * The address to connect to: the literal, or every address the name resolves to — all of them
 * must be allowed (a name that resolves to one public and one private address is refused).
 */
export async function resolveAllowed(
  url: URL,
  policy: UrlPolicy,
  resolve: Resolver = boundedResolver(systemResolver, 3000),
): Promise<{ address: string; family: 4 | 6 }> {
  const literal = literalAddress(url);
  const candidates: IpAddress[] = [];
  if (literal) candidates.push(literal);
  else {
    let found: { address: string; family: number }[];
    try {
      found = await resolve(url.hostname);
    } catch (err) {
      throw new WebhookUrlError(
        `${url.hostname} does not resolve (${(err as NodeJS.ErrnoException).code ?? "error"}).`,
      );
    }
    for (const f of found) {
      const ip = parseIp(f.address);
      if (!ip) throw new WebhookUrlError(`${url.hostname} resolves to ${f.address}, which is no address.`);
      candidates.push(ip);
    }
  }
  if (candidates.length === 0) throw new WebhookUrlError(`${url.hostname} resolves to no address.`);
  for (const ip of candidates) {
    const refusal = refusedAddress(ip, policy.allowedNetworks);
    if (refusal)
      throw new WebhookUrlError(
        literal ? `The URL's host ${refusal}.` : `${url.hostname} resolves to ${formatIp(ip)}: ${refusal}.`,
      );
  }
  const first = candidates[0] as IpAddress;
  return { address: formatIp(first), family: first.family };
}

/** How one POST ended. `status` null: no answer (refused address, timeout, connection error). */
export interface SendResult {
  status: number | null;
  durationMs: number;
  error: string | null;
  /** The first RESPONSE_LOG_BYTES of the answer's body. */
  response: string | null;
}

export interface SendOptions {
  policy: UrlPolicy;
  timeoutMs: number;
  resolve?: Resolver;
  userAgent?: string;
}

/** POSTs `body` as JSON to `rawUrl` with `headers`; never throws (the result says what happened). */
export async function postWebhook(
  rawUrl: string,
  headers: Record<string, string>,
  body: string,
  options: SendOptions,
): Promise<SendResult> {
  const started = performance.now();
  const elapsed = () => Math.round(performance.now() - started);
  let url: URL;
  let pinned: { address: string; family: 4 | 6 };
  try {
    url = checkUrlForm(rawUrl, options.policy);
    // Name resolution counts against the attempt's timeout too.
    pinned = await resolveAllowed(
      url,
      options.policy,
      boundedResolver(options.resolve ?? systemResolver, options.timeoutMs),
    );
  } catch (err) {
    return {
      status: null,
      durationMs: elapsed(),
      error: `refused: ${(err as Error).message}`,
      response: null,
    };
  }
  // The socket connects to the checked address, whatever the name would resolve to by then.
  const lookup: LookupFunction = (_host, opts, callback) => {
    if ((opts as { all?: boolean }).all) callback(null, [{ address: pinned.address, family: pinned.family }]);
    else callback(null, pinned.address, pinned.family);
  };
  const client = url.protocol === "https:" ? https : http;
  return new Promise<SendResult>((resolve) => {
    let settled = false;
    const finish = (result: Omit<SendResult, "durationMs">) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve({ ...result, durationMs: elapsed() });
    };
    const req = client.request(
      {
        protocol: url.protocol,
        hostname: url.hostname.replace(/^\[|\]$/g, ""),
        port: url.port || undefined,
        path: `${url.pathname}${url.search}`,
        method: "POST",
        lookup,
        agent: false,
        headers: {
          "content-type": "application/json",
          "content-length": String(Buffer.byteLength(body)),
          "user-agent": options.userAgent ?? "exportd-webhooks",
          ...headers,
        },
      },
      (res) => {
        const status = res.statusCode ?? null;
        const chunks: Buffer[] = [];
        let kept = 0;
        const done = () => {
          const text = Buffer.concat(chunks).subarray(0, RESPONSE_LOG_BYTES).toString("utf8");
          finish({ status, error: null, response: text });
          res.destroy();
        };
        res.on("data", (chunk: Buffer) => {
          chunks.push(chunk);
          kept += chunk.length;
          // The log keeps the first KiB: no need to wait for the rest of a large answer.
          if (kept >= RESPONSE_LOG_BYTES) done();
        });
        res.on("end", done);
        res.on("error", done);
      },
    );
    const timer = setTimeout(() => {
      req.destroy();
      finish({ status: null, error: `timed out after ${options.timeoutMs} ms`, response: null });
    }, options.timeoutMs);
    req.on("error", (err: NodeJS.ErrnoException) =>
      finish({ status: null, error: err.code ? `${err.code}: ${err.message}` : err.message, response: null }),
    );
    req.end(body);
  });
}
