/** The writable side of an SSE response: text in, bytes out, and one idempotent close. */
export interface SseWriter {
  readable: ReadableStream<Uint8Array>;
  /** Writes unless closed; a failed write (the client left) closes. Empty text is skipped. */
  write(text: string): void;
  close(): void;
  readonly closed: boolean;
  /** Resolves once at most `bytes` are written and not yet taken by the client, or the stream is closed. */
  drained(bytes: number): Promise<void>;
}

/**
 * The most a stream may have written that its client has not taken yet. A client that stops
 * reading while it keeps the connection open would otherwise have the Worker queue every frame
 * (a long history with its payloads, then every live event) in memory for as long as it stays.
 * Past it the stream ends after what is queued: EventSource reconnects with the last id it got
 * and resumes from the run's log, losing nothing, and a client that never reads holds no more.
 */
export const MAX_UNSENT_BYTES = 16 * 1024 * 1024;

const encoder = new TextEncoder();
/** The last text encoded in this isolate: the same frame goes to every subscriber of a run. */
let lastEncoded: { text: string; bytes: Uint8Array } | undefined;

function encode(text: string): Uint8Array {
  if (lastEncoded?.text !== text) lastEncoded = { text, bytes: encoder.encode(text) };
  return lastEncoded.bytes;
}

/** `onClose` runs once, on the first close (keep-alive timers, the DO socket). */
export function sseWriter(onClose: () => void, maxUnsentBytes = MAX_UNSENT_BYTES): SseWriter {
  // workerd's native byte pipe: a write goes to the response without running JS stream algorithms
  // (with 1,000 subscribers on a run this is most of the Worker's cost per event).
  const { readable, writable } = new IdentityTransformStream();
  const writer = writable.getWriter();
  let closed = false;
  /** Bytes written and not yet taken by the client. */
  let unsent = 0;
  /** Who waits for `unsent` to fall to a level (drained). */
  const waiters = new Set<{ bytes: number; resolve: () => void }>();
  const wake = () => {
    for (const waiter of waiters) {
      if (!closed && unsent > waiter.bytes) continue;
      waiters.delete(waiter);
      waiter.resolve();
    }
  };
  const close = () => {
    if (closed) return;
    closed = true;
    onClose();
    writer.close().catch(() => undefined);
    wake();
  };
  return {
    readable,
    write(text: string) {
      if (closed || text === "") return;
      const bytes = encode(text);
      // A frame goes out whatever its size when little is waiting (at most a sixteenth of the limit:
      // a stream's first frames are written before its client starts to read), so a stream always
      // makes progress, also with a frame larger than the limit.
      if (unsent > maxUnsentBytes / 16 && unsent + bytes.byteLength > maxUnsentBytes) {
        // Not this frame: the stream ends after what the client has not read yet (see MAX_UNSENT_BYTES).
        console.warn(JSON.stringify({ level: "warn", message: "stream closed: its client took too little of it", unsent }));
        close();
        return;
      }
      unsent += bytes.byteLength;
      writer.write(bytes).then(() => {
        unsent -= bytes.byteLength;
        if (waiters.size > 0) wake();
      }, close);
    },
    close,
    drained(bytes: number) {
      if (closed || unsent <= bytes) return Promise.resolve();
      return new Promise<void>((resolve) => waiters.add({ bytes, resolve }));
    },
    get closed() {
      return closed;
    },
  };
}

/** Closes a WebSocket that may already be closed. */
export function closeQuietly(ws: WebSocket, code = 1000, reason = "subscriber left"): void {
  try {
    ws.close(code, reason);
  } catch {
    /* already closed */
  }
}
