/**
 * Relays each run's Temporal history to the edge, once per run whatever the number of stream
 * subscribers: one long-poll (`waitNewEvent`) per open run, each new batch pushed to the run's
 * RunStream as `history` events keyed `history:<runId>:<eventId>`, then `run.finished` when the
 * run closes (following continue-as-new to the next run).
 *
 * Delivery is at-least-once. After a host restart every open run on the task queue is followed
 * again from its first event; the edge drops what it already has.
 */
import type { Client } from "@temporalio/client";
import type { RunEvent } from "../src/shared/host-api.ts";
import { runFinishedEvent } from "../src/shared/run-events.ts";
import type { EdgeClient } from "./edge-client.ts";
import { CLOSE_EVENT_TYPES } from "../src/shared/history-events.ts";
import { serializeHistoryEvent } from "./history-serialization.ts";
import { runResult } from "./temporal.ts";

/** Pause after a failed history request before trying again. */
const RETRY_DELAY_MS = 1_000;

export class HistoryRelay {
  private readonly following = new Set<string>();
  /** Temporal GetWorkflowExecutionHistory calls made, for the benchmark's per-run figure. */
  historyRequests = 0;
  private stopped = false;

  constructor(
    private readonly client: Client,
    private readonly edge: EdgeClient,
    private readonly taskQueue: string,
  ) {}

  get size(): number {
    return this.following.size;
  }

  /** Follows a run until it closes; a second call for a run already followed is a no-op. */
  follow(workflowId: string): void {
    if (this.following.has(workflowId) || this.stopped) return;
    this.following.add(workflowId);
    void this.relay(workflowId)
      .catch((err) => console.warn(`history relay: gave up on ${workflowId}: ${String(err)}`))
      .finally(() => this.following.delete(workflowId));
  }

  stop(): void {
    this.stopped = true;
  }

  async reattachOpenRuns(): Promise<number> {
    let count = 0;
    const query = `TaskQueue = '${this.taskQueue}' AND ExecutionStatus = 'Running'`;
    for await (const execution of this.client.workflow.list({ query })) {
      this.follow(execution.workflowId);
      count++;
    }
    return count;
  }

  private async relay(workflowId: string): Promise<void> {
    const relayed = new Set<string>();
    let runId: string | undefined = (await this.client.workflow.getHandle(workflowId).describe()).runId;
    while (runId && !this.stopped) {
      relayed.add(runId);
      runId = await this.relayRun(workflowId, runId);
      if (!runId && !this.stopped) {
        // Closed with no successor named: a reset may still have started a newer run.
        const latest = (await this.client.workflow.getHandle(workflowId).describe()).runId;
        if (!relayed.has(latest)) runId = latest;
      }
    }
  }

  /** Relays one run; returns the next run's id after a continue-as-new. */
  private async relayRun(workflowId: string, runId: string): Promise<string | undefined> {
    let nextPageToken: Uint8Array | undefined;
    for (;;) {
      if (this.stopped) return undefined;
      let response;
      try {
        this.historyRequests++;
        response = await this.client.workflowService.getWorkflowExecutionHistory({
          namespace: this.client.options.namespace,
          execution: { workflowId, runId },
          nextPageToken,
          waitNewEvent: true,
          maximumPageSize: 1000,
        });
      } catch (err) {
        if ((err as { code?: number }).code === 5) throw err; // NOT_FOUND: nothing to follow
        await new Promise((r) => setTimeout(r, RETRY_DELAY_MS));
        continue;
      }
      const events = response.history?.events ?? [];
      if (events.length > 0) {
        const serialized = events.map(serializeHistoryEvent);
        await this.edge.pushRunEvents(
          workflowId,
          serialized.map((event): RunEvent => ({
            sourceKey: `history:${runId}:${event.eventId}`,
            type: "history",
            at: event.eventTime ?? new Date().toISOString(),
            data: { runId, event: event as unknown as Record<string, unknown> },
          })),
        );
        const close = serialized.find((e) => CLOSE_EVENT_TYPES.includes(e.eventType));
        if (close) {
          const outcome = await runResult(this.client, workflowId, 0, runId);
          await this.edge.pushRunEvents(workflowId, [runFinishedEvent({ ...outcome, closeTime: close.eventTime ?? outcome.closeTime })]);
          return outcome.newRunId ?? undefined;
        }
      }
      nextPageToken = response.nextPageToken?.length ? response.nextPageToken : undefined;
      if (!nextPageToken && events.length === 0) {
        // No token and nothing new: the run is closed and we saw its end before. Done.
        return undefined;
      }
    }
  }
}
