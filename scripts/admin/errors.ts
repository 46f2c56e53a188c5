/** Failures the CLI reports on stderr before exiting 1. */
import { err } from "./output.ts";

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

/** An error answer of the API: `{error: {code, message, requestId, issues?}}`. */
export class ApiFailure extends Error {
  status: number;
  code: string;
  requestId: string | undefined;
  issues: Issue[];
  body: unknown;
  /** What to check, added by the caller that knows which credential was sent. */
  hints: string[] = [];
  constructor(status: number, code: string, message: string, requestId: string | undefined, issues: Issue[], body: unknown) {
    super(message);
    this.status = status;
    this.code = code;
    this.requestId = requestId;
    this.issues = issues;
    this.body = body;
  }
}

/** Reads an error response into an ApiFailure, whatever its body is. */
export async function apiFailure(res: Response, unauthorizedHint?: string): Promise<ApiFailure> {
  const failure = await readFailure(res);
  if (res.status === 401 && unauthorizedHint) failure.hints.push(unauthorizedHint);
  return failure;
}

async function readFailure(res: Response): Promise<ApiFailure> {
  const text = await res.text().catch(() => "");
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
  );
}

/** Prints any failure to stderr; with `json`, an API error is printed as the raw body. */
export function reportFailure(failure: unknown, json: boolean): void {
  if (failure instanceof ApiFailure) {
    if (json && typeof failure.body === "object") {
      console.error(JSON.stringify(failure.body, null, 2));
      return;
    }
    console.error(`${err.red("error:")} ${err.bold(failure.code)} (HTTP ${failure.status}): ${failure.message}`);
    for (const issue of failure.issues) console.error(`  - ${issue.path || "(body)"}: ${issue.message}`);
    if (failure.requestId) console.error(err.dim(`  request id: ${failure.requestId}`));
    for (const hint of failure.hints) console.error(`  ${hint}`);
    return;
  }
  if (failure instanceof CliError) {
    console.error(`${err.red("error:")} ${failure.message}`);
    for (const hint of failure.hints) console.error(`  ${hint}`);
    return;
  }
  console.error(`${err.red("error:")} ${failure instanceof Error ? (failure.stack ?? failure.message) : String(failure)}`);
}
