/** HTTP calls of the CLI: JSON in and out, API errors, unreachable and silent servers made readable. */
import { subscribe } from "node:diagnostics_channel";
import { ApiFailure, CliError, OutcomeUnknown, apiFailure } from "./errors.ts";

/** Connection failures that say the request never reached the server (no connection was made). */
const NOT_SENT = new Set(["ECONNREFUSED", "ENOTFOUND", "EAI_AGAIN", "EHOSTUNREACH", "ENETUNREACH", "UND_ERR_CONNECT_TIMEOUT"]);

/**
 * Errors fetch (undici) met while connecting, before a byte of the request was written: those of
 * NOT_SENT, and a TLS handshake that failed (an untrusted or self-signed certificate, one for
 * another name, an https URL to a plain-HTTP port), whose codes are many. undici publishes each on
 * this documented diagnostics channel, then fails the fetch with that same error as its cause.
 * Should the channel ever go quiet, such a failure of a write only says "may have been applied" again.
 */
const connectFailures = new WeakSet<object>();
subscribe("undici:client:connectError", (message) => {
  const { error } = message as { error?: unknown };
  if (error && typeof error === "object") connectFailures.add(error);
});

const isLocal = (url: string) => ["localhost", "127.0.0.1", "[::1]"].includes(new URL(url).hostname);

/** `send` could not connect, or lost the connection: a message that names the URL. */
function unreachable(url: string, method: string, error: unknown): CliError {
  const cause = (error as { cause?: { code?: string; message?: string; reason?: string } }).cause;
  const reason =
    cause?.code === "ECONNREFUSED"
      ? "connection refused"
      : cause?.code === "ENOTFOUND"
        ? "host not found"
        : cause?.code === "ECONNRESET"
          ? "connection reset"
          : // OpenSSL's message is a line of internals (and a source file); its reason is what went wrong.
            cause?.code?.startsWith("ERR_SSL_") && cause.reason
            ? `TLS: ${cause.reason}`
            : (cause?.message ?? "the request could not be sent");
  const message = `cannot reach Outrider at ${new URL(url).origin} (${reason})`;
  const notSent = NOT_SENT.has(cause?.code ?? "") || (typeof cause === "object" && connectFailures.has(cause));
  if (method !== "GET" && !notSent) {
    return new OutcomeUnknown(message, [
      `the ${method} may have been applied: the connection failed after the request may have reached Outrider`,
    ]);
  }
  return new CliError(message, [
    ...(method === "GET" ? [] : [`the ${method} was not sent (no connection was made): nothing was applied`]),
    isLocal(url) ? "is `npm run dev` running? For another environment pass --url or set OUTRIDER_URL." : "check --url / OUTRIDER_URL",
  ]);
}

/** No answer within the timeout: a write was sent, so it may have been applied. */
function noAnswer(url: string, method: string, timeoutMs: number): CliError {
  const message = `no answer from Outrider at ${new URL(url).origin} within ${timeoutMs / 1000} s`;
  const wait = "to wait longer, pass --timeout <seconds> or set OUTRIDER_TIMEOUT";
  if (method === "GET") return new CliError(message, [wait, "check --url / OUTRIDER_URL"]);
  return new OutcomeUnknown(message, [`the ${method} may have been applied: it was sent, and its answer did not come in time`, wait]);
}

/**
 * fetch, with connection failures turned into a message that names the URL. A write (any method
 * but GET) that failed after it may have been sent is an OutcomeUnknown: it may have been applied.
 * The answer must come within `timeoutMs`, `read` (of the body) included; without `read`, only its
 * headers must (a run's event stream may stay quiet for longer while a step works).
 */
export async function send<T = Response>(
  url: string,
  init: RequestInit,
  timeoutMs: number,
  read: (res: Response) => Promise<T> | T = (res) => res as T,
): Promise<T> {
  const method = (init.method ?? "GET").toUpperCase();
  const deadline = new AbortController();
  const timer = setTimeout(() => deadline.abort(), timeoutMs);
  try {
    let res: Response;
    try {
      res = await fetch(url, { ...init, signal: deadline.signal });
    } catch (error) {
      throw deadline.signal.aborted ? noAnswer(url, method, timeoutMs) : unreachable(url, method, error);
    }
    try {
      return await read(res);
    } catch (error) {
      // The body cut off by the deadline; not an answer already read (an error status whose body came short).
      const cutOff = deadline.signal.aborted && !(error instanceof CliError) && !(error instanceof ApiFailure);
      throw cutOff ? noAnswer(url, method, timeoutMs) : error;
    }
  } finally {
    clearTimeout(timer);
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
 * A client sending `Authorization: Bearer <token>`; any non-2xx answer throws an ApiFailure, and
 * each answer must come within `timeoutMs`. `unauthorizedHint` says which credential to check
 * when the answer is 401.
 */
export function jsonClient(baseUrl: string, token: string, timeoutMs: number, unauthorizedHint?: string): JsonClient {
  const client: JsonClient = {
    exchange<T>(method: string, path: string, body?: unknown, headers: Record<string, string> = {}) {
      const init = {
        method,
        headers: {
          ...headers,
          authorization: `Bearer ${token}`,
          accept: "application/json",
          ...(body === undefined ? {} : { "content-type": "application/json" }),
        },
        body: body === undefined ? undefined : JSON.stringify(body),
      };
      return send(baseUrl + path, init, timeoutMs, async (res) => {
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
      });
    },
    async request<T>(method: string, path: string, body?: unknown, headers?: Record<string, string>): Promise<T> {
      return (await client.exchange<T>(method, path, body, headers)).body;
    },
  };
  return client;
}
