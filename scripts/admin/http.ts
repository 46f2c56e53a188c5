/** HTTP calls of the CLI: JSON in and out, API errors and unreachable servers made readable. */
import { CliError, apiFailure } from "./errors.ts";

/** fetch, with connection failures turned into a message that names the URL. */
export async function send(url: string, init: RequestInit): Promise<Response> {
  try {
    return await fetch(url, init);
  } catch (error) {
    const cause = (error as { cause?: { code?: string; message?: string } }).cause;
    const origin = new URL(url).origin;
    const reason =
      cause?.code === "ECONNREFUSED"
        ? "connection refused"
        : cause?.code === "ENOTFOUND"
          ? "host not found"
          : cause?.code === "ECONNRESET"
            ? "connection reset"
            : (cause?.message ?? "the request could not be sent");
    const local = ["localhost", "127.0.0.1", "[::1]"].includes(new URL(url).hostname);
    throw new CliError(`cannot reach Outrider at ${origin} (${reason})`, [
      local ? "is `npm run dev` running? For another environment pass --url or set OUTRIDER_URL." : "check --url / OUTRIDER_URL",
    ]);
  }
}

export interface JsonClient {
  request<T = Record<string, unknown>>(method: string, path: string, body?: unknown, headers?: Record<string, string>): Promise<T>;
}

/**
 * A client sending `Authorization: Bearer <token>`; any non-2xx answer throws an ApiFailure.
 * `unauthorizedHint` says which credential to check when the answer is 401.
 */
export function jsonClient(baseUrl: string, token: string, unauthorizedHint?: string): JsonClient {
  return {
    async request<T>(method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<T> {
      const res = await send(baseUrl + path, {
        method,
        headers: {
          ...headers,
          authorization: `Bearer ${token}`,
          accept: "application/json",
          ...(body === undefined ? {} : { "content-type": "application/json" }),
        },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      if (!res.ok) throw await apiFailure(res, unauthorizedHint, token);
      const text = await res.text();
      try {
        return JSON.parse(text) as T;
      } catch {
        // An access gateway's login page, or another service at --url: no SyntaxError stack trace.
        throw new CliError(
          `${baseUrl} answered HTTP ${res.status} with a body that is not JSON (${res.headers.get("content-type") ?? "no content type"})`,
          ["check --url / OUTRIDER_URL: it must be the edge"],
        );
      }
    },
  };
}
