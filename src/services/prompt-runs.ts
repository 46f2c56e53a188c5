/**
 * Published prompt workflows (POST /api/v1/run/{workflow_id}): checking the caller's variables
 * against the template, sizing the credit hold, and starting the host's `run_prompt` workflow.
 */
import { z } from "zod";
import { positiveNumberVar } from "../shared/positive-number-var.ts";
import { findPublishedPromptWorkflow, PROMPT_WORKFLOW_ID } from "../db/prompt-workflows.ts";
import type { PromptDefinition } from "../db/schema.ts";
import { ApiError, type Issue, issueText, quotedId } from "../errors.ts";
import { renderedByteLength } from "../shared/prompt-template.ts";
import type { PreparedStart, StartCommand } from "../../durable-objects/run-stream/run-starter.ts";
import { startCommand } from "./start-command.ts";
import type { IdempotencyRequest } from "./idempotency.ts";
import { isReservedName, RESERVED_NAME_MESSAGE } from "../shared/reserved-names.ts";

/** Allowance for the chat format around the prompt (role markers, system text), in tokens. */
const PROMPT_OVERHEAD_TOKENS = 64;
export const DEFAULT_PROMPT_RUN_MAX_MS = 300_000;

export function promptRunMaxMs(env: Env): number {
  return positiveNumberVar(env.PROMPT_RUN_MAX_MS, DEFAULT_PROMPT_RUN_MAX_MS);
}

/** The body's values, one string per template variable; 400 naming every missing or unknown key. */
export function checkVariables(variables: string[], body: unknown): Record<string, string> {
  if (body === null || typeof body !== "object" || Array.isArray(body)) {
    throw new ApiError("invalid_input", "send the template's variables as a JSON object of key/value pairs", [
      { path: "(body)", message: "expected a JSON object" },
    ]);
  }
  const given = body as Record<string, unknown>;
  const issues: Issue[] = [];
  const known = new Set(variables);
  // One message shared by every unknown key: a 1 MiB body holds about 100,000 keys, and a list of
  // the variables built for each of them came to hundreds of MB, past an isolate's 128 MB.
  const unknown = `unknown: the template's variables are ${variables.length ? variables.join(", ") : "(none)"}`;
  // A Map, then Object.fromEntries (own data properties only): nothing inherited, no name special.
  const values = new Map<string, string>();
  for (const name of variables) {
    if (!Object.hasOwn(given, name)) issues.push({ path: name, message: "missing: the template uses this variable" });
  }
  for (const [name, value] of Object.entries(given)) {
    if (isReservedName(name)) {
      issues.push({ path: name, message: `reserved: ${name} ${RESERVED_NAME_MESSAGE}` });
    } else if (!known.has(name)) {
      issues.push({ path: name, message: unknown });
    } else if (typeof value === "string" || typeof value === "number" || typeof value === "boolean") {
      values.set(name, String(value));
    } else {
      issues.push({ path: name, message: "must be a string, number or boolean" });
    }
  }
  if (issues.length > 0) {
    throw new ApiError(
      "invalid_input",
      `the input does not match the template: ${issueText(issues, (i) => `${i.path} (${i.message.split(":")[0]})`, ", ")}`,
      issues,
    );
  }
  return Object.fromEntries(values);
}

/**
 * The most a run can use, in tokens (1 credit = 1 token): every byte of the prompt could be a
 * token (byte-level tokenizers never do worse), plus the chat overhead, plus the output cap the
 * model is held to. A completed run is charged its real usage, never more than this.
 */
export function creditHoldFor(prompt: PromptDefinition, renderedBytes: number): number {
  return renderedBytes + PROMPT_OVERHEAD_TOKENS + prompt.maxOutputTokens;
}

/**
 * The longest prompt a run may send, rendered (UTF-8 bytes): four times the largest request body,
 * well past any model's context window. A template that repeats a variable could otherwise turn a
 * 1 MiB request into gigabytes, for the host to build and send.
 */
export const MAX_RENDERED_PROMPT_BYTES = 4 * 1024 * 1024;

/** Runs in the run's DO: the prompt workflow, its checked variables, its hold and what the host starts. */
export async function preparePromptStart(env: Env, organizationId: string, workflowId: string, body: unknown): Promise<PreparedStart> {
  const workflow = await findPublishedPromptWorkflow(env.DB, organizationId, workflowId);
  if (!workflow) throw new ApiError("workflow_not_found", `no published workflow ${quotedId(workflowId)}`);
  const prompt = workflow.prompt!;
  // No body at all reads as {}; a JSON null is a body that is not an object.
  const values = checkVariables(prompt.variables, body === undefined ? {} : body);
  const promptBytes = renderedByteLength(prompt.template, values);
  if (promptBytes > MAX_RENDERED_PROMPT_BYTES) {
    throw new ApiError(
      "invalid_input",
      `with these values the prompt would be ${promptBytes} bytes, more than the ${MAX_RENDERED_PROMPT_BYTES} a run may send; send shorter values`,
      [{ path: "(body)", message: `the rendered prompt would be ${promptBytes} bytes (at most ${MAX_RENDERED_PROMPT_BYTES})` }],
    );
  }
  return {
    catalogId: workflow.id,
    workflowName: workflow.name,
    input: values,
    creditHold: creditHoldFor(prompt, promptBytes),
    envNames: null,
    host: { workflowName: "run_prompt", input: { ...prompt, variables: values }, executionTimeoutMs: promptRunMaxMs(env) },
    prompt,
  };
}

/** The start of a prompt run (one call into the home region); an unknown id is refused at the edge. */
export function promptStartCommand(
  organizationId: string,
  workflowId: string,
  body: unknown,
  idempotency?: IdempotencyRequest,
): StartCommand {
  if (!PROMPT_WORKFLOW_ID.test(workflowId)) throw new ApiError("workflow_not_found", `no published workflow ${quotedId(workflowId)}`);
  return startCommand(organizationId, workflowId, { kind: "prompt", promptWorkflowId: workflowId, body }, { idempotency });
}

/** A run that ended before Temporal ever started it (its start refused for good by the outbox): 500 run_failed, as a failed run is. */
export function neverStartedRunError(status: string, error: string | null | undefined): ApiError {
  return new ApiError("run_failed", `the run ${status} before it started: ${error ?? "no error message"}`);
}

/** What the host's run_prompt returns (host/workflows/prompt.ts RunPromptOutput); citations are [] without web search. */
const PROMPT_ANSWER = z.object({ text: z.string(), citations: z.array(z.string()).default([]) });

/** How a finished prompt run ends for the caller: its result, or the error to answer with. */
export function promptOutcome(
  prompt: Pick<PromptDefinition, "webSearch">,
  status: string,
  output: unknown,
  error: string | null | undefined,
  maxMs: number,
): { ok: true; body: { success: true; result: string; citations?: string[] } } | { ok: false; error: ApiError } {
  if (status === "completed") {
    const answer = PROMPT_ANSWER.safeParse(output);
    if (!answer.success) {
      // A host of another version, or one that lost the result's payload (the history relay reports
      // a completed run without one as output null): a stable code, never a 200 without the text,
      // a TypeError's 500, or (on the stream) a "lost the run's event stream".
      console.error(
        JSON.stringify({ level: "error", message: "a completed prompt run's output is not {text, citations}", output: typeof output }),
      );
      return {
        ok: false,
        error: new ApiError(
          "host_error",
          "the run completed, but its output is not a prompt's answer (a text); the workflow host may run another version",
        ),
      };
    }
    const { text, citations } = answer.data;
    return { ok: true, body: { success: true, result: text, ...(prompt.webSearch ? { citations } : {}) } };
  }
  if (status === "timed_out" || status === "running" || status === "scheduled") {
    return { ok: false, error: new ApiError("run_timed_out", `the run did not finish within its limit of ${Math.round(maxMs / 1000)} s`) };
  }
  return { ok: false, error: new ApiError("run_failed", `the run ${status}: ${error ?? "no error message"}`) };
}
