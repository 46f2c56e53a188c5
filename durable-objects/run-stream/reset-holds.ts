/**
 * A reset's credit hold, taken in the run's DO under a pending mark (reset-mark.ts; docs/credits.md,
 * "A reset"): the route's first call marks the reset pending and takes the hold, a host refusal
 * undoes both, and the watchdog's alarm settles a mark nobody ended in time.
 */
import { holdForReset as holdResetCredits, undoResetHoldStatement } from "../../src/db/credits.ts";
import { HostClient } from "../../src/host-client.ts";
import { resetCreditHold } from "../../src/services/runs.ts";
import type { RunEvent } from "../../src/shared/run-event-schema.ts";
import { runFinishedEvent, runResetEvent } from "../../src/shared/run-events.ts";
import { isTerminal } from "../../src/shared/run-status.ts";
import { META_KEYS } from "./constants.ts";
import type { EventLog } from "./event-log.ts";
import { RESET_PENDING_MS, type ResetMark } from "./reset-mark.ts";
import type { Meta } from "./meta.ts";
import { maxOpenRuns } from "./run-starter.ts";

/** The reset route's call before it asks the host. `runId`: the run a pinned reset names. */
export interface ResetHoldRequest {
  organizationId: string;
  workflowId: string;
  runUuid: string;
  runId?: string;
}

export type ResetHoldReply =
  | { ok: true; held: boolean }
  | { ok: false; amount: number; available: number }
  /** The run has ended and the organization has `openRunsLimit` runs open: nothing was marked or held. */
  | { ok: false; openRunsLimit: number }
  /** The run's start is still in the outbox: Temporal may not have it, and nothing was marked or held. */
  | { ok: false; notStarted: true };

export interface ResetHoldsDeps {
  env: Env;
  log: Pick<EventLog, "latestRunId" | "hasUnprojected">;
  meta: Meta;
  mark: ResetMark;
  /**
   * Arms the DO's one alarm for the pending mark (the watchdog settles it) without moving what
   * else it waits for (a webhook's retry) later.
   */
  armAlarm(): Promise<void>;
  /** Whether the run's start is accepted and not yet confirmed by Temporal (run-starter.ts). */
  startPending(): boolean;
  /** Brings D1 up to date with the log (an end held back by the mark goes out). */
  settle(workflowId: string): Promise<void>;
  /** Records events as the route would have (the reset's `run.started`, the new run's end). */
  record(workflowId: string, events: RunEvent[]): Promise<unknown>;
  /** The mark ended without the reset's `run.started` ending it: log-view subscribers of the replaced run may have their `done` now (fanout.ts). */
  markEnded(): void;
}

export class ResetHolds {
  /**
   * Holds and releases one at a time. Each reads the row's hold, then updates it only if it is
   * still what was read: two resets interleaving their D1 calls would both read the same hold, and
   * the second's update would find it changed and be refused (402) though the credits are there.
   */
  private turn: Promise<unknown> = Promise.resolve();

  constructor(private readonly deps: ResetHoldsDeps) {}

  private inTurn<T>(work: () => Promise<T>): Promise<T> {
    const result = this.turn.then(work);
    this.turn = result.catch(() => undefined);
    return result;
  }

  /**
   * The reset route's first call: marks the reset pending (so the replaced run's end cannot settle
   * the reset's hold, whichever arrives first), then takes the hold that a start of the run's kind
   * would take (`holdForReset`). The mark is set before the hold's first await, so an end that
   * arrives while the hold is being taken waits too. A reset refused for credits leaves no mark;
   * an unmetered one keeps it (nothing held, but the replaced run's end must wait all the same).
   */
  hold(request: ResetHoldRequest): Promise<ResetHoldReply> {
    return this.inTurn(() => this.holdNow(request));
  }

  private async holdNow(request: ResetHoldRequest): Promise<ResetHoldReply> {
    const { log, meta, mark: resetMark } = this.deps;
    // Nothing to reset before Temporal confirms the start: refused here, authoritatively, before a
    // mark, a hold or the host (which, while it is down, could not say, and the route would answer
    // an "outcome unknown" that the start's later confirmation would seem to answer).
    if (this.deps.startPending()) return { ok: false, notStarted: true };
    meta.set(META_KEYS.workflowId, request.workflowId);
    // A reset already pending (two at once, or a retry after an unknown outcome) stays in the mark:
    // this one counts itself in, and the first hold's `undo` is kept.
    const previous = resetMark.get();
    const replaces = [...new Set([log.latestRunId(), request.runId, ...(previous?.replaces ?? [])].filter((id): id is string => !!id))];
    resetMark.set({
      replaces,
      until: Date.now() + RESET_PENDING_MS,
      undo: previous?.undo ?? null,
      successor: null,
      pending: (previous?.pending ?? 0) + 1,
    });
    let outcome: Awaited<ReturnType<typeof holdResetCredits>>;
    try {
      outcome = await holdResetCredits(
        this.deps.env.DB,
        request.organizationId,
        request.runUuid,
        (basis) => resetCreditHold(this.deps.env, basis),
        maxOpenRuns(this.deps.env),
        // Kept in the mark before the hold's UPDATE goes out: should its answer be lost (or this
        // DO go away meanwhile), the release below, or the stale mark's check, can still put the
        // row back. The first pending reset's undo is the one that counts.
        (undo) => {
          const current = resetMark.get();
          if (current && !current.undo) resetMark.set({ ...current, undo });
        },
      );
    } catch (err) {
      await this.release(request.workflowId);
      throw err;
    }
    if (!outcome.ok) {
      await this.release(request.workflowId);
      return outcome.reason === "open_runs"
        ? { ok: false, openRunsLimit: outcome.limit }
        : { ok: false, amount: outcome.amount, available: outcome.available };
    }
    if (!outcome.held) {
      // Unmetered: nothing held, but the mark (set above) stays all the same, so that the replaced
      // run's end cannot reach D1 (and its webhook go out) as the workflow's end before the reset's
      // run is recorded; the route ends it as for a metered reset (its run, a refusal, or the stale check).
      await this.deps.armAlarm();
      return { ok: true, held: false };
    }
    // Another reset's run.started may have ended the mark meanwhile: this reset's mark is set again.
    const mark = resetMark.get() ?? {
      replaces: [log.latestRunId()].filter((id): id is string => !!id),
      until: 0,
      undo: null,
      successor: null,
      pending: 1,
    };
    // The undo puts back what the row held before the first pending reset, and finds the row by
    // what it holds now: this hold's amount, which differs from the first's when the run's
    // workflow changed in between (a prompt's output cap), else the undo would match nothing.
    const undo = mark.undo ? { ...mark.undo, amount: outcome.undo.amount } : outcome.undo;
    resetMark.set({ ...mark, until: Date.now() + RESET_PENDING_MS, undo });
    await this.deps.armAlarm();
    return { ok: true, held: true };
  }

  /** The host refused the reset: the hold is put back as it was, and an end held back meanwhile goes to D1. */
  undo(workflowId: string): Promise<void> {
    return this.inTurn(() => this.release(workflowId));
  }

  /**
   * A reset that started nothing (its hold was not taken, or the host refused it) leaves the mark.
   * Were it the last pending one, the row's hold goes back to what it held before the first and
   * the mark ends; else the others still pending keep both. No mark: another reset's `run.started`
   * ended it, and its run has the hold.
   */
  private async release(workflowId: string): Promise<void> {
    const mark = this.deps.mark.get();
    if (!mark) return;
    if (mark.pending > 1) {
      this.deps.mark.set({ ...mark, pending: mark.pending - 1 });
      return;
    }
    if (mark.undo) await undoResetHoldStatement(this.deps.env.DB, mark.undo).run();
    await this.end(workflowId);
  }

  private async end(workflowId: string): Promise<void> {
    this.deps.mark.clear();
    this.deps.markEnded();
    if (this.deps.log.hasUnprojected()) await this.deps.settle(workflowId);
  }

  /**
   * A mark nobody ended in time (the route never heard from the host, or died). A run seen since
   * the mark, or else the workflow's latest run as the host reports it, that is not a replaced
   * one means the reset happened: its `run.started` is recorded as the route would have. The
   * replaced run still being the latest means it did not: the hold is put back as for a refusal.
   * If the host cannot say, the mark stays and is checked again RESET_PENDING_MS later: ending it
   * then would let the replaced run's end settle the hold with no charge (had the reset happened,
   * its run would go uncharged) or keep a hold on an ended row for good (had it not).
   */
  resolveStale(workflowId: string): Promise<void> {
    // In turn with holds and releases: a reset that arrived while the host is asked (the await
    // opens the DO's input gate) would otherwise join this mark, and be undone and cleared with it.
    return this.inTurn(() => this.resolveStaleNow(workflowId));
  }

  private async resolveStaleNow(workflowId: string): Promise<void> {
    const mark = this.deps.mark.get();
    if (!mark || Date.now() < mark.until) return;
    const replaced = mark.replaces[0];
    try {
      if (replaced && mark.successor) {
        await this.deps.record(workflowId, [runResetEvent(mark.successor, replaced)]);
      } else if (replaced) {
        const latest = await new HostClient(this.deps.env).result(workflowId, 0);
        if (!mark.replaces.includes(latest.runId)) {
          const events: RunEvent[] = [runResetEvent(latest.runId, replaced)];
          if (isTerminal(latest.status)) events.push(runFinishedEvent(latest));
          await this.deps.record(workflowId, events);
        } else if (mark.undo) {
          await undoResetHoldStatement(this.deps.env.DB, mark.undo).run();
        }
      }
    } catch (err) {
      console.warn(
        JSON.stringify({
          level: "warn",
          message: "a stale reset mark could not be checked with the host; it is checked again later",
          workflowId,
          error: String(err),
        }),
      );
      this.deps.mark.set({ ...mark, until: Date.now() + RESET_PENDING_MS });
      return;
    }
    this.deps.mark.clear();
    this.deps.markEnded();
  }
}
