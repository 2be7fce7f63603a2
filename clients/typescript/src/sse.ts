/**
 * A Server-Sent Events reader over a fetch body (browsers' EventSource cannot send Authorization):
 * yields each event's name, id and data as the stream brings them (WHATWG HTML §9.2 parsing:
 * `event`, `id`, `data`, `retry` fields; comments ignored; CR, LF or CRLF line ends).
 */

/** One event: `event` defaults to "message"; `retry` is the last `retry:` field seen (ms). */
export interface ServerSentEvent {
  event: string;
  id: string | null;
  data: string;
  retry: number | null;
}

/** Reads events from `body` until it ends. */
export async function* readEvents(body: ReadableStream<Uint8Array>): AsyncGenerator<ServerSentEvent> {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  let event = "";
  let data: string[] = [];
  let id: string | null = null;
  let retry: number | null = null;
  try {
    for (;;) {
      const { value, done } = await reader.read();
      buffer += done ? decoder.decode() : decoder.decode(value, { stream: true });
      for (;;) {
        const match = /\r\n|\r|\n/.exec(buffer);
        // A lone CR at the end may be the first half of CRLF: wait for more.
        if (!match || (match[0] === "\r" && match.index === buffer.length - 1 && !done)) break;
        const line = buffer.slice(0, match.index);
        buffer = buffer.slice(match.index + match[0].length);
        if (line === "") {
          if (data.length > 0) yield { event: event || "message", id, data: data.join("\n"), retry };
          event = "";
          data = [];
          continue;
        }
        if (line.startsWith(":")) continue;
        const colon = line.indexOf(":");
        const field = colon === -1 ? line : line.slice(0, colon);
        let text = colon === -1 ? "" : line.slice(colon + 1);
        if (text.startsWith(" ")) text = text.slice(1);
        if (field === "event") event = text;
        else if (field === "data") data.push(text);
        else if (field === "id" && !text.includes("\0")) id = text;
        else if (field === "retry" && /^[0-9]+$/.test(text)) retry = Number(text);
      }
      if (done) return;
    }
  } finally {
    reader.releaseLock();
    await body.cancel().catch(() => {});
  }
}
