/**
 * readSse (the admin CLI's and the tests' reader of event streams) parses as EventSource does
 * (WHATWG HTML, "Server-sent events", interpreting an event stream), whatever splits the bytes.
 */
import { describe, expect, it } from "vitest";
import { readSse, type SseMessage } from "./sse-reader.ts";

/** The stream's text as a body, cut into chunks of `size` bytes (1: every byte its own chunk). */
function body(text: string, size = Number.POSITIVE_INFINITY): ReadableStream<Uint8Array> {
  const bytes = new TextEncoder().encode(text);
  return new ReadableStream({
    start(controller) {
      for (let at = 0; at < bytes.length; at += size) controller.enqueue(bytes.slice(at, at + size));
      controller.close();
    },
  });
}

async function read(text: string, size?: number): Promise<SseMessage[]> {
  const messages: SseMessage[] = [];
  for await (const message of readSse(body(text, size))) messages.push(message);
  return messages;
}

describe("readSse", () => {
  it("ends lines at CRLF, LF or a lone CR, also when a chunk ends between CR and LF", async () => {
    const text = "event: a\r\ndata: 1\r\n\r\nevent: b\rdata: 2\r\rdata: 3\n\n";
    const expected = [
      { event: "a", id: undefined, data: "1" },
      { event: "b", id: undefined, data: "2" },
      { event: "message", id: undefined, data: "3" },
    ];
    expect(await read(text)).toEqual(expected);
    expect(await read(text, 1)).toEqual(expected);
    // An empty chunk between the CR and its LF.
    const split = new ReadableStream<Uint8Array>({
      start(controller) {
        for (const part of ["data: 1\r", "", "\n\r\n"]) controller.enqueue(new TextEncoder().encode(part));
        controller.close();
      },
    });
    const got: SseMessage[] = [];
    for await (const message of readSse(split)) got.push(message);
    expect(got).toEqual([{ event: "message", id: undefined, data: "1" }]);
  });

  it("skips one byte-order mark at the start of the stream, and only there", async () => {
    expect(await read("\uFEFFevent: a\ndata: 1\n\n")).toEqual([{ event: "a", id: undefined, data: "1" }]);
    // A second one starts a field named "\uFEFFdata", which is no field.
    expect(await read("\uFEFF\uFEFFdata: 1\n\ndata: 2\n\n")).toEqual([{ event: "message", id: undefined, data: "2" }]);
  });

  it("ignores an id with a NUL in it; keeps comments, unknown fields and empty events out", async () => {
    expect(await read("id: 1\u00002\ndata: a\n\n: comment\n\nretry: 5\nfoo: bar\n\nid: 7\ndata\n\n")).toEqual([
      { event: "message", id: undefined, data: "a" },
      { event: "message", id: "7", data: "" },
    ]);
  });
});
