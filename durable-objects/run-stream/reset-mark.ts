/**
 * A reset in flight, marked in the run's DO before the host is asked (docs/credits.md, "A reset").
 *
 * A reset holds credits on the run's row, then the host resets: Temporal terminates the replaced
 * run (a `terminated` close) and starts the new one. The replaced run's end and the reset's
 * `run.started` (recorded by the route once the host answers) reach this DO in either order. Were
 * the replaced run's end projected first, its final status would settle the reset's hold (trigger
 * runs_credit_settle_on_final) with no charge, and the new run would run uncharged.
 *
 * So the reset route's first call into the home region is this DO (`RunStream.holdForReset`, reset-holds.ts): it
 * marks the reset pending, then takes the hold. While the mark is pending, the projection holds
 * back (leaves pending in the log) the final status of every run the reset may replace: the log's
 * newest run when marked, the run a pinned reset names, and the run one of them continues as new
 * into while the mark waits (the workflow's current run then, which Temporal's reset terminates).
 * The mark ends:
 *
 * - with the reset's `run.started` (it names the replaced run): the held-back end is then dropped,
 *   as every end of a reset run is (EventLog.wasReset);
 * - when the host refuses the reset (`RunStream.undoResetHold`): the hold is put back, and the
 *   held-back end (a natural one) is projected and settles the run's own hold as usual;
 * - when nobody says (the host never answered the route, or the route died): the first watchdog
 *   alarm after RESET_PENDING_MS ends it (ResetHolds.resolveStale in reset-holds.ts). A run other than the
 *   replaced ones, new to the log since the mark (`successor`: the relay brought its events) or
 *   named by the host as the workflow's latest, means the reset happened: its `run.started` (with
 *   `resetFromRunId`) is recorded as the route would have. The replaced run still being the
 *   latest means it did not: the hold is put back, as for a refusal. If the host cannot say, the
 *   mark stays and is asked about again RESET_PENDING_MS later. A successor seen before that
 *   already drops the replaced runs' ends.
 *
 * While a mark is set the run is never "settled" for the watchdog, so its alarm stays armed.
 *
 * A mark lives in the `meta` table (durable: a DO restarted between the reset's two calls keeps it).
 */
import type { ResetHoldUndo } from "../../src/db/credits.ts";
import type { RunEvent } from "../../src/shared/run-event-schema.ts";
import type { EventLog, LogRow } from "./event-log.ts";
import type { Meta } from "./meta.ts";

/** How long a reset's mark waits for word from the route before the watchdog's alarm settles it with the host. */
export const RESET_PENDING_MS = 60_000;
/** The route gives up on the host's answer to a reset after this (well inside RESET_PENDING_MS). */
export const RESET_HOST_TIMEOUT_MS = 20_000;

const META_KEY = "resetPending";

export interface ResetMarkState {
  /**
   * Runs the reset may replace (their final status waits): the log's latest when marked (first:
   * the run the stale check names as replaced), a pinned reset's, and any one of them continued as
   * new into meanwhile.
   */
  replaces: string[];
  /** From when (ms since the epoch) the watchdog's alarm settles the mark itself. */
  until: number;
  /**
   * What the row held before the first pending reset's hold (null until a hold is taken). A second
   * reset while one is pending holds on top of the first and keeps this: putting back its own
   * "before" would leave the first hold in place for good.
   */
  undo: ResetHoldUndo | null;
  /**
   * Resets whose routes have not heard from the host yet. A refusal puts the hold back only when
   * it was the last of them (another may still start a run the hold is for); one the route never
   * hears about stays counted, and the watchdog's alarm settles the mark with the host.
   */
  pending: number;
  /** A run other than `replaces`, new to the log, seen since the mark: the reset started it. */
  successor: string | null;
  /**
   * The run the first of `replaces` continued as new into meanwhile (and so on): the workflow's
   * current run, which Temporal's reset terminates (withReplacedRun). Absent: that first one is.
   */
  current?: string;
}

/** What the projection does with a run's final status. */
export type FinishGate = "project" | "hold" | "drop";

/** What the projection does with a run's usage (ResetMark.usageGate). */
export type UsageGate = "project" | "hold" | "replaced";

export class ResetMark {
  private state: ResetMarkState | null;

  /** `log`: what it knew of a run before one of its rows came (noteAppended). */
  constructor(
    private readonly meta: Meta,
    private readonly log: Pick<EventLog, "wasReset" | "hadRunBefore">,
  ) {
    const stored = meta.get(META_KEY);
    // Marks stored before `pending` existed were one reset's.
    this.state = stored ? { pending: 1, ...(JSON.parse(stored) as Omit<ResetMarkState, "pending">) } : null;
  }

  get(): ResetMarkState | null {
    return this.state;
  }

  set(state: ResetMarkState): void {
    this.state = state;
    this.meta.set(META_KEY, JSON.stringify(state));
  }

  clear(): void {
    if (!this.state) return;
    this.state = null;
    this.meta.set(META_KEY, "");
  }

  /**
   * The log just took these rows: the reset's `run.started` ends the mark; an event of another run
   * names the successor, if that run is new to the log. The reset's run exists only from the
   * host's answer on, after the mark; a run the log already had a row of is an earlier one
   * reporting late (an activity of a run an earlier reset replaced, the run that continued as new
   * into the replaced one, from the host's run event journal after an outage), and naming it would
   * drop the replaced run's end and usage as if the reset had happened.
   *
   * A run a replaced one continued as new into meanwhile (its `continued_as_new` end names it) is
   * new to the log too, but no reset's run: it is the workflow's current run, the one Temporal's
   * reset terminates (or resets, if the host pinned it), so it joins `replaces` (its end and usage
   * wait with the replaced run's) and, if its events came first, stops being the successor.
   * Taken as the reset's run, its end would settle the reset's hold while the mark waits, and the
   * stale check would record it as the reset's run without asking the host.
   */
  noteAppended(rows: readonly LogRow[]): void {
    for (const row of rows) {
      const state = this.state;
      if (!state) return;
      // The start of a run a later reset already replaced (its answer came last) is no pending reset's.
      if (row.type === "run.started" && row.data.resetFromRunId) {
        if (!this.log.wasReset(row.runId!)) this.clear();
      } else if (row.type === "run.finished" && row.data.newRunId && state.replaces.includes(row.data.runId)) {
        const next = row.data.newRunId;
        if (!state.replaces.includes(next))
          this.set({
            ...state,
            replaces: [...state.replaces, next],
            successor: state.successor === next ? null : state.successor,
            current: row.data.runId === (state.current ?? state.replaces[0]) ? next : state.current,
          });
      } else if (
        row.runId !== null &&
        !state.successor &&
        !state.replaces.includes(row.runId) &&
        !this.log.wasReset(row.runId) &&
        // One indexed lookup, only while a mark waits for its successor and for a run it does not replace.
        !this.log.hadRunBefore(row.runId, row.seq)
      )
        this.set({ ...state, successor: row.runId });
    }
  }

  /**
   * A reset pending that may replace `runId` (its route has not heard from the host yet): with the
   * run it started, once that run's events came (null until then). null when none is pending for it.
   */
  pendingFor(runId: string): { successor: string | null } | null {
    const gate = this.gate(runId);
    if (gate === "project") return null;
    return { successor: gate === "drop" ? (this.state?.successor ?? null) : null };
  }

  /**
   * The usage `runId` reports: its own to pay (`project`), held back while a pending reset may
   * replace it (`hold`: charged to it if the reset is refused, to no one if it happens), or of a
   * run the reset replaced (`replaced`: another run came since). The successor's is its own.
   */
  usageGate(runId: string): UsageGate {
    const gate = this.gate(runId);
    if (gate === "project" || this.state?.successor === runId) return "project";
    return gate === "drop" ? "replaced" : "hold";
  }

  /** The final status of `runId`: held back while a reset that may replace it is pending, dropped once it was replaced. */
  gate(runId: string): FinishGate {
    const state = this.state;
    if (!state || (state.replaces.length > 0 && !state.replaces.includes(runId))) return "project";
    return state.successor && state.successor !== runId ? "drop" : "hold";
  }
}

/**
 * A reset's `run.started` names the run the workflow followed when the reset took effect, if that
 * was not the run it was started from: a reset pinned to an earlier run (A) while a later one (B)
 * is the workflow's current run makes Temporal terminate B, not A. Without the name, the row
 * (following B) would never move to the reset's run, and B's terminated end would settle the
 * reset's hold as the workflow's end while the new run goes on.
 *
 * The current run is the log's latest, unless the reset's own run already is (the relay brought
 * its events before the route recorded its start) or the run it was reset from is (a run new since
 * the mark, whose start is not recorded yet: the row does not follow it): then the run the pending
 * mark was set against, or the run that one continued as new into while the mark waited (`current`).
 *
 * A reset's run that a later reset already replaced names nothing: two resets at once whose
 * answers reach the edge out of order (the host answers the second, B reset from A, before the
 * first, A) log A's start after B's. Named as replacing B, A would take the row over from B
 * (Temporal's current run), and B's end would be dropped as a replaced run's: the row would stay
 * running, its hold reserved, for good. Its start is logged as it came (A's lineage, its history)
 * and changes nothing in D1: the row follows B, not A nor the run A was reset from.
 */
export function withReplacedRun(
  events: readonly RunEvent[],
  log: Pick<EventLog, "latestRunId" | "wasReset">,
  mark: ResetMarkState | null,
): readonly RunEvent[] {
  // Nearly every record has no reset in it: the events as they came, no copy (every push goes through here).
  if (!events.some((event) => event.type === "run.started" && event.data.resetFromRunId)) return events;
  const latestRunId = log.latestRunId();
  return events.map((event) => {
    if (event.type !== "run.started" || !event.data.resetFromRunId || event.data.replacedRunId) return event;
    const { runId, resetFromRunId } = event.data;
    // One lookup in memory (EventLog's resetRuns): some later reset's start names this run.
    if (log.wasReset(runId)) return event;
    // The latest being the run it was reset from while a mark waits may be a run new since the mark
    // (the relay brought A's events, then B, reset from A, is recorded before A is): the row never
    // followed it, and stays on the run the mark was set against, which B's start must take it from.
    const current = [latestRunId, mark?.current ?? mark?.replaces[0]].find((id) => id && id !== runId && id !== resetFromRunId);
    return current ? { ...event, data: { ...event.data, replacedRunId: current } } : event;
  });
}
