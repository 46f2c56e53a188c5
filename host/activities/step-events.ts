/**
 * A Temporal activity interceptor that publishes every attempt's start and end as `step` run
 * events, for every activity, so no activity has to remember to; and runs each attempt with its
 * run's environment overrides (host/run-envs.ts).
 */
import type { ActivityExecuteInput, ActivityInboundCallsInterceptor, Next } from "@temporalio/worker";
import { Context } from "@temporalio/activity";
import { StepPublisher, activityRuntime, withEnvOverrides } from "./runtime.ts";

/** Step outputs larger than this (as JSON) are not copied into step events; the result route has them. */
const MAX_STEP_OUTPUT_CHARS = 16_000;

function outputsOf(result: unknown): unknown {
  if (result === undefined) return null;
  const json = JSON.stringify(result);
  return json !== undefined && json.length <= MAX_STEP_OUTPUT_CHARS ? result : { truncated: true, size: json?.length ?? 0 };
}

export class StepEventsInterceptor implements ActivityInboundCallsInterceptor {
  async execute(input: ActivityExecuteInput, next: Next<ActivityInboundCallsInterceptor, "execute">): Promise<unknown> {
    const publisher = new StepPublisher();
    // Not awaited: the step does not wait for the edge to start. The publisher sends in order, and
    // the end of the attempt (awaited below) is delivered after its start.
    void publisher.step("started");
    try {
      const workflowId = Context.current().info.workflowExecution?.workflowId;
      const envs = workflowId ? ((await activityRuntime().envs?.forWorkflow(workflowId)) ?? {}) : {};
      const result = await withEnvOverrides(envs, () => next(input));
      await publisher.step("completed", { outputs: outputsOf(result) });
      return result;
    } catch (err) {
      await publisher.step("failed", { error: err instanceof Error ? err.message : String(err) });
      throw err;
    }
  }
}

export const stepEventsInterceptor = (_ctx: Context) => ({ inbound: new StepEventsInterceptor() });
