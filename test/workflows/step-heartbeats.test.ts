/**
 * Steps that wait on the outside world (a model, a web page) heartbeat while they wait, and their
 * workflows give them a heartbeat timeout: an attempt whose host died mid-call is retried as soon
 * as its heartbeats stop, not when its 5-minute startToCloseTimeout runs out.
 *
 * A host killed mid-call is played by an attempt that hangs without heartbeating (as a dead
 * process's would), on the workflows' real code with mocked activities. And the timeout leaves
 * the worker's heartbeats as frequent as before (host/worker.ts, HEARTBEAT_THROTTLE_OPTIONS), as
 * they are how a stopped run's model call learns it must stop.
 */
import { randomUUID } from "node:crypto";
import { Context } from "@temporalio/activity";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { HEARTBEAT_THROTTLE_OPTIONS } from "../../host/worker.ts";
import type { RunPromptInput } from "../../host/workflows/prompt.ts";
import { until } from "../support/until.ts";
import { createWorkflowTestEnvironment, type WorkflowTestEnvironment } from "./environment.ts";

let t: WorkflowTestEnvironment;

beforeAll(async () => {
  t = await createWorkflowTestEnvironment();
});

afterAll(async () => {
  await t?.teardown();
});

/** Well past the heartbeat timeout (30 s) and its retry's backoff, far below startToCloseTimeout (5 min). */
const LOST_ATTEMPT_TEST_TIMEOUT_MS = 120_000;

describe("a step whose host dies mid-call", () => {
  it(
    "is retried once its heartbeats stop (company_research's askModel, run_prompt's answerPrompt)",
    async () => {
      const queue = `heartbeats-${randomUUID()}`;
      const attempts: Record<string, number[]> = {};
      let releaseHungAttempts = () => {};
      const hungAttemptsReleased = new Promise<void>((resolve) => {
        releaseHungAttempts = resolve;
      });
      /** The first step of each run: its first attempt never answers nor heartbeats (its host is gone). */
      const lost = new Set(["anthropic/claude-3-5-sonnet", "answerPrompt"]);
      const firstAttemptLost = async <T>(key: string, answer: () => T): Promise<T> => {
        const { attempt } = Context.current().info;
        attempts[key] = [...(attempts[key] ?? []), attempt];
        if (lost.has(key) && attempt === 1) {
          await hungAttemptsReleased;
          throw new Error("the attempt's host is gone");
        }
        return answer();
      };
      const worker = await t.worker(queue, {
        askModel: (input) => firstAttemptLost(input.modelId, () => ({ text: `answer of ${input.modelId}` })),
        answerPrompt: () => firstAttemptLost("answerPrompt", () => ({ text: "prompt answer", citations: [] })),
      });
      await worker.runUntil(async () => {
        try {
          const research = t.env.client.workflow.execute("company_research", {
            taskQueue: queue,
            workflowId: `research-${randomUUID()}`,
            args: [{ domain: "example.com" }],
          });
          const prompt = t.env.client.workflow.execute("run_prompt", {
            taskQueue: queue,
            workflowId: `prompt-${randomUUID()}`,
            args: [
              {
                template: "Say hi to {{name}}",
                variables: { name: "Ada" },
                model: "openai/gpt-4o-mini",
                webSearch: false,
                maxOutputTokens: 100,
              },
            ] satisfies [RunPromptInput],
          });
          const [researched, answered] = await Promise.all([research, prompt]);
          expect(researched).toMatchObject({
            domain: "example.com",
            profile: "answer of anthropic/claude-3-5-sonnet",
            brief: "answer of openai/gpt-4o",
          });
          expect(answered).toEqual({ text: "prompt answer", citations: [] });
        } finally {
          releaseHungAttempts();
        }
      });
      // Each lost attempt was retried once; the research's later steps ran once each.
      expect(attempts).toEqual({
        "anthropic/claude-3-5-sonnet": [1, 2],
        answerPrompt: [1, 2],
        "openai/gpt-4o-mini": [1],
        "openai/gpt-4o": [1],
      });
    },
    LOST_ATTEMPT_TEST_TIMEOUT_MS,
  );
});

describe("a step of a stopped run", () => {
  it(
    "a stopped run's model step still hears of it within seconds: the heartbeat timeout does not slow the worker's heartbeats to 0.8 of it (24 s)",
    async () => {
      const queue = `heartbeats-cancel-${randomUUID()}`;
      let heartbeating = false;
      let cancelled = false;
      const worker = await t.worker(
        queue,
        {
          // As a model call: heartbeats every second while it waits, until it is told to stop.
          answerPrompt: async () => {
            const activity = Context.current();
            const beats = setInterval(() => activity.heartbeat(), 1_000);
            activity.heartbeat();
            heartbeating = true;
            try {
              await new Promise((_, reject) => activity.cancellationSignal.addEventListener("abort", () => reject(new Error("stopped"))));
            } finally {
              cancelled = activity.cancellationSignal.aborted;
              clearInterval(beats);
            }
            return { text: "never", citations: [] };
          },
        },
        HEARTBEAT_THROTTLE_OPTIONS,
      );
      await worker.runUntil(async () => {
        const handle = await t.env.client.workflow.start("run_prompt", {
          taskQueue: queue,
          workflowId: `prompt-cancel-${randomUUID()}`,
          args: [
            {
              template: "Go on",
              variables: {},
              model: "openai/gpt-4o-mini",
              webSearch: false,
              maxOutputTokens: 100,
            } satisfies RunPromptInput,
          ],
        });
        expect(await until(() => heartbeating, 20_000)).toBe(true);
        // Past the first heartbeat, which the worker sends at once: the next ones are throttled.
        await new Promise((r) => setTimeout(r, 2_000));
        await handle.cancel();
        // Within a few throttle intervals (3 s each), far below the 24 s it would take at 0.8 of 30 s.
        expect(await until(() => cancelled, 12_000)).toBe(true);
      });
    },
    LOST_ATTEMPT_TEST_TIMEOUT_MS,
  );
});
