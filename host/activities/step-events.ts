/**
 * A Temporal activity interceptor that publishes every attempt's start and end as `step` run
 * events, for every activity, so no activity has to remember to; and runs each attempt with its
 * run's environment overrides (host/run-envs.ts).
 */
import type { ActivityExecuteInput, ActivityInboundCallsInterceptor, Next } from "@temporalio/worker";
import { Context } from "@temporalio/activity";
import type { RunEventData } from "../../src/shared/run-event-schema.ts";
import { StepPublisher, activityRuntime, deliveryWaitMs, waitForDelivery, withEnvOverrides } from "./runtime.ts";

/**
 * The largest step outputs (UTF-8 bytes of their JSON) a step event carries: Temporal's limit on
 * one payload (`limit.blobSize.error`, 2 MiB by default, the dev server's too), so every result
 * Temporal takes as the attempt's is shown whole. Everything after it takes at least that: a push
 * goes out in parts past MAX_PUSH_BYTES (8 MiB) under the edge's 32 MiB signed body cap, the
 * host's journal holds a row of any size (MAX_BYTES_IN_FLIGHT lets one through alone), and the
 * run's log keeps an entry of any size in pieces (event-parts.ts); the edge's D1 row holds up to
 * 768 KiB (MAX_ROW_OUTPUT_BYTES) and its detail reads larger ones from the log. Past it the event
 * says the outputs were left out (`outputsOmitted`, `outputsSize`) rather than carrying a stand-in
 * object a step could have returned itself.
 */
export const MAX_STEP_OUTPUT_BYTES = 2 * 1024 * 1024;

/** What a completed attempt's step event says of its result. */
function outputsOf(result: unknown): Pick<RunEventData<"step">, "outputs" | "outputsOmitted" | "outputsSize"> {
  if (result === undefined) return { outputs: null };
  const json = JSON.stringify(result);
  if (json === undefined) return { outputs: null };
  const size = Buffer.byteLength(json);
  return size <= MAX_STEP_OUTPUT_BYTES ? { outputs: result } : { outputsOmitted: true, outputsSize: size };
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
      await this.awhile(publisher.step("completed", outputsOf(result)));
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
