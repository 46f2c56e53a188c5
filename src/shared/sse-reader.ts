/**
 * A reader of `text/event-stream` bodies with EventSource's parsing rules (WHATWG HTML,
 * "interpreting an event stream"): lines end at CRLF, LF or a lone CR; one leading byte-order mark
 * is skipped (TextDecoder does it); an `id` with NUL in it is ignored. Web APIs only, so it serves
 * the admin CLI (Node), the tests (workerd and Node) and the benchmarks alike.
 */
export interface SseMessage {
  event: string;
  /**
   * The frame's own `id:` field, undefined when it has none. (EventSource's `lastEventId` is the
   * last one seen, kept across frames without one: a reconnecting client keeps it so itself.)
   */
  id: string | undefined;
  data: string;
}

/** A line end: CRLF, LF, or a CR (which may be a CRLF cut between two chunks: see `afterCr`). */
const LINE_END = /\r\n|\n|\r/;

export async function* readSse(body: ReadableStream<Uint8Array>): AsyncGenerator<SseMessage> {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  /** The last line ended at a CR that closed its chunk: an LF first in the next chunk belongs to it. */
  let afterCr = false;
  let event = "";
  let id: string | undefined;
  let data: string[] = [];
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += decoder.decode(value, { stream: true });
      // (An empty chunk, or one byte of a longer character, says nothing yet.)
      if (afterCr && buffer !== "") {
        if (buffer.startsWith("\n")) buffer = buffer.slice(1);
        afterCr = false;
      }
      for (let end = LINE_END.exec(buffer); end; end = LINE_END.exec(buffer)) {
        const line = buffer.slice(0, end.index);
        buffer = buffer.slice(end.index + end[0].length);
        afterCr = end[0] === "\r" && buffer === "";
        if (line === "") {
          if (data.length > 0) yield { event: event || "message", id, data: data.join("\n") };
          event = "";
          id = undefined;
          data = [];
        } else if (!line.startsWith(":")) {
          const colon = line.indexOf(":");
          const field = colon < 0 ? line : line.slice(0, colon);
          const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
          if (field === "event") event = value;
          else if (field === "data") data.push(value);
          else if (field === "id" && !value.includes("\0")) id = value;
        }
      }
    }
  } finally {
    reader.releaseLock();
    await body.cancel().catch(() => undefined);
  }
}
