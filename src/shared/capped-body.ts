import type { HonoRequest } from "hono";

/**
 * Reading a body (a request's or a response's) up to a size, in workerd and Node alike: a declared
 * Content-Length over the limit is refused before anything is read, and a body without one is read
 * only until it passes the limit. Used by the signed internal routes, whose bodies are hashed
 * whole, and by the host's outbound HTTP guard.
 */

/** Largest body a signed request between the edge and the host may have (a run-event push, a start). */
export const MAX_SIGNED_BODY_BYTES = 32 * 1024 * 1024;

/** The body was longer than the limit. */
export class BodyTooLargeError extends Error {
  constructor(readonly maxBytes: number) {
    super(`request body is larger than ${maxBytes} bytes`);
  }
}

/** The whole body, or BodyTooLargeError once it passes `maxBytes`. */
export async function readCappedBody(message: Request | Response, maxBytes: number): Promise<Uint8Array<ArrayBuffer>> {
  const declared = message.headers.get("content-length");
  if (declared !== null && Number(declared) > maxBytes) {
    await message.body?.cancel().catch(() => undefined);
    throw new BodyTooLargeError(maxBytes);
  }
  const chunks: Uint8Array[] = [];
  let total = 0;
  if (message.body) {
    const reader = message.body.getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      total += value.byteLength;
      if (total > maxBytes) {
        await reader.cancel().catch(() => undefined);
        throw new BodyTooLargeError(maxBytes);
      }
      chunks.push(value);
    }
  }
  const body = new Uint8Array(new ArrayBuffer(total));
  let offset = 0;
  for (const chunk of chunks) {
    body.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return body;
}

/**
 * A signed request's body, read once, up to MAX_SIGNED_BODY_BYTES, and kept in Hono's body cache:
 * the route's own `c.req.json()` / `arrayBuffer()` then answers from those bytes instead of reading
 * a clone of the body a second time.
 */
export async function readSignedBody(req: HonoRequest): Promise<Uint8Array<ArrayBuffer>> {
  const body = await readCappedBody(req.raw, MAX_SIGNED_BODY_BYTES);
  // Hono keeps a body read's promise under its method's name (typed as the method, held as the promise).
  req.bodyCache.arrayBuffer = Promise.resolve(body.buffer) as unknown as HonoRequest["bodyCache"]["arrayBuffer"];
  return body;
}
