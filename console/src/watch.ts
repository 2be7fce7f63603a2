/**
 * Follows one export until it is final: the live stream GET /v1/exports/{id}/events (Server-Sent
 * Events read with fetch, resumed with Last-Event-ID after a drop), or polling GET /v1/exports/{id}
 * every second when the server has no such route (404) or the stream keeps failing.
 */

import { SseParser } from "../../clients/typescript/src/sse.js";
import { ApiClient, ApiError, isAbort } from "./api.js";
import { isFinalStatus } from "./status.js";
import type { Export } from "./types.js";

export interface WatchOptions {
  /** Called with every document received, the first one at once. */
  onUpdate: (doc: Export) => void;
  /** Called when a transient failure (no answer, 429, 503) is being ridden out. */
  onTrouble?: (err: ApiError | null) => void;
  /** How the updates arrive: "stream" or "polling" (shown on the page, read by the tests). */
  onMode?: (mode: "stream" | "polling") => void;
  signal: AbortSignal;
  pollMs?: number;
}

/** Stream failures in a row after which polling takes over. */
const STREAM_ATTEMPTS = 3;

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    const timer = setTimeout(() => {
      signal.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal.reason);
    };
    signal.addEventListener("abort", onAbort, { once: true });
  });
}

/**
 * A stream silent for this long (no event, no heartbeat) is taken for dead and reconnected: the
 * server sends a heartbeat comment well within it, and a proxy may hold a dead connection open.
 */
const STALL_MS = 45_000;

/** Reads one stream; resolves with the final document, or null when the stream ended before it. */
async function readStream(
  res: Response,
  parser: SseParser,
  onUpdate: (doc: Export) => void,
): Promise<Export | null> {
  if (!res.body) return null;
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let stall: ReturnType<typeof setTimeout> | undefined;
  const stalled = () =>
    new Promise<never>((_, reject) => {
      stall = setTimeout(
        () => reject(new DOMException("The event stream went silent.", "TimeoutError")),
        STALL_MS,
      );
    });
  try {
    for (;;) {
      const { value, done } = await Promise.race([reader.read(), stalled()]);
      clearTimeout(stall);
      if (done) return null;
      for (const event of parser.push(value)) {
        if (event.event !== "progress" && event.event !== "status") continue;
        const doc = JSON.parse(event.data) as Export;
        onUpdate(doc);
        if (event.event === "status" || isFinalStatus(doc.status)) return doc;
      }
    }
  } finally {
    clearTimeout(stall);
    reader.cancel().catch(() => {});
  }
}

/** Resolves with the final document; rejects with an ApiError the page should show, or on abort. */
export async function watchExport(client: ApiClient, id: string, options: WatchOptions): Promise<Export> {
  const { onUpdate, signal } = options;
  const pollMs = options.pollMs ?? 1000;
  const parser = new SseParser();
  let streamFailures = 0;
  let streaming = true;
  while (streaming) {
    try {
      const res = await client.events(id, parser.lastEventId, signal);
      if (res.status === 404 || res.status === 405) {
        await res.body?.cancel();
        break; // no events route on this server: poll
      }
      if (!res.ok) throw await ApiClient.errorOf(res);
      if (!res.headers.get("content-type")?.startsWith("text/event-stream")) break;
      options.onMode?.("stream");
      options.onTrouble?.(null);
      const final = await readStream(res, parser, onUpdate);
      if (final) return final;
      streamFailures = 0; // it worked and was closed: reconnect where it stopped
    } catch (err) {
      if (isAbort(err) || signal.aborted) throw err;
      const apiError = err instanceof ApiError ? err : null;
      if (apiError && !apiError.transient) throw apiError;
      options.onTrouble?.(apiError);
      if (++streamFailures >= STREAM_ATTEMPTS) streaming = false;
      else await sleep(pollMs, signal);
    }
  }
  options.onMode?.("polling");
  for (;;) {
    try {
      const doc = await client.get(id, signal);
      options.onTrouble?.(null);
      onUpdate(doc);
      if (isFinalStatus(doc.status)) return doc;
    } catch (err) {
      if (isAbort(err) || signal.aborted) throw err;
      if (!(err instanceof ApiError) || !err.transient) throw err;
      options.onTrouble?.(err);
    }
    await sleep(pollMs, signal);
  }
}
