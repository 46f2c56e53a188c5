/**
 * `run_prompt`: the Temporal workflow behind every published prompt workflow (POST
 * /api/v1/run/{workflow_id}). It is not in the public catalog; the edge starts it with the
 * prompt workflow's definition and the caller's variables. One LLM step, retried by Temporal.
 */
import { proxyActivities } from "@temporalio/workflow";
import type * as activities from "../activities/index.ts";
import { OUTSIDE_CALL_HEARTBEAT_TIMEOUT } from "./step-timeouts.ts";

export interface RunPromptInput {
  template: string;
  variables: Record<string, string>;
  model: string;
  webSearch: boolean;
  maxOutputTokens: number;
}

export interface RunPromptOutput {
  text: string;
  citations: string[];
}

const steps = proxyActivities<typeof activities>({
  // The edge bounds the whole run (executionTimeoutMs); one attempt may use most of it.
  startToCloseTimeout: "5 minutes",
  heartbeatTimeout: OUTSIDE_CALL_HEARTBEAT_TIMEOUT,
  retry: { maximumAttempts: 3, initialInterval: "1 second" },
});

export async function run_prompt(input: RunPromptInput): Promise<RunPromptOutput> {
  // Rendered by the step: the rendered prompt can outgrow what Temporal takes as one payload (answerPrompt).
  const { template, variables } = input;
  return steps.answerPrompt({
    modelId: input.model,
    template,
    variables,
    webSearch: input.webSearch,
    maxOutputTokens: input.maxOutputTokens,
  });
}
