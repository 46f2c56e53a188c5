/**
 * Starting runs and settling their state: the logic every API family shares.
 * The Worker makes one call into the home region per start or read: the run's RunStream DO
 * checks the input against the catalog, holds credits, writes the `scheduled` row and starts the
 * run on the host (durably, with an outbox: durable-objects/run-stream/run-starter.ts and
 * docs/start-path.md). Every later change goes through the run's RunStream DO.
 */
import { aggregate, type Attribute } from "../shared/aggregations.ts";
import { answeredErrorDetails } from "../shared/error-details.ts";
import { isTerminal, type RunStatus } from "../shared/run-status.ts";
import { positiveNumberVar } from "../shared/positive-number-var.ts";
import { setBounded } from "../shared/bounded-map.ts";
import { ApiError } from "../errors.ts";
import { isTransientPlatformError } from "../lib/platform-errors.ts";
import { runStream } from "../run-stream-client.ts";
import { nearbyReads } from "../db/client.ts";
import { findRunByWorkflowId } from "../db/runs.ts";
import { findRunnableWorkflow, findRunnableWorkflowCached } from "../db/workflows.ts";
import type { Run } from "../db/schema.ts";
import { assertValidInput } from "../routes/workflow/input-validation.ts";
import type {
  PreparedStart,
  SerializedError,
  StartCommand,
  StartedRunInfo,
  StartOutcome,
  StartReply,
  StartTarget,
} from "../../durable-objects/run-stream/run-starter.ts";
import { START_ATTEMPT_TIMEOUT_MS } from "../../durable-objects/run-stream/constants.ts";
import type { ReadOptions, ReadReply, StartAndWaitReply } from "../../durable-objects/run-stream/run-reader.ts";
import { creditHoldFor, preparePromptStart } from "./prompt-runs.ts";
import { startCommand, type StartChoices } from "./start-command.ts";
import type { ResetHoldBasis } from "../db/credits.ts";
import { renderedByteLength } from "../shared/prompt-template.ts";

export interface StartedRun {
  workflowId: string;
  /** null while the run is accepted but Temporal has not confirmed it yet (it will run). */
  runId: string | null;
  status: RunStatus;
}

/** Credits a code workflow run holds while it runs (its token use is not known in advance). */
const DEFAULT_CODE_RUN_CREDIT_HOLD = 20_000;

/**
 * CODE_RUN_CREDIT_HOLD as a whole number of credits, at least 1: a negative value passed every
 * credit check and charged nothing (the triggers act on holds above 0), and a fraction put REAL
 * values into balances. A value that is not a positive number is the default.
 */
export const codeRunCreditHold = (env: Env) => {
  const configured = Math.floor(positiveNumberVar(env.CODE_RUN_CREDIT_HOLD, DEFAULT_CODE_RUN_CREDIT_HOLD));
  return configured >= 1 ? configured : DEFAULT_CODE_RUN_CREDIT_HOLD;
};

/**
 * What a reset of a run holds: what its start held. Temporal replays the run's own input, so a
 * prompt run's reset uses the prompt and output cap the run started with, whatever the workflow's
 * definition is now: it holds `runs.prompt_hold`. A prompt run started before that column existed
 * holds its prompt rendered with the run's variables under the current definition; a code run (or
 * such a prompt run whose definition is gone) the code run hold.
 */
export function resetCreditHold(env: Env, basis: ResetHoldBasis): number {
  if (basis.kind === "prompt" && basis.startHold !== null) return basis.startHold;
  const variables = basis.input;
  if (basis.kind !== "prompt" || !basis.prompt || variables === null || typeof variables !== "object" || Array.isArray(variables)) {
    return codeRunCreditHold(env);
  }
  const values = Object.fromEntries(Object.entries(variables).map(([k, v]) => [k, String(v)]));
  return creditHoldFor(basis.prompt, renderedByteLength(basis.prompt.template, values));
}

export function replyError(error: SerializedError): ApiError {
  return new ApiError(error.code, error.message, error.issues, error.headers, error.workflowId);
}

/** How long the Worker asks again after a lost start call finds it still under way in the DO: its first host attempt, and a margin. */
const LOST_START_WAIT_MS = START_ATTEMPT_TIMEOUT_MS + 3_000;
const LOST_START_POLL_MS = 250;

/**
 * The call that carried a start into the run's DO failed on the way (the connection lost, the DO
 * reset by a deploy), after the DO may have accepted the run, which then runs. Reporting the
 * failure could make the caller start it again; so the DO is asked what became of the start (a new
 * call). Accepted: answered as a start Temporal has not confirmed (`runId` null: the caller follows
 * it by id). Not accepted: nothing runs, and a retry is safe: 503 with Retry-After, unless the DO's
 * own code threw for a reason a retry meets again (a 500). Asking again while that question's own
 * call fails or the DO says the start is still under way, until LOST_START_WAIT_MS; then 504
 * `start_outcome_unknown`.
 */
export async function startAfterLostCall(env: Env, command: StartCommand, lost: unknown): Promise<StartedRunInfo> {
  if (lost instanceof ApiError) throw lost;
  const deadline = Date.now() + LOST_START_WAIT_MS;
  for (;;) {
    let outcome: StartOutcome | null = null;
    try {
      outcome = (await runStream(env, command.workflowId).startOutcome(command.runUuid)) as StartOutcome;
    } catch {
      // The question did not get through either (the DO still resetting): ask again until the deadline.
    }
    if (outcome === null) {
      if (Date.now() >= deadline) throw startOutcomeUnknown(command.workflowId);
      await new Promise((resolve) => setTimeout(resolve, LOST_START_POLL_MS));
      continue;
    }
    if (outcome.state === "accepted") {
      console.warn(
        JSON.stringify({ level: "warn", message: "a start call was lost after its run was accepted", workflowId: command.workflowId }),
      );
      return { ...outcome.started, runId: null };
    }
    if (outcome.state === "not_accepted") {
      // The DO's own code threw (the call was not lost: `remote`), and not for a passing reason: a
      // retry would fail the same way, so not a 503 that promises otherwise; a logged 500.
      if (thrownByTheDo(lost) && !isTransientPlatformError(lost)) throw lost;
      throw new ApiError(
        "host_unavailable",
        "the start did not reach the run's home region (the call was lost); nothing was started, so try again",
        undefined,
        { "retry-after": "1" },
      );
    }
    if (Date.now() >= deadline) throw startOutcomeUnknown(command.workflowId);
    await new Promise((resolve) => setTimeout(resolve, LOST_START_POLL_MS));
  }
}

/**
 * What a lost start call is when its DO could not say what became of it: the run may have been
 * accepted (then it runs, once), so neither an error that invites a retry (a second run) nor a
 * claim that it was accepted. No Retry-After; the caller reads the run by the workflow id first.
 */
function startOutcomeUnknown(workflowId: string): ApiError {
  return new ApiError(
    "start_outcome_unknown",
    `the start's call into the run's home region was lost, and what became of it could not be learned; it may have been accepted, and then it runs, once. ` +
      `Read the run by its workflowId "${workflowId}" (GET /workflow/${workflowId}/status: 404 means it was not accepted) before starting it again, or send it again with the same Idempotency-Key`,
    undefined,
    undefined,
    workflowId,
  );
}

/** An error a Durable Object's own code threw, passed on to its caller (Cloudflare marks it `remote`), not a lost call. */
function thrownByTheDo(err: unknown): boolean {
  return typeof err === "object" && err !== null && (err as { remote?: unknown }).remote === true;
}

/** Starts a run through its RunStream DO (which holds credits, writes the row and starts it). */
export async function startInRegion(env: Env, command: StartCommand): Promise<StartedRunInfo> {
  let reply: StartReply;
  try {
    reply = await runStream(env, command.workflowId).start(command);
  } catch (err) {
    return startAfterLostCall(env, command, err);
  }
  if (!reply.ok) throw replyError(reply.error);
  // The command's idempotency object is the request's own (c.get("idempotency")): the middleware adds the header.
  if (reply.replayed && command.idempotency) command.idempotency.replayed = true;
  return reply.started;
}

/** How a blocking start waits (ReadOptions in durable-objects/run-stream/run-reader.ts). */
export interface StartWaitOptions {
  /** Answer the run's attributes too (result payloads). */
  attributes?: boolean;
  /** false: answer with the stored row, without asking Temporal (default true). */
  settle?: boolean;
  /** Wait through a start the host has not confirmed yet (POST /workflow/run). */
  awaitStart?: boolean;
}

/** Starts a run and waits up to `waitMs` for its outcome, in one call into the home region. */
export async function startAndWaitInRegion(
  env: Env,
  command: StartCommand,
  waitMs: number,
  { attributes = false, settle = true, awaitStart = false }: StartWaitOptions = {},
) {
  // (The RPC stub's mapped type loses the union's discriminant for these payloads.)
  let reply: StartAndWaitReply;
  try {
    reply = (await runStream(env, command.workflowId).startAndWait(command, {
      waitMs,
      attributes,
      // Once started, the run exists and holds its credits: a host that stays unavailable until the
      // wait runs out answers as a wait that ran out (the row, still going), never an error that a
      // client would retry by starting the run again.
      tolerateHostDown: true,
      settle,
      awaitStart,
    })) as StartAndWaitReply;
  } catch (err) {
    // Accepted after all: the row as it is, without waiting (more calls, on this path only).
    const started = await startAfterLostCall(env, command, err);
    const view = await readRun(env, command.organizationId, command.workflowId, { settle: false, attributes });
    return { started, run: view.run, attributes: view.attributes, waitFailed: true as boolean };
  }
  if (!reply.ok) throw replyError(reply.error);
  if (reply.replayed && command.idempotency) command.idempotency.replayed = true;
  return { started: reply.started, run: reply.view.run, attributes: reply.view.attributes, waitFailed: reply.view.waitFailed === true };
}

/** A run's row (settled with Temporal when not final) and optionally its attributes: one call into the home region. */
export async function readRun(env: Env, organizationId: string, workflowId: string, options: ReadOptions = {}) {
  const reply = (await runStream(env, workflowId).read(organizationId, workflowId, options)) as ReadReply;
  if (!reply.ok) throw replyError(reply.error);
  return reply.view;
}

/** Starts a published code workflow by name (the Workflow API). */
export async function startRun(
  env: Env,
  organizationId: string,
  workflowName: string,
  input: unknown,
  choices: StartChoices = {},
): Promise<StartedRun> {
  const started = await startInRegion(
    env,
    startCommand(organizationId, workflowName, { kind: "code", by: { name: workflowName }, input }, choices),
  );
  return { workflowId: started.workflowId, runId: started.runId, status: started.status };
}

/**
 * Starts a code workflow by name and waits up to `waitMs` for its outcome (POST /workflow/run),
 * through a start the host has not confirmed yet (ReadOptions.awaitStart).
 */
export async function runToOutcome(
  env: Env,
  organizationId: string,
  workflowName: string,
  input: unknown,
  waitMs: number,
  choices: StartChoices = {},
) {
  return startAndWaitInRegion(
    env,
    startCommand(organizationId, workflowName, { kind: "code", by: { name: workflowName }, input }, choices),
    waitMs,
    { attributes: true, awaitStart: true },
  );
}

/**
 * Names of runnable code workflows by catalog id, for workflow ids (`<name>-<uuid>`); an id's name
 * never changes. Each with its owner: the host's (global) workflows answer every organization
 * from here, an organization's own only that organization.
 */
const workflowNames = new Map<string, { name: string; ownerId: string | null }>();
const WORKFLOW_NAME_CACHE_MAX = 1_000;

/** For tests: forget the cached names (as an isolate that never saw them). */
export function clearWorkflowNameCache(): void {
  workflowNames.clear();
}

/** The name of a code workflow the organization may run, by catalog id: from the isolate cache, else D1. */
export async function workflowNameById(env: Env, organizationId: string, id: string): Promise<string> {
  const cached = workflowNames.get(id);
  if (cached && (cached.ownerId === null || cached.ownerId === organizationId)) return cached.name;
  const workflow = await findRunnableWorkflow(env.DB, organizationId, { id });
  if (!workflow) throw new ApiError("workflow_not_found", `no workflow "${id}" you can run`);
  setBounded(workflowNames, id, { name: workflow.name, ownerId: workflow.organizationId }, WORKFLOW_NAME_CACHE_MAX);
  return workflow.name;
}

/**
 * Runs in the run's DO (home region): resolves a start target against the catalog, checks its
 * input, and sizes its credit hold. Throws ApiError for anything the caller must fix.
 */
export async function prepareStart(env: Env, organizationId: string, target: StartTarget): Promise<PreparedStart> {
  if (target.kind === "prompt") return preparePromptStart(env, organizationId, target.promptWorkflowId, target.body);
  // The catalog changes rarely: served from the isolate cache (staleness: CATALOG_CACHE_TTL_MS in src/db/workflows.ts).
  const workflow = await findRunnableWorkflowCached(env.DB, organizationId, target.by);
  if (!workflow) {
    throw new ApiError(
      "workflow_not_found",
      "name" in target.by
        ? `no published workflow named "${target.by.name}"; GET /workflow/catalog lists them`
        : `no workflow "${target.by.id}" you can run`,
    );
  }
  assertValidInput(workflow, target.input);
  const envs = target.envs && Object.keys(target.envs).length > 0 ? target.envs : undefined;
  return {
    catalogId: workflow.id,
    workflowName: workflow.name,
    input: target.input,
    creditHold: codeRunCreditHold(env),
    envNames: target.envs ? Object.keys(target.envs) : null,
    host: { workflowName: workflow.name, input: target.input, ...(envs ? { envs } : {}) },
  };
}

export async function getRunOrThrow(env: Env, organizationId: string, workflowId: string): Promise<Run> {
  const run = await findRunByWorkflowId(env.DB, organizationId, workflowId);
  if (!run) throw new ApiError("run_not_found", `no run with workflowId "${workflowId}"`);
  return run;
}

/**
 * The caller's run, read near the Worker: through a D1 session that a read replica may answer,
 * and from the primary only when the replica has no row yet (a run started moments ago). The
 * fields that never change once the row exists (its organization, ids, workflow name and catalog
 * id) are right either way: this is the ownership check. `status` and `temporalRunId` may lag
 * the primary when `fresh` is false, so no refusal may rest on them alone (see interact.ts).
 * docs/architecture.md, "Where each part lives in production".
 */
export async function findRunNearby(env: Env, organizationId: string, workflowId: string): Promise<{ run: Run; fresh: boolean }> {
  const replica = await findRunByWorkflowId(nearbyReads(env.DB), organizationId, workflowId);
  if (replica) return { run: replica, fresh: false };
  return { run: await getRunOrThrow(env, organizationId, workflowId), fresh: true };
}

/** Seconds to wait before acting on a run whose start is still being retried (the start outbox's first retries: 1, 2, 4 s). */
export const NOT_STARTED_RETRY_AFTER_SECONDS = 5;

/**
 * The host found no workflow for a run the edge accepted and has not seen start in Temporal (its
 * start outbox is still retrying it): the run exists and will start, so 409 run_not_started with
 * Retry-After, not the host's 404. Any other error is left as it is.
 */
export function notStartedYet(err: unknown, run: Run): unknown {
  if (!(err instanceof ApiError) || err.code !== "run_not_found" || run.status !== "scheduled" || run.temporalRunId) return err;
  return runNotStarted(run);
}

/** 409 run_not_started with Retry-After: the run is accepted, and its start is still being retried. */
export function runNotStarted(run: Run): ApiError {
  return new ApiError(
    "run_not_started",
    `run ${run.temporalWorkflowId} is accepted but not started in Temporal yet (its start is being retried); try again in a few seconds`,
    undefined,
    { "retry-after": String(NOT_STARTED_RETRY_AFTER_SECONDS) },
    run.temporalWorkflowId,
  );
}

/** Stops, terminations, signals and updates need a run that has not ended: else 409. */
export function assertRunOpen(run: Run, what: string): void {
  if (isTerminal(run.status)) {
    throw new ApiError("run_finished", `run ${run.temporalWorkflowId} already ended (${run.status}); it takes no ${what}`);
  }
}

/**
 * The Workflow API's result payload for a run row. Attributes come from the run's log (its steps
 * publish them as they go), so a failed run keeps the ones it collected; aggregations are derived.
 */
export async function resultPayload(env: Env, run: Run, known?: Attribute[]) {
  const attributes: Attribute[] = known ?? (await runStream(env, run.temporalWorkflowId).attributes(run.temporalRunId));
  return {
    workflowId: run.temporalWorkflowId,
    runId: run.temporalRunId,
    status: run.status,
    input: run.input,
    output: run.output ?? null,
    attributes,
    aggregations: aggregate(attributes),
    error: run.error ?? null,
    // Output's V1 structured failure; the message alone for a run that ended before it was recorded.
    errorDetails: answeredErrorDetails(run.status, run.errorDetails, run.error ?? null),
  };
}
