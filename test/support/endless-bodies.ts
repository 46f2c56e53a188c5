/**
 * Request bodies that never end, for tests that a route refuses without reading a body to its end
 * (such a read would never finish). They run in workerd and Node alike.
 */

/** One byte, then the stream stays open. */
export function stalledBody(): ReadableStream<Uint8Array> {
  return new ReadableStream<Uint8Array>({ start: (controller) => controller.enqueue(new TextEncoder().encode("{")) });
}

/** 1 MiB chunks for as long as the reader pulls; `pulled()` says how many bytes it took. */
export function endlessBody(): { body: ReadableStream<Uint8Array>; pulled: () => number } {
  let pulled = 0;
  const chunk = new Uint8Array(1024 * 1024).fill(120);
  const body = new ReadableStream<Uint8Array>({
    pull(controller) {
      pulled += chunk.byteLength;
      controller.enqueue(chunk);
    },
  });
  return { body, pulled: () => pulled };
}
