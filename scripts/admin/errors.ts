/** Failures the CLI reports on stderr before exiting 1. */
import { err, printable } from "./output.ts";

export interface Issue {
  path: string;
  message: string;
}

/** A mistake on the command line or in the local setup, with optional hints on how to fix it. */
export class CliError extends Error {
  hints: string[];
  constructor(message: string, hints: string[] = []) {
    super(message);
    this.hints = hints;
  }
}

/** A write whose answer was lost (the connection failed after it may have been sent): it may have been applied. */
export class OutcomeUnknown extends CliError {}

/** An error answer of the API: `{error: {code, message, requestId, issues?}}`. */
export class ApiFailure extends Error {
  status: number;
  code: string;
  requestId: string | undefined;
  issues: Issue[];
  body: unknown;
  /** What to check, added by the caller that knows which credential was sent. */
  hints: string[] = [];
  /** Whether the body is the API's error envelope (else a proxy's page, or another service's answer). */
  fromApi: boolean;
  constructor(
    status: number,
    code: string,
    message: string,
    requestId: string | undefined,
    issues: Issue[],
    body: unknown,
    fromApi = true,
  ) {
    super(message);
    this.status = status;
    this.code = code;
    this.requestId = requestId;
    this.issues = issues;
    this.body = body;
    this.fromApi = fromApi;
  }
}

/**
 * Reads an error response into an ApiFailure, whatever its body is. `credential` (the one the
 * request sent) is cut out of the body first: a proxy or server that echoes the request's headers
 * must not get it printed.
 */
export async function apiFailure(res: Response, unauthorizedHint?: string, credential?: string): Promise<ApiFailure> {
  const failure = await readFailure(res, credential);
  if (res.status === 401 && unauthorizedHint) failure.hints.push(unauthorizedHint);
  return failure;
}

const REDACTED = "[redacted]";

/**
 * `raw` (a URL as typed, perhaps not a URL at all) with whatever stands before its last `@` cut
 * out, the scheme kept: `http://user:secret@host:bad` is `http://[redacted]@host:bad`. A string that
 * does not parse has no reliable userinfo to find, so everything that could be one goes (a path's
 * `@` too: better a message that says less than one that shows a password).
 */
export const redactUrl = (raw: string) => raw.replace(/^([a-z][a-z0-9+.-]*:\/\/)?.*@/is, `$1${REDACTED}@`);

async function readFailure(res: Response, credential: string | undefined): Promise<ApiFailure> {
  let text = await res.text().catch(() => "");
  // As sent, and as a JSON string would quote it (credentials are printable ASCII: only " and \ change).
  if (credential) text = text.replaceAll(credential, REDACTED).replaceAll(JSON.stringify(credential).slice(1, -1), REDACTED);
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {
    /* not JSON: keep the text */
  }
  const parsed = body as { error?: unknown; code?: unknown } | null;
  // The Workflow API answers in Output's envelope: `error` is a name, `code` sits beside it.
  const error = (parsed && typeof parsed.error === "string" ? parsed : parsed?.error) as
    | { code?: unknown; message?: unknown; requestId?: unknown; issues?: unknown }
    | undefined;
  if (error && typeof error.code === "string") {
    const issues = Array.isArray(error.issues) ? (error.issues as Issue[]) : [];
    return new ApiFailure(
      res.status,
      error.code,
      String(error.message ?? ""),
      typeof error.requestId === "string" ? error.requestId : undefined,
      issues,
      body,
    );
  }
  const snippet = text.replace(/\s+/g, " ").trim().slice(0, 300);
  return new ApiFailure(
    res.status,
    `http_${res.status}`,
    snippet || res.statusText || "no body",
    res.headers.get("x-request-id") ?? undefined,
    [],
    body,
    false,
  );
}

/**
 * Prints any failure to stderr, its text made printable (a server's words never drive the
 * terminal); with `json`, an error of the API is printed as its raw body. Anything else (a bug, an
 * answer of a shape the CLI does not know) is its message, never a stack trace.
 */
export function reportFailure(failure: unknown, json: boolean): void {
  const line = (text: string) => console.error(printable(text));
  if (failure instanceof ApiFailure) {
    // Only the API's envelope carries its status in its code; another body (a proxy's 502) gets the line below.
    if (json && failure.fromApi) {
      console.error(JSON.stringify(failure.body, null, 2));
      return;
    }
    console.error(`${err.red("error:")} ${err.bold(printable(failure.code))} (HTTP ${failure.status}): ${printable(failure.message)}`);
    for (const issue of failure.issues) line(`  - ${String(issue.path || "(body)")}: ${String(issue.message)}`);
    if (failure.requestId) console.error(err.dim(printable(`  request id: ${failure.requestId}`)));
    for (const hint of failure.hints) line(`  ${hint}`);
    return;
  }
  if (failure instanceof CliError) {
    console.error(`${err.red("error:")} ${printable(failure.message)}`);
    for (const hint of failure.hints) line(`  ${hint}`);
    return;
  }
  console.error(`${err.red("error:")} ${printable(failure instanceof Error ? failure.message : String(failure))}`);
  line("  (an answer this CLI did not expect, or a bug in it: check --url / OUTRIDER_URL)");
}
