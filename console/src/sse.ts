/**
 * A Server-Sent Events parser (the WHATWG "event stream" format): feed it decoded text as it
 * arrives, get whole events back. The console reads the stream with fetch because EventSource cannot
 * send an Authorization header.
 */

/** One dispatched event: `event` defaults to "message"; `id` is the last id seen on the stream. */
export interface SseEvent {
  event: string;
  data: string;
  id: string | null;
}

export class SseParser {
  private buffer = "";
  private event = "";
  private data: string[] = [];
  private lastId: string | null = null;
  /** A CR at the end of a chunk may be the first half of CRLF: decided when the next chunk comes. */
  private pendingCr = false;

  /** The id of the last event (for Last-Event-ID when reconnecting). */
  get lastEventId(): string | null {
    return this.lastId;
  }

  /** Parses a chunk; returns the events it completed (a partial line waits for the next chunk). */
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
    return null;
  }
}
