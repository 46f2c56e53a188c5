/**
 * The watchdog alarm: a run that is not finished and has gone quiet is reconciled with Temporal
 * through the host, so no run stays `running` after a fault. Each check that finds the run still
 * quiet doubles the wait (up to MAX_WATCHDOG_INTERVAL_MS), so a run that waits for a human for
 * days costs a few checks an hour; any new event resets it.
 *
 * A check can find that Temporal no longer has the workflow at all: the host's own 404
 * run_not_found (its retention deleted the closed run before the relay delivered the close, or
 * the namespace was wiped). What follows is run-lifecycle.ts `historyGone`; a run Temporal lost
 * while the log has no outcome for it is checked only every LOST_RUN_CHECK_INTERVAL_MS from then.
 */
import { positiveNumberVar } from "../../src/shared/positive-number-var.ts";
import { HostClient, HostRefusedError } from "../../src/host-client.ts";
import { runFinishedEvent } from "../../src/shared/run-events.ts";
import type { RunEvent } from "../../src/shared/run-event-schema.ts";
import { isTerminal } from "../../src/shared/run-status.ts";
import {
  DEFAULT_WATCHDOG_QUIET_MS,
  LOST_RUN_CHECK_INTERVAL_MS,
  MAX_WATCHDOG_DOUBLINGS,
  MAX_WATCHDOG_INTERVAL_MS,
  META_KEYS,
} from "./constants.ts";
import type { Meta } from "./meta.ts";

/**
 * What a check learned: the host answered (`answered`), could not be asked (`unreachable`: down,
 * slow, a proxy's answer, any other error), or said that Temporal has no such workflow (`gone`).
 */
export type WatchdogCheck = "answered" | "unreachable" | "gone";

/** An alarm already set at most this much earlier than a new arm would set it is left as it is. */
export const WATCHDOG_ARM_SLACK_MS = 1_000;

export class Watchdog {
  /** The alarm this DO last set or deleted (undefined: not known, e.g. after the alarm fired). */
  private alarmAt: number | null | undefined;

  constructor(
    private readonly storage: DurableObjectStorage,
    private readonly env: Env,
    private readonly meta: Meta,
  ) {}

  private quietMs(): number {
    return positiveNumberVar(this.env.RUN_WATCHDOG_QUIET_MS, DEFAULT_WATCHDOG_QUIET_MS);
  }

  private quietChecks(): number {
    return Number(this.meta.get(META_KEYS.quietChecks) ?? 0);
  }

  /** New events arrived: the next check is a full quiet period away again (and the run is not lost after all). */
  heard(): void {
    this.meta.set(META_KEYS.quietChecks, "0");
    if (this.meta.get(META_KEYS.lostOpenRun)) this.meta.set(META_KEYS.lostOpenRun, "");
  }

  /**
   * Temporal has no such workflow and the log has no outcome for its run (`runId`, null if the
   * log has none): there is nothing true to record, so the row stays as it is. Logged at ERROR
   * once (not at every check); from then the run is checked every LOST_RUN_CHECK_INTERVAL_MS.
   */
  lostOpenRun(workflowId: string, runId: string | null): void {
    if (this.meta.get(META_KEYS.lostOpenRun)) return;
    console.error(
      JSON.stringify({
        level: "error",
        message:
          "Temporal has no such workflow, and the edge has no outcome for its run: its row is left as it is (restore Temporal's data, or end the row by hand)",
        workflowId,
        runId,
        nextCheckInMs: LOST_RUN_CHECK_INTERVAL_MS,
      }),
    );
    this.meta.set(META_KEYS.lostOpenRun, runId ?? "none");
  }

  /**
   * Sets the alarm, or clears it when there is nothing left to watch (`settled`). A burst of
   * events does not move the alarm on every event: one set less than a second (or a tenth of the
   * wait) earlier stays, and a cleared alarm is not cleared again.
   */
  async arm(settled: boolean, notAfter: number | null = null): Promise<void> {
    // `notAfter`: another part needs the alarm by then (the start outbox's next attempt): never later, never deleted.
    if (settled && notAfter === null) {
      if (this.alarmAt === null) return;
      await this.storage.deleteAlarm();
      this.alarmAt = null;
      return;
    }
    const now = Date.now();
    const delay = this.meta.get(META_KEYS.lostOpenRun)
      ? LOST_RUN_CHECK_INTERVAL_MS
      : Math.min(this.quietMs() * 2 ** Math.min(this.quietChecks(), MAX_WATCHDOG_DOUBLINGS), MAX_WATCHDOG_INTERVAL_MS);
    const at = notAfter === null ? now + delay : Math.min(now + delay, Math.max(notAfter, now));
    const set = this.alarmAt;
    if (typeof set === "number" && set > now && set <= at && at - set < Math.min(WATCHDOG_ARM_SLACK_MS, delay / 10)) return;
    await this.storage.setAlarm(at);
    this.alarmAt = at;
  }

  /** Someone else may have moved the alarm (it fired, or another part set it): the next arm sets it. */
  forget(): void {
    this.alarmAt = undefined;
  }

  /**
   * Asks the host to relay the run's history again and records its outcome if it has ended. Only
   * the host's own 404 run_not_found is `gone` (HostClient makes a proxy's 404, without the host's
   * error body, a `host_error`): Temporal answered that it has no such workflow.
   */
  async reconcile(workflowId: string, record: (events: RunEvent[]) => Promise<unknown>): Promise<WatchdogCheck> {
    const host = new HostClient(this.env);
    let check: WatchdogCheck;
    try {
      // What we already have is dropped as duplicate.
      await host.follow(workflowId);
      const result = await host.result(workflowId, 0);
      if (this.meta.get(META_KEYS.lostOpenRun)) this.meta.set(META_KEYS.lostOpenRun, "");
      if (isTerminal(result.status)) await record([runFinishedEvent(result)]);
      check = "answered";
    } catch (err) {
      if (err instanceof HostRefusedError && err.code === "run_not_found") check = "gone";
      else {
        console.warn(JSON.stringify({ level: "warn", message: "run watchdog could not reach the host", workflowId, error: String(err) }));
        check = "unreachable";
      }
    }
    this.meta.set(META_KEYS.quietChecks, String(this.quietChecks() + 1));
    return check;
  }
}
