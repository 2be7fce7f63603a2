/**
 * Server-Sent Events over a fetch body (browsers' EventSource cannot send Authorization), parsed as
 * WHATWG HTML §9.2 says: `event`, `id`, `data`, `retry` fields; comments ignored; CR, LF or CRLF
 * line ends. One parser serves the client's `readEvents` and the console's stream reader.
 */

/** One dispatched event: `event` defaults to "message"; `id` is the last id seen on the stream. */
export interface SseEvent {
  event: string;
  data: string;
  id: string | null;
}

/** One event as `readEvents` yields it: `retry` is the last `retry:` field seen (ms). */
export interface ServerSentEvent extends SseEvent {
  retry: number | null;
}

/** Feed it decoded text as it arrives; it gives back whole events (a partial line waits). */
export class SseParser {
  private buffer = "";
  private event = "";
  private data: string[] = [];
  private lastId: string | null = null;
  private lastRetry: number | null = null;
  private readonly retryAtDispatch = new WeakMap<SseEvent, number | null>();
  /** A CR at the end of a chunk may be the first half of CRLF: decided when the next chunk comes. */
  private pendingCr = false;

  /** The id of the last event (for Last-Event-ID when reconnecting). */
  get lastEventId(): string | null {
    return this.lastId;
  }

  /** The last `retry:` field seen when `event` was dispatched (milliseconds), or null. */
  retryOf(event: SseEvent): number | null {
    return this.retryAtDispatch.get(event) ?? null;
  }

  /** Parses a chunk; returns the events it completed. */
  push(chunk: string): SseEvent[] {
    let text = chunk;
    if (this.pendingCr && text.startsWith("\n")) text = text.slice(1);
    this.pendingCr = false;
    this.buffer += text;
    const events: SseEvent[] = [];
    for (;;) {
      const match = /\r\n|\r|\n/.exec(this.buffer);
      if (!match) break;
      if (match[0] === "\r" && match.index === this.buffer.length - 1) this.pendingCr = true;
      const line = this.buffer.slice(0, match.index);
      this.buffer = this.buffer.slice(match.index + match[0].length);
      const event = this.line(line);
      if (event) events.push(event);
    }
    return events;
  }

  private line(line: string): SseEvent | null {
    if (line === "") {
      if (this.data.length === 0) {
        this.event = "";
        return null;
      }
      const event = { event: this.event || "message", data: this.data.join("\n"), id: this.lastId };
      this.retryAtDispatch.set(event, this.lastRetry);
      this.event = "";
      this.data = [];
      return event;
    }
    if (line.startsWith(":")) return null; // a comment: heartbeats
    const colon = line.indexOf(":");
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") this.event = value;
    else if (field === "data") this.data.push(value);
    else if (field === "id" && !value.includes("\0")) this.lastId = value;
    else if (field === "retry" && /^[0-9]+$/.test(value)) this.lastRetry = Number(value);
    return null;
  }
}

/** Reads events from `body` until it ends. */
export async function* readEvents(body: ReadableStream<Uint8Array>): AsyncGenerator<ServerSentEvent> {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  const parser = new SseParser();
  try {
    for (;;) {
      const { value, done } = await reader.read();
      const text = done ? decoder.decode() : decoder.decode(value, { stream: true });
      for (const event of parser.push(text)) yield { ...event, retry: parser.retryOf(event) };
      if (done) return;
    }
  } finally {
    reader.releaseLock();
    await body.cancel().catch(() => {});
  }
}
