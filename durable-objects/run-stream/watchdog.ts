/**
 * The watchdog alarm: a run that is not finished and has gone quiet is reconciled with Temporal
 * through the host, so no run stays `running` after a fault. Each check that finds the run still
 * quiet doubles the wait (up to MAX_WATCHDOG_INTERVAL_MS), so a run that waits for a human for
 * days costs a few checks an hour; any new event resets it.
 */
import { positiveNumberVar } from "../../src/shared/positive-number-var.ts";
import { HostClient } from "../../src/host-client.ts";
import { runFinishedEvent } from "../../src/shared/run-events.ts";
import type { RunEvent } from "../../src/shared/run-event-schema.ts";
import { isTerminal } from "../../src/shared/run-status.ts";
import { DEFAULT_WATCHDOG_QUIET_MS, MAX_WATCHDOG_DOUBLINGS, MAX_WATCHDOG_INTERVAL_MS, META_KEYS } from "./constants.ts";
import type { Meta } from "./meta.ts";

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

  /** New events arrived: the next check is a full quiet period away again. */
  heard(): void {
    this.meta.set(META_KEYS.quietChecks, "0");
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
    const delay = Math.min(this.quietMs() * 2 ** Math.min(this.quietChecks(), MAX_WATCHDOG_DOUBLINGS), MAX_WATCHDOG_INTERVAL_MS);
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

  /** Asks the host to relay the run's history again and records its outcome if it has ended. */
  async reconcile(workflowId: string, record: (events: RunEvent[]) => Promise<unknown>): Promise<void> {
    const host = new HostClient(this.env);
    try {
      // What we already have is dropped as duplicate.
      await host.follow(workflowId);
      const result = await host.result(workflowId, 0);
      if (isTerminal(result.status)) await record([runFinishedEvent(result)]);
    } catch (err) {
      console.warn(JSON.stringify({ level: "warn", message: "run watchdog could not reach the host", workflowId, error: String(err) }));
    }
    this.meta.set(META_KEYS.quietChecks, String(this.quietChecks() + 1));
  }
}
