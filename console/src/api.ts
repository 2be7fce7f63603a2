/**
 * A small client for the routes the console uses. Every failure becomes an ApiError carrying the
 * envelope's code and message (or `network_error` when exportd could not be reached), so the page
 * shows each error the same way.
 */
import type {
  CreateBody,
  Dataset,
  DownloadLink,
  DryRunResult,
  ErrorDetail,
  Export,
  ExportPage,
} from "./types.js";

export class ApiError extends Error {
  constructor(
    /** HTTP status; 0 when no answer came. */
    readonly status: number,
    readonly code: string,
    message: string,
    readonly requestId: string | null = null,
    readonly details: ErrorDetail[] = [],
  ) {
    super(message);
    this.name = "ApiError";
  }

  /** Worth trying again by itself: no answer, 429, or 503 (the API's Retry-After cases). */
  get transient(): boolean {
    return this.status === 0 || this.status === 429 || this.status === 503;
  }
}

/** Any thrown value as an ApiError (an abort stays an abort for the caller to recognise). */
export function asApiError(err: unknown): ApiError {
  if (err instanceof ApiError) return err;
  return new ApiError(0, "client_error", err instanceof Error ? err.message : String(err));
}

export function isAbort(err: unknown): boolean {
  return err instanceof DOMException && err.name === "AbortError";
}

/** A random Idempotency-Key (crypto.randomUUID needs a secure context; getRandomValues does not). */
function idempotencyKey(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** The error an answer carries: its envelope, or the bare status when it has none. */
async function errorOf(res: Response): Promise<ApiError> {
  const text = await res.text().catch(() => "");
  try {
    const { error } = JSON.parse(text) as {
      error: { code: string; message: string; request_id?: string; details?: ErrorDetail[] };
    };
    if (typeof error?.code === "string") {
      return new ApiError(
        res.status,
        error.code,
        error.message,
        error.request_id ?? null,
        error.details ?? [],
      );
    }
  } catch {
    // not the envelope: a proxy's page, say
  }
  return new ApiError(res.status, `http_${res.status}`, `exportd answered ${res.status} ${res.statusText}.`);
}

export class ApiClient {
  /** `baseUrl`: exportd's origin (and path prefix, if any); `credential`: an API key or a token. */
  constructor(
    readonly baseUrl: string,
    private readonly credential: string,
  ) {}

  url(path: string): string {
    return new URL(path.replace(/^\//, ""), this.baseUrl.endsWith("/") ? this.baseUrl : `${this.baseUrl}/`)
      .href;
  }

  /** A raw request with the credential; network failures become ApiError(0, "network_error"). */
  async fetch(path: string, init: RequestInit = {}): Promise<Response> {
    const headers = new Headers(init.headers);
    headers.set("authorization", `Bearer ${this.credential}`);
    try {
      return await fetch(this.url(path), { ...init, headers, credentials: "omit" });
    } catch (err) {
      if (isAbort(err)) throw err;
      throw new ApiError(
        0,
        "network_error",
        "exportd cannot be reached. Check the connection and try again.",
      );
    }
  }

  private async json<T>(path: string, init: RequestInit = {}): Promise<T> {
    const headers = new Headers(init.headers);
    headers.set("accept", "application/json");
    if (init.body !== undefined) headers.set("content-type", "application/json");
    const res = await this.fetch(path, { ...init, headers });
    if (!res.ok) throw await errorOf(res);
    return (await res.json()) as T;
  }

  async datasets(signal?: AbortSignal): Promise<Dataset[]> {
    return (await this.json<{ data: Dataset[] }>("/v1/datasets", { signal })).data;
  }

  /** POST /v1/exports with `dry_run`: validates and estimates, creates nothing. */
  dryRun(body: CreateBody, signal?: AbortSignal): Promise<DryRunResult> {
    return this.json("/v1/exports", {
      method: "POST",
      body: JSON.stringify({ ...body, dry_run: true }),
      signal,
    });
  }

  /** POST /v1/exports with a fresh Idempotency-Key, so a retried click cannot create two. */
  create(body: CreateBody, key = idempotencyKey()): Promise<Export> {
    return this.json("/v1/exports", {
      method: "POST",
      body: JSON.stringify(body),
      headers: { "idempotency-key": key },
    });
  }

  get(id: string, signal?: AbortSignal): Promise<Export> {
    return this.json(`/v1/exports/${encodeURIComponent(id)}`, { signal });
  }

  list(cursor: string | null, limit = 10, signal?: AbortSignal): Promise<ExportPage> {
    const query = new URLSearchParams({ limit: String(limit) });
    if (cursor) query.set("cursor", cursor);
    return this.json(`/v1/exports?${query}`, { signal });
  }

  cancel(id: string): Promise<Export> {
    return this.json(`/v1/exports/${encodeURIComponent(id)}/cancel`, { method: "POST" });
  }

  /** A freshly signed link for one part (when the one in the status has expired). */
  downloadLink(id: string, part: number): Promise<DownloadLink> {
    return this.json(`/v1/exports/${encodeURIComponent(id)}/download?part=${part}&redirect=false`);
  }

  /** GET /v1/exports/{id}/events as a response to stream (the caller reads it). */
  async events(id: string, lastEventId: string | null, signal: AbortSignal): Promise<Response> {
    const headers: Record<string, string> = { accept: "text/event-stream" };
    if (lastEventId !== null) headers["last-event-id"] = lastEventId;
    return this.fetch(`/v1/exports/${encodeURIComponent(id)}/events`, { headers, signal });
  }

  /** The error an answer carries (for callers of `fetch`/`events`). */
  static errorOf(res: Response): Promise<ApiError> {
    return errorOf(res);
  }
}
