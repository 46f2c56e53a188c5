/** SSE framing: whatever a string holds, a frame or comment is only the lines it says (EventSource ends a line at \r, \n or \r\n). */
import { describe, expect, it } from "vitest";
import { sseComment, sseFrame } from "./frames.ts";

/** The lines EventSource would read from `text`. */
const linesOf = (text: string) => text.split(/\r\n|\r|\n/);

describe("SSE frames", () => {
  it("security: a comment is one line whatever its text holds, so no text can start a field of its own", () => {
    const text = "keep\rdata: forged\nid: 9\r\nevent: done";
    expect(linesOf(sseComment(text))).toEqual([": keep data: forged id: 9  event: done", "", ""]);
  });

  it("a frame's data is one JSON line, even for text with line ends in it", () => {
    const frame = sseFrame({ id: 3, event: "thinking", data: { text: "a\rb\nc\r\nd" } });
    expect(linesOf(frame)).toEqual(["id: 3", "event: thinking", 'data: {"text":"a\\rb\\nc\\r\\nd"}', "", ""]);
  });
});
