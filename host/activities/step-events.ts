/**
 * A Temporal activity interceptor that publishes every attempt's start and end as `step` run
 * events, for every activity, so no activity has to remember to; and runs each attempt with its
 * run's environment overrides (host/run-envs.ts).
 */
import type { ActivityExecuteInput, ActivityInboundCallsInterceptor, Next } from "@temporalio/worker";
import { Context } from "@temporalio/activity";
import { StepPublisher, activityRuntime, deliveryWaitMs, waitForDelivery, withEnvOverrides } from "./runtime.ts";

/** Step outputs larger than this (as JSON) are not copied into step events; the result route has them. */
const MAX_STEP_OUTPUT_CHARS = 16_000;

function outputsOf(result: unknown): unknown {
  if (result === undefined) return null;
  const json = JSON.stringify(result);
  return json !== undefined && json.length <= MAX_STEP_OUTPUT_CHARS ? result : { truncated: true, size: json?.length ?? 0 };
}

/**
 * The end of an attempt waits for the edge to record its `step` event, within what is left of the
 * attempt's delivery wait (DELIVERY_WAIT_MS, shared with the step's own waits: runtime.ts): its
 * outcome is in Temporal's history, and waiting out the push's retries (about two minutes) would
 * time out every step of every run (many have a one-minute start-to-close timeout) for an outage
 * of the API in front of them.
 */
export class StepEventsInterceptor implements ActivityInboundCallsInterceptor {
  /** `stepEventWaitMs`: the attempt's delivery wait (absent: the runtime's, deliveryWaitMs()). */
  constructor(private readonly stepEventWaitMs?: number) {}

  async execute(input: ActivityExecuteInput, next: Next<ActivityInboundCallsInterceptor, "execute">): Promise<unknown> {
    const publisher = new StepPublisher();
    // Not awaited: the step does not wait for the edge to start. The publisher sends in order, and
    // the end of the attempt (awaited below) is delivered after its start.
    void publisher.step("started");
    try {
      const workflowId = Context.current().info.workflowExecution?.workflowId;
      const envs = workflowId ? ((await activityRuntime().envs?.forWorkflow(workflowId)) ?? {}) : {};
      const result = await withEnvOverrides(envs, () => next(input));
      await this.awhile(publisher.step("completed", { outputs: outputsOf(result) }));
      return result;
    } catch (err) {
      await this.awhile(publisher.step("failed", { error: err instanceof Error ? err.message : String(err) }));
      throw err;
    }
  }

  /** Waits for `delivery`, at most what is left of the attempt's delivery wait. */
  private awhile(delivery: Promise<void>): Promise<void> {
    return waitForDelivery(delivery, this.stepEventWaitMs ?? deliveryWaitMs());
  }
}

export const stepEventsInterceptor = (_ctx: Context) => ({ inbound: new StepEventsInterceptor() });
