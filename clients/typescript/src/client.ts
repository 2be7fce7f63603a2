/**
 * The hand-written layer over exportd's API: requests with the key or token as Bearer, the error
 * envelope turned into ExportdApiError, retries on 429/503 that honour Retry-After, creates with an
 * Idempotency-Key by default (so a retried create makes one export), lists as an async iterator
 * over pages, and `waitForExport` through Server-Sent Events with polling as the fallback. Uses
 * only fetch, TextDecoder and Web Crypto: it runs in Node 20+ and in browsers.
 */
import {
  ChecksumMismatchError,
  ExportdAbortError,
  ExportdApiError,
  ExportdClientError,
  ExportdNetworkError,
} from "./errors.js";
import { readEvents } from "./sse.js";
import {
  type CreateExportRequest,
  type DownloadLink,
  type DryRunResult,
  type ErrorEnvelope,
  type Export,
  type ExportPage,
  type ExportPart,
  isFinal,
  type ListExportsQuery,
} from "./types.js";

export interface ExportdClientOptions {
  /** Where exportd answers, e.g. `https://exports.example.com` (no trailing path needed). */
  baseUrl: string;
  /** An exportd API key, sent as `Authorization: Bearer <key>`. */
  apiKey?: string;
  /** A token handed over by an embedding product, sent as `Authorization: Bearer <token>`. */
  token?: string;
  /** The fetch to use (default: the global one). */
  fetch?: typeof fetch;
  /** How often a request answered 429 or 503 (or, when safe to repeat, lost on the network) is tried again. Default 4. */
  maxRetries?: number;
  /** The longest wait before a retry the client accepts (ms); a longer Retry-After fails at once. Default 60,000. */
  maxRetryWaitMs?: number;
}

/** Options every call takes. */
export interface CallOptions {
  /** Stops the call (and its retries and waits): it rejects with ExportdAbortError. */
  signal?: AbortSignal;
}

/** One progress stream event: `progress` while the export moves, `status` once it is final. */
export interface ProgressEvent {
  event: "progress" | "status";
  id: string | null;
  export: Export;
}

export interface WaitOptions extends CallOptions {
  /** Called with each new state of the export (also the first and the final one). */
  onProgress?: (exp: Export) => void;
  /** Use the progress stream (default true); false: poll only. */
  events?: boolean;
  /** Polling interval when the stream is not available (ms). Default 1,000. */
  pollIntervalMs?: number;
}

interface RequestOptions extends CallOptions {
  query?: Record<string, string | number | boolean | undefined>;
  body?: unknown;
  headers?: Record<string, string>;
  /** Whether a request lost on the network may be sent again (reads, creates with an Idempotency-Key). */
  repeatable: boolean;
  /** Whether 429 and 503 are waited out and sent again (default true). */
  retryRefusals?: boolean;
}

/** Waits `ms`, or rejects with ExportdAbortError when `signal` aborts first. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(new ExportdAbortError());
    const onAbort = () => {
      clearTimeout(timer);
      reject(new ExportdAbortError());
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/** Seconds of a `Retry-After` header (delay-seconds or an HTTP date); null when absent or unreadable. */
export function retryAfterSeconds(value: string | null, now = Date.now()): number | null {
  if (value === null) return null;
  if (/^[0-9]+$/.test(value.trim())) return Number(value.trim());
  const at = Date.parse(value);
  return Number.isNaN(at) ? null : Math.max(0, Math.ceil((at - now) / 1000));
}

/** Lowercase hex of the SHA-256 of `bytes` (Web Crypto). */
export async function sha256Hex(bytes: Uint8Array): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", bytes as Uint8Array<ArrayBuffer>);
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

function isAbort(err: unknown, signal?: AbortSignal): boolean {
  return signal?.aborted === true || (err instanceof Error && err.name === "AbortError");
}

/** A progress document's state without its signed links (which change every second). */
function stateOf(exp: Export): string {
  return JSON.stringify([exp.status, exp.progress, exp.queue_position, exp.parts.length, exp.error]);
}

export class ExportdClient {
  readonly baseUrl: string;
  private readonly authorization: string | null;
  private readonly fetchImpl: typeof fetch;
  private readonly maxRetries: number;
  private readonly maxRetryWaitMs: number;

  constructor(options: ExportdClientOptions) {
    this.baseUrl = options.baseUrl.replace(/\/+$/, "");
    const secret = options.token ?? options.apiKey;
    this.authorization = secret ? `Bearer ${secret}` : null;
    this.fetchImpl = options.fetch ?? globalThis.fetch.bind(globalThis);
    this.maxRetries = options.maxRetries ?? 4;
    this.maxRetryWaitMs = options.maxRetryWaitMs ?? 60_000;
  }

  /** The fetch this client uses (the Node entry downloads with it). */
  get fetch(): typeof fetch {
    return this.fetchImpl;
  }

  private url(path: string, query: RequestOptions["query"] = {}): string {
    const params = new URLSearchParams();
    for (const [name, value] of Object.entries(query))
      if (value !== undefined) params.set(name, String(value));
    const search = params.toString();
    return `${this.baseUrl}${path}${search ? `?${search}` : ""}`;
  }

  /**
   * Sends one request, trying again after 429 and 503 (waiting Retry-After, else 1 s doubling) and,
   * when `repeatable`, after network failures; answers ≥ 400 throw ExportdApiError.
   */
  private async send(method: string, path: string, options: RequestOptions): Promise<Response> {
    const headers: Record<string, string> = { accept: "application/json", ...options.headers };
    if (this.authorization) headers.authorization = this.authorization;
    if (options.body !== undefined) headers["content-type"] = "application/json";
    for (let attempt = 0; ; attempt++) {
      let res: Response;
      try {
        res = await this.fetchImpl(this.url(path, options.query), {
          method,
          headers,
          body: options.body === undefined ? undefined : JSON.stringify(options.body),
          signal: options.signal,
          redirect: "manual",
        });
      } catch (err) {
        if (isAbort(err, options.signal)) throw new ExportdAbortError();
        if (!options.repeatable || attempt >= this.maxRetries) {
          throw new ExportdNetworkError(`${method} ${path}: ${(err as Error).message}`, { cause: err });
        }
        await sleep(Math.min(1000 * 2 ** attempt, this.maxRetryWaitMs), options.signal);
        continue;
      }
      if (res.status < 400) return res;
      const error = await this.apiError(res);
      const refusal = res.status === 429 || res.status === 503;
      if (refusal && options.retryRefusals !== false && attempt < this.maxRetries) {
        const waitMs = (error.retryAfterSeconds ?? 2 ** attempt) * 1000;
        if (waitMs <= this.maxRetryWaitMs) {
          await sleep(waitMs, options.signal);
          continue;
        }
      }
      throw error;
    }
  }

  /** Reads an error answer's envelope (or makes one up for an answer without it). */
  private async apiError(res: Response): Promise<ExportdApiError> {
    const retryAfter = retryAfterSeconds(res.headers.get("retry-after"));
    let envelope: ErrorEnvelope | null = null;
    try {
      envelope = (await res.json()) as ErrorEnvelope;
    } catch {
      envelope = null;
    }
    const e = envelope?.error;
    return new ExportdApiError(
      res.status,
      e?.code ?? `http_${res.status}`,
      e?.message ?? `HTTP ${res.status} ${res.statusText}`,
      e?.request_id ?? res.headers.get("x-request-id"),
      e?.details ?? [],
      retryAfter,
    );
  }

  private async json<T>(method: string, path: string, options: RequestOptions): Promise<T> {
    const res = await this.send(method, path, options);
    try {
      return (await res.json()) as T;
    } catch (err) {
      if (isAbort(err, options.signal)) throw new ExportdAbortError();
      throw new ExportdNetworkError(`${method} ${path}: the answer broke off`, { cause: err });
    }
  }

  /**
   * Queues an export. An Idempotency-Key is sent by default (a random UUID, or the one given), so
   * the retries after 429/503 or a lost answer make exactly one export; `idempotencyKey: false` sends none.
   */
  createExport(
    request: CreateExportRequest,
    options: CallOptions & { idempotencyKey?: string | false } = {},
  ): Promise<Export> {
    const key = options.idempotencyKey === undefined ? crypto.randomUUID() : options.idempotencyKey;
    return this.json<Export>("POST", "/v1/exports", {
      signal: options.signal,
      body: request,
      headers: key === false ? {} : { "idempotency-key": key },
      repeatable: key !== false,
    });
  }

  /** Validates a request and estimates its rows, creating nothing. */
  dryRun(request: CreateExportRequest, options: CallOptions = {}): Promise<DryRunResult> {
    return this.json<DryRunResult>("POST", "/v1/exports", {
      signal: options.signal,
      body: { ...request, dry_run: true },
      repeatable: true,
    });
  }

  /** The export's current document. */
  getExport(id: string, options: CallOptions = {}): Promise<Export> {
    return this.json<Export>("GET", `/v1/exports/${encodeURIComponent(id)}`, {
      ...options,
      repeatable: true,
    });
  }

  /** One page of the tenant's exports, newest first; pass `next_cursor` as `cursor` for the next. */
  listExportsPage(
    query: ListExportsQuery & { cursor?: string } = {},
    options: CallOptions = {},
  ): Promise<ExportPage> {
    return this.json<ExportPage>("GET", "/v1/exports", { ...options, query, repeatable: true });
  }

  /** Every export matching `query`, newest first, fetching pages as the loop goes. */
  async *listExports(query: ListExportsQuery = {}, options: CallOptions = {}): AsyncGenerator<Export> {
    let cursor: string | undefined;
    do {
      const page = await this.listExportsPage({ ...query, cursor }, options);
      yield* page.data;
      cursor = page.next_cursor ?? undefined;
    } while (cursor);
  }

  /** Cancels a queued or running export (ExportdApiError `not_cancellable` once final). */
  cancelExport(id: string, options: CallOptions = {}): Promise<Export> {
    return this.json<Export>("POST", `/v1/exports/${encodeURIComponent(id)}/cancel`, {
      ...options,
      repeatable: true,
    });
  }

  /** A fresh signed link to one part (valid 20 minutes by default); needs `exports:download`. */
  downloadLink(id: string, part: number, options: CallOptions = {}): Promise<DownloadLink> {
    return this.json<DownloadLink>("GET", `/v1/exports/${encodeURIComponent(id)}/download`, {
      ...options,
      query: { part, redirect: false },
      repeatable: true,
    });
  }

  /** The part's link from the document when it is good for another minute, else a fresh one. */
  async partUrl(exp: Export, part: ExportPart, options: CallOptions = {}): Promise<string> {
    const expires = part.url_expires_at ? Date.parse(part.url_expires_at) : 0;
    if (part.url && expires - Date.now() > 60_000) return part.url;
    return (await this.downloadLink(exp.id, part.index, options)).url;
  }

  /**
   * The progress stream of one export (one connection, no reconnect): `progress` events, then the
   * `status` event of the final document, after which the server ends the stream. `lastEventId`
   * resumes: the current document comes first only if something changed since. A 429 or 503 is
   * thrown at once (ExportdApiError), not waited out: poll meanwhile, as `waitForExport` does.
   */
  async *events(
    id: string,
    options: CallOptions & { lastEventId?: string | null } = {},
  ): AsyncGenerator<ProgressEvent> {
    const headers: Record<string, string> = { accept: "text/event-stream" };
    if (options.lastEventId) headers["last-event-id"] = options.lastEventId;
    const res = await this.send("GET", `/v1/exports/${encodeURIComponent(id)}/events`, {
      signal: options.signal,
      headers,
      repeatable: true,
      // A refused stream (cap reached, server busy) is the caller's cue to poll, not to wait.
      retryRefusals: false,
    });
    if (!res.body) throw new ExportdNetworkError("The progress stream has no body.");
    try {
      for await (const e of readEvents(res.body)) {
        if (e.event !== "progress" && e.event !== "status") continue;
        yield { event: e.event, id: e.id, export: JSON.parse(e.data) as Export };
      }
    } catch (err) {
      if (isAbort(err, options.signal)) throw new ExportdAbortError();
      if (err instanceof ExportdClientError) throw err;
      throw new ExportdNetworkError(`The progress stream broke off: ${(err as Error).message}`, {
        cause: err,
      });
    }
  }

  /**
   * Waits until the export is final and returns its final document (whatever the status: check
   * `status`). Watches the progress stream, reconnecting with Last-Event-ID when it breaks; falls
   * back to polling `GET /v1/exports/{id}` when the stream is refused (cap reached, an older server)
   * or keeps breaking. `onProgress` hears every new state.
   */
  async waitForExport(id: string, options: WaitOptions = {}): Promise<Export> {
    const { signal, onProgress } = options;
    let lastState: string | null = null;
    const report = (exp: Export) => {
      const state = stateOf(exp);
      if (state !== lastState) {
        lastState = state;
        onProgress?.(exp);
      }
    };
    if (options.events !== false) {
      let lastEventId: string | null = null;
      let failures = 0;
      while (failures < 3) {
        let gotEvent = false;
        try {
          for await (const e of this.events(id, { signal, lastEventId })) {
            gotEvent = true;
            lastEventId = e.id;
            report(e.export);
            if (e.event === "status" || isFinal(e.export.status)) return e.export;
          }
        } catch (err) {
          if (err instanceof ExportdAbortError) throw err;
          if (err instanceof ExportdApiError) {
            if ([400, 401, 403, 404].includes(err.status)) throw err;
            break; // refused (too many streams, unavailable past the retries): poll instead
          }
        }
        // The stream ended or broke without the final event: reconnect after the server's retry.
        failures = gotEvent ? 0 : failures + 1;
        await sleep(2_000, signal);
      }
    }
    for (;;) {
      const exp = await this.getExport(id, { signal });
      report(exp);
      if (isFinal(exp.status)) return exp;
      await sleep(options.pollIntervalMs ?? 1_000, signal);
    }
  }

  /**
   * Downloads one part of a succeeded export into memory and checks its SHA-256 (throws
   * ChecksumMismatchError). For browsers and small parts; the Node entry writes to files and resumes.
   */
  async downloadPartBytes(exp: Export, index: number, options: CallOptions = {}): Promise<Uint8Array> {
    const part = exp.parts.find((p) => p.index === index);
    if (!part) throw new ExportdClientError(`Export ${exp.id} has no part ${index}.`);
    const url = await this.partUrl(exp, part, options);
    let res: Response;
    try {
      res = await this.fetchImpl(url, { signal: options.signal });
    } catch (err) {
      if (isAbort(err, options.signal)) throw new ExportdAbortError();
      throw new ExportdNetworkError(`Downloading ${part.filename}: ${(err as Error).message}`, {
        cause: err,
      });
    }
    if (res.status !== 200) throw await this.apiError(res);
    const bytes = new Uint8Array(await res.arrayBuffer());
    const actual = await sha256Hex(bytes);
    if (actual !== part.sha256) throw new ChecksumMismatchError(part.filename, part.sha256, actual);
    return bytes;
  }
}
