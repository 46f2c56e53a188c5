/**
 * Example workflows. Workflow code runs in Temporal's deterministic sandbox: no I/O here, only
 * orchestration of activities. The exported function name is the workflow name clients use.
 */
import { ApplicationFailure, proxyActivities, sleep } from "@temporalio/workflow";
import type * as activities from "../activities/index.ts";

const steps = proxyActivities<typeof activities>({
  startToCloseTimeout: "1 minute",
  retry: { maximumAttempts: 5, initialInterval: "1 second" },
});

export async function hello(input: { name: string }): Promise<{ greeting: string }> {
  return { greeting: await steps.composeGreeting(input.name) };
}

export async function two_steps(input: { text: string; pauseMs?: number }): Promise<{ words: number; shouted: string }> {
  const counted = await steps.countWords(input.text);
  // A durable timer between the steps, so there is time to watch a run in progress.
  if (input.pauseMs) await sleep(input.pauseMs);
  const shouted = await steps.shout(counted.text);
  return { words: counted.words, shouted };
}

export const ALWAYS_FAILS_MESSAGE = "always_fails gave up on purpose after its first step";

export async function always_fails(input: { reason?: string }): Promise<never> {
  await steps.prepareDoomedWork(input.reason ?? "no reason given");
  throw ApplicationFailure.nonRetryable(ALWAYS_FAILS_MESSAGE, "AlwaysFails");
}

export async function flaky_step(input: { failures?: number }): Promise<{ attempts: number }> {
  return steps.unreliableStep(input.failures ?? 1);
}
