/**
 * The SSE writer every stream writes through (src/sse/writer.ts), in workerd: a client that stops
 * reading holds at most MAX_UNSENT_BYTES of the Worker's memory, then its stream ends after what
 * it had not read (EventSource resumes from its last id); a client that reads never gets there.
 */
import { describe, expect, it } from "vitest";
import { sseWriter } from "../../src/sse/writer.ts";

const frame = (n: number, size = 600) => {
  const head = `id: ${n}\ndata: `;
  return `${head}${"x".repeat(size - head.length - 2)}\n\n`;
};
const settle = () => new Promise((r) => setTimeout(r, 0));

describe("SSE writer: how much a client that does not read may hold", () => {
  it("past the limit the stream ends after what the client has not read yet; onClose runs once, later writes are dropped", async () => {
    let closes = 0;
    const out = sseWriter(() => closes++, 1_000);
    out.write(frame(1));
    out.write(frame(2)); // 1,200 bytes unread: over the limit
    out.write(frame(3));
    expect([out.closed, closes]).toEqual([true, 1]);
    expect(await new Response(out.readable).text()).toBe(frame(1));
  });

  it("a client that reads as it goes gets every frame and the stream stays open", async () => {
    const out = sseWriter(() => undefined, 1_000);
    const reader = out.readable.getReader();
    const decoder = new TextDecoder();
    let got = "";
    for (let n = 1; n <= 20; n++) {
      out.write(frame(n));
      while (got.length < n * 600) got += decoder.decode((await reader.read()).value, { stream: true });
      await settle();
    }
    expect(out.closed).toBe(false);
    expect(got).toBe(Array.from({ length: 20 }, (_, i) => frame(i + 1)).join(""));
  });

  it("one frame larger than the limit still goes out when little is waiting (the stream's first small frames, unread yet)", async () => {
    const out = sseWriter(() => undefined, 16_000);
    out.write(frame(1, 500)); // the preamble: written before the client starts to read
    out.write(frame(2, 40_000));
    expect(out.closed).toBe(false);
    out.close();
    expect(await new Response(out.readable).text()).toBe(frame(1, 500) + frame(2, 40_000));
  });

  it("one frame larger than the limit still goes out when nothing is waiting: the stream always makes progress", async () => {
    const out = sseWriter(() => undefined, 1_000);
    out.write(frame(1, 5_000));
    expect(out.closed).toBe(false);
    const reader = out.readable.getReader();
    const decoder = new TextDecoder();
    let got = "";
    while (got.length < 5_000) got += decoder.decode((await reader.read()).value, { stream: true });
    expect(got).toBe(frame(1, 5_000));
  });

  it("drained(n) resolves once the client has left at most n bytes unread, or when the stream closes", async () => {
    const out = sseWriter(() => undefined, 100_000);
    out.write(frame(1, 3_000));
    out.write(frame(2, 3_000));
    let drained = false;
    const waiting = out.drained(3_000).then(() => {
      drained = true;
    });
    await settle();
    expect(drained).toBe(false);
    const reader = out.readable.getReader();
    await reader.read(); // the first frame: 3,000 bytes left unread
    await waiting;
    expect(drained).toBe(true);
    await expect(out.drained(10_000)).resolves.toBeUndefined(); // already there
    const never = out.drained(0);
    out.close();
    await expect(never).resolves.toBeUndefined();
  });
});
