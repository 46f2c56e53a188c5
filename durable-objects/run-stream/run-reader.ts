/**
 * RunReader: what the Worker's one home-region call returns for a run (status, result, the
 * outcome of a blocking start): the D1 row, brought up to date with Temporal through the host
 * when it is not final, and the attributes from the run's log. All of it runs in the run's DO,
 * next to D1 and the host.
 */
import type { Run } from "../../src/db/schema.ts";
import { findRunByWorkflowId } from "../../src/db/runs.ts";
import type { Attribute } from "../../src/shared/aggregations.ts";
import type { RunEvent, RunResultResponse } from "../../src/shared/host-api.ts";
import { runFinishedEvent, runStartedEvent } from "../../src/shared/run-events.ts";
import { isTerminal } from "../../src/shared/run-status.ts";
import { ApiError } from "../../src/errors.ts";
import { HostClient } from "../../src/host-client.ts";
import { runStream } from "../../src/run-stream-client.ts";
import type { RunStarter, SerializedError, StartCommand, StartedRunInfo } from "./run-starter.ts";
import { serializeError } from "./run-starter.ts";
import { START_AWAIT_POLL_MS } from "./constants.ts";

/**
 * The host blocks at most this long per result call; longer waits are several calls. Under the
 * 100 s a Cloudflare proxy or Tunnel in front of the host waits for an answer (docs/deploy.md).
 */
const HOST_RESULT_WAIT_SLICE_MS = 90_000;
/** A wait that finds the host unavailable (restarting, its proxy's 502) asks again after this, while the caller's wait lasts. */
const HOST_RETRY_PAUSE_MS = 1_000;

export interface RunView {
  run: Run;
  /** Present when asked for (result payloads). */
  attributes?: Attribute[];
  /** The pinned run is not the workflow's current one (a reset replaced it, or it continued as new): read from the log. */
  earlier?: true;
  /** A blocking start's wait for the outcome failed (the host's answer, a read): the row as stored, not an outcome waited for. */
  waitFailed?: true;
}

/** Resolves at the log's next append, or after `ms` (log-waiters.ts). */
type NextAppend = (ms: number) => Promise<void>;

export type ReadReply = { ok: true; view: RunView } | { ok: false; error: SerializedError };
export type StartAndWaitReply =
  | { ok: true; started: StartedRunInfo; view: RunView; replayed?: boolean }
  | { ok: false; error: SerializedError };

export interface ReadOptions {
  /** Wait up to this long for a run that has not ended (0: answer at once). */
  waitMs?: number;
  /** Include the run's attributes (from its log). */
  attributes?: boolean;
  /** Answer with the stored row when the host is down (after waiting out `waitMs` for it to come back). */
  tolerateHostDown?: boolean;
  /** false: answer with the stored row, without asking Temporal (a start that goes on to stream). */
  settle?: boolean;
  /**
   * Bring D1 up to date with the log before reading the row: a stream that was just sent the
   * run's end (subscribers get it before D1 does) reads the row that says so.
   */
  projected?: boolean;
  /**
   * The run-pinned routes' run: the row's current run as usual, any other run of the workflow
   * the log knows from the log (earlier-run.ts), else 404 `run_not_found`.
   */
  runId?: string;
  /**
   * The unpinned input route's: the row keeps the workflow's first input, so the answer names the
   * run that was started with it, the first of its resets and continues-as-new (Output's
   * `firstExecutionRunId`), not the row's current run.
   */
  firstRun?: boolean;
  /**
   * A blocking start's: a start the host has not confirmed is waited for too, within `waitMs`
   * (the outbox's attempts go on meanwhile), and once one confirms it the wait goes on for the
   * outcome. Output's `POST /workflow/run`, whose clients take any 2xx for a finished run: its CLI
   * prints a 202 `scheduled` as done and `dataset generate` saves it without output.
   */
  awaitStart?: boolean;
}

export interface RunReaderDeps {
  env: Env;
  starter: RunStarter;
  /** The attributes `runId`'s usage counts (EventLog.usageAttributes). */
  attributes(runId: string | null): Promise<Attribute[]>;
  /** A run of the workflow other than the row's current one, from the log (null if the log does not know it). */
  earlierRun(current: Run, runId: string, withAttributes: boolean): RunView | null;
  /** The input a pinned read of the row's current run answers (a continue-as-new's run: its own arguments). */
  pinnedInput(runId: string, rowInput: unknown): unknown;
  /** The workflow's first run, from the log: the one `runId` follows from through resets and continues-as-new. */
  firstRunOf(runId: string): string;
  /**
   * The DO's own record (settling a run from inside its DO). Resolves to the run's row as D1 has
   * it after the record, when it was read in the projection's batch (no round trip of its own);
   * undefined when not (nothing new was written): the caller reads it.
   */
  record(workflowId: string, events: RunEvent[]): Promise<Run | null | undefined>;
  /** Writes to D1 what the log has that D1 does not (waiting for a write in flight). */
  project(workflowId: string): Promise<void>;
  /** A finished run's output from the log: for a row too small to hold it (`outputInLog`). */
  loggedOutput(runId: string): unknown;
  nextAppend: NextAppend;
  /**
   * The run the log knows (the host relays a run's start and history as Temporal records them): a
   * started run even while the outbox still waits for the host's answer to its start. A DO accepts
   * a start only for a workflow id with no run, so this is that start's run.
   */
  loggedRunId(): string | null;
}

export class RunReader {
  constructor(private readonly deps: RunReaderDeps) {}

  async read(organizationId: string, workflowId: string, options: ReadOptions = {}): Promise<ReadReply> {
    try {
      return { ok: true, view: await this.view(organizationId, workflowId, options) };
    } catch (err) {
      return { ok: false, error: serializeError(err) };
    }
  }

  /** Starts the run, then waits for its outcome: the blocking start routes' one call. */
  async startAndWait(command: StartCommand, options: ReadOptions & { waitMs: number }): Promise<StartAndWaitReply> {
    const deadline = Date.now() + options.waitMs;
    const reply = await this.deps.starter.start(command);
    if (!reply.ok) return reply;
    if (reply.replayed) {
      // An Idempotency-Key replay: the run lives in its own DO (same home region); read it there.
      const other = (await runStream(this.deps.env, reply.started.workflowId).read(command.organizationId, reply.started.workflowId, {
        ...options,
        waitMs: Math.max(0, deadline - Date.now()),
      })) as ReadReply;
      return other.ok ? { ok: true, started: reply.started, view: other.view, replayed: true } : other;
    }
    let runId = reply.started.runId;
    if (runId === null && options.awaitStart) runId = await this.confirmedWithin(reply.started.id, deadline);
    let view: RunView;
    try {
      // A start the host did not confirm is accepted (the outbox starts it): answer with the row as it is.
      view = await this.view(
        command.organizationId,
        command.workflowId,
        { ...options, waitMs: Math.max(0, deadline - Date.now()) },
        { runId: runId ?? undefined },
      );
    } catch (err) {
      // The run is accepted (started, maybe) and goes on whatever failed while waiting for it (the
      // host's answer to the wait, a read): the row as it is, never an error a client would answer
      // by starting the run again. Only if the row cannot be read either is the error the answer.
      try {
        view = {
          ...(await this.view(command.organizationId, command.workflowId, { ...options, settle: false, waitMs: 0 })),
          waitFailed: true,
        };
      } catch {
        return { ok: false, error: serializeError(err) };
      }
    }
    // The run.started projection may still be on its way to D1: the row says at least what the start knows.
    if (runId && view.run.status === "scheduled") view.run = { ...view.run, status: "running", temporalRunId: runId };
    return { ok: true, started: runId ? { ...reply.started, runId, status: "running" } : reply.started, view };
  }

  /**
   * The Temporal run id of the start accepted as `acceptId`, once the outbox's attempts get it
   * confirmed before `deadline`, or the host's events show the run started (its answers to the
   * start may be what is slow); null if neither (or it was refused: the row says `failed`).
   */
  private async confirmedWithin(acceptId: string, deadline: number): Promise<string | null> {
    for (;;) {
      const outcome = this.deps.starter.startOutcome(acceptId);
      if (outcome.state !== "accepted" || outcome.started.status !== "scheduled") {
        return outcome.state === "accepted" ? outcome.started.runId : null;
      }
      const logged = this.deps.loggedRunId();
      if (logged) return logged;
      const left = deadline - Date.now();
      if (left <= 0) return null;
      await this.deps.nextAppend(Math.min(left, START_AWAIT_POLL_MS));
    }
  }

  /**
   * `justStarted`: this DO has just started the run (its Temporal run id, when the host confirmed
   * it), so the host's wait begins while the row is read.
   */
  private async view(
    organizationId: string,
    workflowId: string,
    options: ReadOptions,
    justStarted: { runId?: string } | false = false,
  ): Promise<RunView> {
    // A start still in the outbox is not in Temporal yet (unless this start knows its run: the host's
    // events named it while its answer to the start is late): the row is what there is to say.
    const inTemporal = !this.deps.starter.hasPending() || (justStarted !== false && justStarted.runId !== undefined);
    const settle = inTemporal && options.settle !== false;
    const waitMs = options.waitMs ?? 0;
    const waiting = settle && justStarted ? waitForResult(this.deps.env, workflowId, waitMs, justStarted.runId) : undefined;
    waiting?.catch(() => undefined); // settleRun reports its failure; a row that is missing answers first
    if (options.projected) {
      // A write that fails leaves the row as it was (the watchdog retries it): the read answers with that.
      await this.deps
        .project(workflowId)
        .catch((err: unknown) =>
          console.warn(JSON.stringify({ level: "warn", message: "projection before a read failed", workflowId, error: String(err) })),
        );
    }
    const stored = await findRunByWorkflowId(this.deps.env.DB, organizationId, workflowId);
    if (!stored) throw new ApiError("run_not_found", `no run with workflowId "${workflowId}"`);
    const pinned = options.runId;
    if (pinned !== undefined && pinned !== stored.temporalRunId) return this.pinnedRun(stored, pinned, options);
    const run = settle
      ? await settleRun(this.deps.env, stored, waitMs, options.tolerateHostDown ?? true, this.deps.record, waiting)
      : stored;
    // Settling found that the pinned run continued as new: the row follows the next run now.
    if (pinned !== undefined && pinned !== run.temporalRunId) return this.pinnedRun(run, pinned, options);
    const whole = withLoggedOutput(run, this.deps.loggedOutput);
    const answered =
      pinned !== undefined
        ? { ...whole, input: this.deps.pinnedInput(pinned, whole.input) }
        : options.firstRun && whole.temporalRunId
          ? { ...whole, temporalRunId: this.deps.firstRunOf(whole.temporalRunId) }
          : whole;
    return { run: answered, ...(options.attributes ? { attributes: await this.deps.attributes(whole.temporalRunId) } : {}) };
  }

  /** A run-pinned read of a run that is not the row's current one. */
  private pinnedRun(current: Run, runId: string, options: ReadOptions): RunView {
    const view = this.deps.earlierRun(current, runId, options.attributes ?? false);
    if (!view) throw new ApiError("run_not_found", `run "${runId}" not found for workflow "${current.temporalWorkflowId}"`);
    return view;
  }
}

/**
 * The row with its output, from the log when the row had no room for it (`outputInLog`, cleared
 * on the copy: its `output` is whole, so no reader fetches it again).
 */
export function withLoggedOutput(run: Run, loggedOutput: (runId: string) => unknown): Run {
  if (!run.outputInLog || !run.temporalRunId) return run;
  return { ...run, output: loggedOutput(run.temporalRunId) ?? null, outputInLog: false };
}

/**
 * Brings a non-terminal row up to date with Temporal (via the host), waiting up to `waitMs` for
 * the run to close. A terminal row is returned as is. If the host cannot be reached the row is
 * returned unchanged when `tolerateHostDown`, so reads keep working while the host restarts.
 */
export async function settleRun(
  env: Env,
  run: Run,
  waitMs: number,
  tolerateHostDown: boolean,
  /** How to record what was learned: the DO's own record (no call to itself), with the row it leaves when read in its batch. */
  record: (workflowId: string, events: RunEvent[]) => Promise<Run | null | undefined>,
  /** The host's answer, when the caller started waiting for it already (`waitForResult`, same `waitMs`). */
  waiting?: Promise<WaitedResult>,
): Promise<Run> {
  if (isTerminal(run.status)) return run;
  let waited: WaitedResult;
  try {
    waited = await (waiting ?? waitForResult(env, run.temporalWorkflowId, waitMs));
  } catch (err) {
    if (tolerateHostDown && err instanceof ApiError && err.code === "host_unavailable") return run;
    throw err;
  }
  const { result, handOvers } = waited;
  const events: RunEvent[] = [];
  if (run.status === "scheduled") events.push(runStartedEvent(handOvers[0]?.runId ?? result.runId));
  // Each hand-over moves the row to the next run; the last run's end (if it came) ends the row.
  for (const handOver of handOvers) events.push(runFinishedEvent(handOver));
  if (isTerminal(result.status)) events.push(runFinishedEvent(result));
  if (events.length === 0) return run;
  const recorded = await record(run.temporalWorkflowId, events);
  if (recorded && recorded.organizationId === run.organizationId) return recorded;
  return (await findRunByWorkflowId(env.DB, run.organizationId, run.temporalWorkflowId)) ?? run;
}

/** The host's last answer, and the continue-as-new hand-overs the wait followed to get there (oldest first). */
export interface WaitedResult {
  result: RunResultResponse;
  handOvers: RunResultResponse[];
}

/**
 * Asks the host for the run's outcome, waiting up to `waitMs` for it to close (in slices). A
 * caller that has just started the run may begin this before reading the run's row (settleRun's
 * `waiting`), so the row read and the wait overlap, and name the run it started (`runId`), which
 * spares the host a describe when the run completes. A run that continues as new has not ended:
 * the wait goes on with the next run (as Temporal's own result() follows runs), and the
 * hand-overs are returned with the answer, so that the row can follow them.
 */
export async function waitForResult(env: Env, workflowId: string, waitMs: number, runId?: string): Promise<WaitedResult> {
  const host = new HostClient(env);
  const deadline = Date.now() + waitMs;
  const handOvers: RunResultResponse[] = [];
  for (;;) {
    let result: RunResultResponse;
    try {
      result = await host.result(workflowId, Math.min(HOST_RESULT_WAIT_SLICE_MS, Math.max(0, deadline - Date.now())), runId);
    } catch (err) {
      // The host restarting within the caller's wait is a pause in the wait, not its end.
      const outage = err instanceof ApiError && err.code === "host_unavailable";
      if (!outage || Date.now() + HOST_RETRY_PAUSE_MS >= deadline) throw err;
      await new Promise((resolve) => setTimeout(resolve, HOST_RETRY_PAUSE_MS));
      continue;
    }
    if (result.status === "continued_as_new" && result.newRunId && Date.now() < deadline) {
      handOvers.push(result);
      runId = result.newRunId;
      continue;
    }
    if (isTerminal(result.status) || Date.now() >= deadline) return { result, handOvers };
  }
}
