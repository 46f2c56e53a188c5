/** Server-Sent Events framing (the `text/event-stream` format EventSource reads). */

export interface SseFrame {
  event?: string;
  id?: string | number;
  data?: unknown;
  retry?: number;
}

export function sseFrame({ event, id, data, retry }: SseFrame): string {
  let out = "";
  if (retry !== undefined) out += `retry: ${retry}\n`;
  if (id !== undefined) out += `id: ${id}\n`;
  if (event) out += `event: ${event}\n`;
  if (data !== undefined) {
    // JSON has no raw newlines, but be safe for any string: one data line per line.
    for (const line of JSON.stringify(data).split("\n")) out += `data: ${line}\n`;
  }
  return `${out}\n`;
}

export function sseComment(text: string): string {
  // EventSource ends a line at \r as well as \n.
  return `: ${text.replace(/[\r\n]/g, " ")}\n\n`;
}

/**
 * Never stored by a cache on the way: a stream opened with `?token=` has a bearer token in its URL
 * and hands its client fresh ones, and it has no Authorization header to keep shared caches off.
 */
export const NO_STORE = { "cache-control": "no-store" } as const;

export const SSE_HEADERS = {
  "content-type": "text/event-stream; charset=utf-8",
  "cache-control": "no-store, no-transform",
  "x-accel-buffering": "no",
} as const;
