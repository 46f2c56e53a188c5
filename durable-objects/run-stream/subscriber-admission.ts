/**
 * Admission of a stream subscriber, inside the run's DO: the Worker's first subscription carries
 * the caller's organization and cursor, and the DO decides here (next to D1's primary) what the
 * route used to decide with calls of its own: the run exists for this organization (else 404),
 * the requested run id is one of its runs (else 404), the run has started (else 503), and a
 * client already at the end of a finished run gets 204. One call into the home region per connect.
 * The history streams use the history view; the Workflow Runs stream and the run viewer's event
 * stream the `log` view (admitLogSubscriber).
 */
import { findRunByWorkflowId } from "../../src/db/runs.ts";
import { isTerminal, type RunStatus } from "../../src/shared/run-status.ts";
import type { ErrorCode } from "../../src/errors.ts";
import { parseAfter } from "./fanout.ts";

/** Query parameters of an admission (first subscription of a history stream). */
export const ADMISSION_PARAMS = {
  organizationId: "admitOrganizationId",
  requestedRunId: "admitRunId",
  lastEventId: "admitLastEventId",
  /** log view (Workflow Runs API): the run UUID the caller named; the run must be this workflow's row. */
  runUuid: "admitRunUuid",
  /**
   * log view: the entry types the client shows, comma-separated (`run.finished` among them). With
   * `after` > 0, a finished run with no such entry of the followed run after `after`, or none but
   * entries logged after its end (the client has the end: lacksSomeOf), answers 204 (the client has it all).
   */
  endTypes: "admitEndTypes",
  /**
   * log view (run viewer): "1" when the stream shows one run a page: a client resuming inside
   * another run than the row's gets the rest of that run and its end first, never the next run's
   * entries mixed into it.
   */
  cursorRun: "admitCursorRun",
  /**
   * log view (run viewer): "1" when the client shows how a run ended and has nothing else to show
   * it for a run that ended before it started (its start refused for good): such a run is answered
   * with its end (NEVER_STARTED_STATUS, its status and error), not 204, which would leave the page
   * with no run and no reason.
   */
  endedBeforeStart: "admitEndedBeforeStart",
} as const;
/**
 * Status of the DO's answer, instead of a subscription, for a run that ended before it started when
 * the admission asked for it (`admitEndedBeforeStart`): a JSON body `RunEndedBeforeStart`.
 */
export const NEVER_STARTED_STATUS = 200;
/** How a run that never started ended, from its D1 row. */
export interface RunEndedBeforeStart {
  status: RunStatus;
  error: string | null;
}
/** Header of the 101 answer: the run the subscription follows (reconnects ask for the same one). */
export const ADMITTED_RUN_HEADER = "x-admitted-run-id";
/**
 * Header of the 101 answer, "1" when the subscription starts its run from the beginning whatever
 * the client's cursor said (an unpinned history stream resumed at the end of a run that handed over
 * to the one it follows now): the Worker's cursor starts over too.
 */
export const ADMITTED_FROM_START_HEADER = "x-admitted-from-start";

export interface StreamStateLike {
  runId: string | null;
  finished: boolean;
  lastEventId: number;
}

/** What an admission reads of the DO's log. */
export interface AdmissionLog {
  streamState(runId?: string): Promise<StreamStateLike>;
  /** Whether the log has an entry of `runId` after `seq` of one of `types`. */
  hasEntryAfter(seq: number, runId: string, types: readonly string[]): boolean;
  /** Whether the log knows the run (an event of it, or a continue-as-new naming it: EventLog.knowsRun). */
  knowsRun(runId: string): boolean;
  /** The run the log entry `seq` belongs to (null: no such entry, or one of no run). */
  runOfSeq(seq: number): string | null;
  /** The run that took over from `runId` (continue-as-new or reset; EventLog.successorOf). */
  successorOf(runId: string): string | null;
  /** A reset pending that may replace `runId`, with the run it started once seen (ResetMark.pendingFor). */
  pendingReset(runId: string): { successor: string | null } | null;
}

/** What an admission decides: a refusal to send back as is, or the run to follow (from its start, whatever the cursor). */
export type Admission = { refusal: Response } | { runId: string; fromStart?: true };

const refuse = (status: 404 | 503, code: ErrorCode, message: string) => Response.json({ error: { code, message } }, { status });

/**
 * null: not an admission (a reconnect; it names its run). Else either a refusal to send back as is,
 * or the run id the subscription follows.
 */
export async function admitSubscriber(env: Env, workflowId: string, url: URL, log: AdmissionLog): Promise<Admission | null> {
  const organizationId = url.searchParams.get(ADMISSION_PARAMS.organizationId);
  if (!organizationId) return null;
  const runUuid = url.searchParams.get(ADMISSION_PARAMS.runUuid);
  if (runUuid !== null || url.searchParams.get("view") === "log") return admitLogSubscriber(env, organizationId, workflowId, url, log);
  const requestedRunId = url.searchParams.get(ADMISSION_PARAMS.requestedRunId) || undefined;
  const lastEventId = url.searchParams.has(ADMISSION_PARAMS.lastEventId)
    ? Number(url.searchParams.get(ADMISSION_PARAMS.lastEventId))
    : null;
  const run = await findRunByWorkflowId(env.DB, organizationId, workflowId);
  if (!run) return { refusal: refuse(404, "run_not_found", `no run with workflowId "${workflowId}"`) };
  const state = await log.streamState(requestedRunId);
  // The row's run, or one the log knows: the run a continue-as-new named is the workflow's before D1 says so.
  if (
    requestedRunId !== undefined &&
    state.lastEventId === 0 &&
    !state.finished &&
    requestedRunId !== run.temporalRunId &&
    !log.knowsRun(requestedRunId)
  ) {
    return { refusal: refuse(404, "run_not_found", `workflow ${workflowId} has no run ${requestedRunId}`) };
  }
  const runId = requestedRunId ?? state.runId ?? run.temporalRunId;
  if (!runId) return { refusal: notStartedRefusal(run.status) };
  if (requestedRunId === undefined && lastEventId !== null) return resumeUnpinned(log, runId, lastEventId, url.searchParams.get("after"));
  if (state.finished && lastEventId !== null && lastEventId >= state.lastEventId) return { refusal: new Response(null, { status: 204 }) };
  return { runId };
}

/**
 * An unpinned history stream (`/workflow/:id/history/stream`, no `?runId=`) resumed from a cursor.
 * A Temporal event id alone does not say which run it is of; a `thinking` or `done` frame's id
 * (`<eventId>.<seq>`) does, by its log seq. The stream resumes in that run (else in the latest):
 * after the cursor while the client lacks some of it. Once it has all of it, the run that took
 * over from its start: the one it continued as new into or a reset started (also one the relay
 * brought before the reset's route recorded it: reset-mark.ts); while a reset that
 * may replace it has not told its run yet, 503 (retry shortly, as for a run not started yet);
 * else 204, the run ended the workflow. Resuming the latest run from an earlier run's event id
 * would skip that many of its events: the bug an EventSource that reconnects after `done` of a
 * continued run met before.
 */
async function resumeUnpinned(log: AdmissionLog, latestRunId: string, lastEventId: number, cursor: string | null): Promise<Admission> {
  const seq = parseAfter(cursor).afterThinkingSeq;
  const cursorRun = seq === undefined ? null : log.runOfSeq(seq);
  const runId = cursorRun !== null && log.knowsRun(cursorRun) ? cursorRun : latestRunId;
  const state = await log.streamState(runId);
  if (!state.finished || lastEventId < state.lastEventId) return { runId };
  const reset = log.pendingReset(runId);
  const next = log.successorOf(runId) ?? reset?.successor ?? null;
  if (next !== null) return { runId: next, fromStart: true };
  if (reset) return { refusal: refuse(503, "host_unavailable", "the run is being reset and its next run is not known yet; retry shortly") };
  return { refusal: new Response(null, { status: 204 }) };
}

/**
 * A run with no Temporal run id: not started yet (503, retry shortly), or ended before it ever
 * started (its start refused for good): 204, as for a finished run with nothing left to show,
 * which also tells an EventSource not to reconnect.
 */
function notStartedRefusal(status: RunStatus): Response {
  if (isTerminal(status)) return new Response(null, { status: 204 });
  return refuse(503, "host_unavailable", "the run has not started yet; retry shortly");
}

/**
 * The `log` view: the Workflow Runs API's stream names its run by UUID (the Worker found the
 * workflow id, this DO, from it), the run viewer's by workflow id (its stream token names it).
 * Here, against D1's primary: the row is this organization's (and has that UUID; else 404, as if
 * it did not exist), and the run has started (else 503). The subscription follows the row's
 * current Temporal run, or, for a client resuming inside another run of the workflow, that run
 * (see below). With `admitEndTypes`, a client already past the last shown entry of a finished
 * run, or past its end (entries logged after the end are not sent again with a second end), gets 204.
 */
async function admitLogSubscriber(env: Env, organizationId: string, workflowId: string, url: URL, log: AdmissionLog): Promise<Admission> {
  const runUuid = url.searchParams.get(ADMISSION_PARAMS.runUuid);
  const run = await findRunByWorkflowId(env.DB, organizationId, workflowId);
  if (runUuid !== null && (!run || run.id !== runUuid))
    return { refusal: refuse(404, "run_not_found", `no workflow run "${runUuid.slice(0, 100)}"`) };
  if (!run) return { refusal: refuse(404, "run_not_found", `no run with workflowId "${workflowId}"`) };
  const runId = run.temporalRunId;
  if (!runId) {
    if (isTerminal(run.status) && url.searchParams.get(ADMISSION_PARAMS.endedBeforeStart) === "1") {
      const ended: RunEndedBeforeStart = { status: run.status, error: run.error };
      return { refusal: Response.json(ended, { status: NEVER_STARTED_STATUS }) };
    }
    return { refusal: notStartedRefusal(run.status) };
  }
  const endTypes = url.searchParams.get(ADMISSION_PARAMS.endTypes)?.split(",") ?? null;
  const after = Number(url.searchParams.get("after")) || 0;
  // A client resuming inside another run of the workflow than the row's (a continue-as-new or a
  // reset handed the row on since; or D1 does not name the next run yet) resumes in that run: its
  // entries after the cursor and its end (the run viewer's page then ends with that run's `done`),
  // then a stream that follows the workflow goes on with the next run from its start. Following
  // the row's run from the cursor would lose the rest of the client's run, and repeat the next
  // run's. The run viewer stays in the cursor's run only while it lacks some of it: a page that
  // has all of it follows the row's run, as a page opened now would. Not for a Workflow Runs
  // client that saw the end (`endTypes` alone): the row's run is the one with anything new for it.
  const cursorRun = after > 0 ? log.runOfSeq(after) : null;
  let followed = runId;
  if (cursorRun !== null && cursorRun !== runId && log.knowsRun(cursorRun)) {
    if (endTypes === null) followed = cursorRun;
    else if (url.searchParams.get(ADMISSION_PARAMS.cursorRun) === "1") {
      const lacksSome = !(await log.streamState(cursorRun)).finished || lacksSomeOf(log, after, cursorRun, endTypes);
      if (lacksSome) followed = cursorRun;
    }
  }
  if (endTypes !== null && after > 0 && (await log.streamState(followed)).finished) {
    if (!lacksSomeOf(log, after, followed, endTypes)) return { refusal: new Response(null, { status: 204 }) };
  }
  return { runId: followed };
}

/** The log entry that ends a run: every `endTypes` list names it (the streams show it). */
const RUN_END_TYPE = ["run.finished"] as const;

/**
 * Whether a client at `after` lacks some of the finished run `runId`: an entry of `endTypes` after
 * it, the run's end among them. What the run logs after its end (steps, thinking text or usage the
 * host's run event journal delivers late, after an outage) is not news to a client that has the
 * end: sent again, it came with a second end. A reset's run is another run (another `runId`), which
 * this does not hide. The second lookup runs only when the first found an entry.
 */
function lacksSomeOf(log: AdmissionLog, after: number, runId: string, endTypes: readonly string[]): boolean {
  return log.hasEntryAfter(after, runId, endTypes) && log.hasEntryAfter(after, runId, RUN_END_TYPE);
}
