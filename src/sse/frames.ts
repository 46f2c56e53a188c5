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
  return `: ${text.replace(/\n/g, " ")}\n\n`;
}

export const SSE_HEADERS = {
  "content-type": "text/event-stream; charset=utf-8",
  "cache-control": "no-cache, no-transform",
  "x-accel-buffering": "no",
} as const;
