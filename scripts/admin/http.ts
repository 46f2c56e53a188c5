/** HTTP calls of the CLI: JSON in and out, API errors and unreachable servers made readable. */
import { CliError, OutcomeUnknown, apiFailure } from "./errors.ts";

/** Connection failures that say the request never reached the server (no connection was made). */
const NOT_SENT = new Set(["ECONNREFUSED", "ENOTFOUND", "EAI_AGAIN", "EHOSTUNREACH", "ENETUNREACH"]);

/**
 * fetch, with connection failures turned into a message that names the URL. A write (any method
 * but GET) that failed after it may have been sent is an OutcomeUnknown: it may have been applied.
 */
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
    const message = `cannot reach Outrider at ${origin} (${reason})`;
    const method = (init.method ?? "GET").toUpperCase();
    if (method !== "GET" && !NOT_SENT.has(cause?.code ?? "")) {
      throw new OutcomeUnknown(message, [
        `the ${method} may have been applied: the connection failed after the request may have reached Outrider`,
      ]);
    }
    const local = ["localhost", "127.0.0.1", "[::1]"].includes(new URL(url).hostname);
    throw new CliError(message, [
      local ? "is `npm run dev` running? For another environment pass --url or set OUTRIDER_URL." : "check --url / OUTRIDER_URL",
    ]);
  }
}

export interface JsonClient {
  request<T = Record<string, unknown>>(method: string, path: string, body?: unknown, headers?: Record<string, string>): Promise<T>;
  /** Like request, with the answer's status and headers too (Idempotent-Replayed). */
  exchange<T = Record<string, unknown>>(
    method: string,
    path: string,
    body?: unknown,
    headers?: Record<string, string>,
  ): Promise<{ status: number; headers: Headers; body: T }>;
}

/**
 * A client sending `Authorization: Bearer <token>`; any non-2xx answer throws an ApiFailure.
 * `unauthorizedHint` says which credential to check when the answer is 401.
 */
export function jsonClient(baseUrl: string, token: string, unauthorizedHint?: string): JsonClient {
  const client: JsonClient = {
    async exchange<T>(method: string, path: string, body?: unknown, headers: Record<string, string> = {}) {
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
        return { status: res.status, headers: res.headers, body: JSON.parse(text) as T };
      } catch {
        // An access gateway's login page, or another service at --url: no SyntaxError stack trace.
        throw new CliError(
          `${baseUrl} answered HTTP ${res.status} with a body that is not JSON (${res.headers.get("content-type") ?? "no content type"})`,
          ["check --url / OUTRIDER_URL: it must be the edge"],
        );
      }
    },
    async request<T>(method: string, path: string, body?: unknown, headers?: Record<string, string>): Promise<T> {
      return (await client.exchange<T>(method, path, body, headers)).body;
    },
  };
  return client;
}
