/**
 * Follows each run started through this host until it closes, then pushes its outcome to the edge.
 * On start the host re-attaches to every open run on its task queue, so a host restart does not
 * leave runs unreported. (The edge also reconciles when a client asks for a run.)
 */
import type { Client } from "@temporalio/client";
import type { RunEvent } from "../src/shared/host-api.ts";
import type { EdgeClient } from "./edge-client.ts";
import { runResult } from "./temporal.ts";

export class RunWatcher {
  private readonly watching = new Set<string>();

  constructor(
    private readonly client: Client,
    private readonly edge: EdgeClient,
    private readonly taskQueue: string,
  ) {}

  get size(): number {
    return this.watching.size;
  }

  /** Starts following a run; a second call for the same workflow id is a no-op. */
  watch(workflowId: string): void {
    if (this.watching.has(workflowId)) return;
    this.watching.add(workflowId);
    void this.follow(workflowId).finally(() => this.watching.delete(workflowId));
  }

  async reattachOpenRuns(): Promise<number> {
    let count = 0;
    const query = `TaskQueue = '${this.taskQueue}' AND ExecutionStatus = 'Running'`;
    for await (const execution of this.client.workflow.list({ query })) {
      this.watch(execution.workflowId);
      count++;
    }
    return count;
  }

  private async follow(workflowId: string): Promise<void> {
    try {
      // result() long-polls Temporal; it settles when the run closes, whatever the outcome.
      await this.client.workflow.getHandle(workflowId).result().catch(() => undefined);
      const outcome = await runResult(this.client, workflowId, 0);
      const event: RunEvent = {
        sourceKey: `run:${outcome.runId}:finished`,
        type: "run.finished",
        at: outcome.closeTime ?? new Date().toISOString(),
        data: { runId: outcome.runId, status: outcome.status, output: outcome.output, error: outcome.error },
      };
      await this.edge.pushRunEvents(workflowId, [event]);
    } catch (err) {
      console.warn(`run watcher: could not report ${workflowId}: ${String(err)}`);
    }
  }
}
