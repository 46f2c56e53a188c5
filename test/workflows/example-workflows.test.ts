/**
 * The example workflows' own logic (host/workflows/), on Temporal's TestWorkflowEnvironment with
 * mocked activities: `approval`'s cleanup when it is stopped, its first approval winning over later
 * signals and updates, its bad signal payloads ignored; `flaky_step`'s retries, `two_steps`' durable
 * pause. No edge, no host: a workflow change is checked here in seconds. The same workflows
 * run end to end against the whole stack in test/e2e.
 */
import { randomUUID } from "node:crypto";
import { Context } from "@temporalio/activity";
import { CancelledFailure, WorkflowFailedError, WorkflowUpdateFailedError } from "@temporalio/client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import * as real from "../../host/activities/examples.ts";
import { renderTemplate } from "../../src/shared/prompt-template.ts";
import { createWorkflowTestEnvironment, until, type WorkflowTestEnvironment } from "./environment.ts";

let t: WorkflowTestEnvironment;

beforeAll(async () => {
  t = await createWorkflowTestEnvironment();
});

afterAll(async () => {
  await t?.teardown();
});

const taskQueue = (name: string) => `${name}-${randomUUID()}`;

interface ApprovalProgress {
  stage: string;
  priority: number;
  approvedBy: string | null;
}

describe("approval", () => {
  it("stopped while it waits: the cleanup step runs, retried if it fails, and the run ends cancelled", async () => {
    const queue = taskQueue("approval");
    const cleanups: string[] = [];
    let recorded = 0;
    const worker = await t.worker(queue, {
      async cleanupApproval(request) {
        cleanups.push(request);
        if (cleanups.length === 1) throw new Error("the first cleanup attempt fails");
        return { released: request };
      },
      async recordApproval(request, approvedBy, priority) {
        recorded++;
        return { request, approvedBy, priority };
      },
    });
    await worker.runUntil(async () => {
      const handle = await t.env.client.workflow.start("approval", {
        taskQueue: queue,
        workflowId: `approval-${randomUUID()}`,
        args: [{ request: "deploy v2" }],
      });
      await until(async () => (await handle.query<ApprovalProgress>("progress")).stage === "waiting_for_approval", "approval waiting");
      await handle.cancel();
      const err = await handle.result().then(
        () => null,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(WorkflowFailedError);
      expect((err as WorkflowFailedError).cause).toBeInstanceOf(CancelledFailure);
      expect((await handle.describe()).status.name).toBe("CANCELLED");
    });
    // Inside a non-cancellable scope: the cancellation does not stop the cleanup's retries.
    expect(cleanups).toEqual(["deploy v2", "deploy v2"]);
    expect(recorded).toBe(0);
  });

  it("approved: records the approval once with the priority the update set; an out-of-range priority is refused", async () => {
    const queue = taskQueue("approval");
    const recorded: unknown[][] = [];
    let cleanups = 0;
    const worker = await t.worker(queue, {
      async cleanupApproval(request) {
        cleanups++;
        return { released: request };
      },
      async recordApproval(request, approvedBy, priority) {
        recorded.push([request, approvedBy, priority]);
        return { request, approvedBy, priority };
      },
    });
    await worker.runUntil(async () => {
      const handle = await t.env.client.workflow.start("approval", {
        taskQueue: queue,
        workflowId: `approval-${randomUUID()}`,
        args: [{ request: "hire" }],
      });
      const refused = await handle.executeUpdate("setPriority", { args: [{ priority: 9 }] }).then(
        () => null,
        (e: unknown) => e,
      );
      expect(refused).toBeInstanceOf(WorkflowUpdateFailedError);
      expect(String((refused as WorkflowUpdateFailedError).cause?.message)).toContain("priority must be an integer from 1 to 5");
      expect(await handle.query<ApprovalProgress>("progress")).toEqual({ stage: "waiting_for_approval", priority: 3, approvedBy: null });

      expect(await handle.executeUpdate("setPriority", { args: [{ priority: 5 }] })).toEqual({ priority: 5 });
      await handle.signal("approve", { approvedBy: "" }); // ignored: no approver
      await handle.signal("approve", { approvedBy: "ada" });
      expect(await handle.result()).toEqual({ request: "hire", approvedBy: "ada", priority: 5 });
    });
    expect(recorded).toEqual([["hire", "ada", 5]]);
    expect(cleanups).toBe(0);
  });

  it("approved twice (approve, then resume as /feedback sends it, in one workflow task): the first approver is the one recorded", async () => {
    const queue = taskQueue("approval");
    const recorded: unknown[][] = [];
    const workflowId = `approval-${randomUUID()}`;
    // Both signals reach the run before any worker does: its first workflow task carries both.
    const handle = await t.env.client.workflow.start("approval", { taskQueue: queue, workflowId, args: [{ request: "ship" }] });
    await handle.signal("approve", { approvedBy: "ada" });
    await handle.signal("resume", { approvedBy: "bob" });
    const worker = await t.worker(queue, {
      async recordApproval(request, approvedBy, priority) {
        recorded.push([request, approvedBy, priority]);
        return { request, approvedBy, priority };
      },
    });
    await worker.runUntil(async () => {
      expect(await handle.result()).toEqual({ request: "ship", approvedBy: "ada", priority: 3 });
      expect(await handle.query<ApprovalProgress>("progress")).toEqual({ stage: "approved", priority: 3, approvedBy: "ada" });
    });
    expect(recorded).toEqual([["ship", "ada", 3]]);
  });

  it("once approved (its approval being recorded), a later approval and a setPriority change nothing: the update is refused, progress shows what is recorded", async () => {
    const queue = taskQueue("approval");
    let release!: () => void;
    const released = new Promise<void>((r) => (release = r));
    const recorded: unknown[][] = [];
    const worker = await t.worker(queue, {
      async recordApproval(request, approvedBy, priority) {
        recorded.push([request, approvedBy, priority]);
        await released;
        return { request, approvedBy, priority };
      },
    });
    await worker.runUntil(async () => {
      try {
        const handle = await t.env.client.workflow.start("approval", {
          taskQueue: queue,
          workflowId: `approval-${randomUUID()}`,
          args: [{ request: "merge" }],
        });
        await handle.signal("approve", { approvedBy: "ada" });
        await until(async () => recorded.length === 1, "the approval being recorded");
        await handle.signal("approve", { approvedBy: "mallory" });
        const refused = await handle.executeUpdate("setPriority", { args: [{ priority: 1 }] }).then(
          () => null,
          (e: unknown) => e,
        );
        expect(refused).toBeInstanceOf(WorkflowUpdateFailedError);
        expect(String((refused as WorkflowUpdateFailedError).cause?.message)).toContain("already approved");
        expect(await handle.query<ApprovalProgress>("progress")).toEqual({ stage: "approved", priority: 3, approvedBy: "ada" });
        release();
        expect(await handle.result()).toEqual({ request: "merge", approvedBy: "ada", priority: 3 });
      } finally {
        release(); // the worker's shutdown waits for the step
      }
    });
    expect(recorded).toEqual([["merge", "ada", 3]]);
  });

  it("signal payloads that are no approval are ignored, and the run goes on waiting: wrong types, __proto__, an approvedBy too long to record", async () => {
    const queue = taskQueue("approval");
    const recorded: unknown[][] = [];
    const worker = await t.worker(queue, {
      async recordApproval(request, approvedBy, priority) {
        recorded.push([request.length, approvedBy, priority]);
        return { request, approvedBy, priority };
      },
    });
    // What a failure prints of a progress: an approver of 2 MiB as its length.
    const shown = (p: ApprovalProgress) => ({
      ...p,
      approvedBy: (p.approvedBy?.length ?? 0) > 100 ? `${p.approvedBy!.length} chars` : p.approvedBy,
    });
    // The longest request the catalog takes: with it, an approvedBy just under Temporal's 2 MiB
    // payload limit makes the step's input (request and approver) go past it, and the run's
    // workflow tasks fail (it would hang).
    const request = "r".repeat(500);
    await worker.runUntil(async () => {
      const handle = await t.env.client.workflow.start("approval", {
        taskQueue: queue,
        workflowId: `approval-${randomUUID()}`,
        args: [{ request }],
        workflowExecutionTimeout: "30s",
      });
      for (const payload of [
        42,
        "ada",
        null,
        [],
        { approvedBy: 7 },
        { approvedBy: ["ada"] },
        JSON.parse('{"__proto__":{"approvedBy":"eve"}}'),
      ])
        await handle.signal("approve", payload);
      await handle.signal("resume", { approvedBy: "x".repeat(2 * 1024 * 1024 - 256) });
      const signalsHandled = async () =>
        (await handle.fetchHistory()).events!.filter((e) => e.workflowExecutionSignaledEventAttributes).length === 8 &&
        !(await handle.fetchHistory()).events!.at(-1)?.workflowTaskScheduledEventAttributes;
      await until(signalsHandled, "the signals handled");
      expect(shown(await handle.query<ApprovalProgress>("progress"))).toEqual({
        stage: "waiting_for_approval",
        priority: 3,
        approvedBy: null,
      });
      await handle.signal("approve", { approvedBy: "ada" });
      expect(await handle.result()).toEqual({ request, approvedBy: "ada", priority: 3 });
    });
    expect(recorded).toEqual([[500, "ada", 3]]);
  });
});

describe("flaky_step", () => {
  it("retries its step until it succeeds: attempts 1, 2, 3 of one scheduled activity", async () => {
    const queue = taskQueue("flaky");
    const attempts: number[] = [];
    const worker = await t.worker(queue, {
      async unreliableStep(failures) {
        attempts.push(Context.current().info.attempt);
        return real.unreliableStep(failures);
      },
    });
    const workflowId = `flaky_step-${randomUUID()}`;
    const result = await worker.runUntil(
      t.env.client.workflow.execute("flaky_step", { taskQueue: queue, workflowId, args: [{ failures: 2 }] }),
    );
    expect(result).toEqual({ attempts: 3 });
    expect(attempts).toEqual([1, 2, 3]);
    // Retries are the server's: one ActivityTaskScheduled, started for the last time at attempt 3.
    const { events } = await t.env.client.workflow.getHandle(workflowId).fetchHistory();
    expect(events!.filter((e) => e.activityTaskScheduledEventAttributes)).toHaveLength(1);
    expect(events!.find((e) => e.activityTaskStartedEventAttributes)?.activityTaskStartedEventAttributes?.attempt).toBe(3);
    expect(events!.find((e) => e.activityTaskStartedEventAttributes)?.activityTaskStartedEventAttributes?.lastFailure?.message).toBe(
      "attempt 2 failed on purpose (flaky_step fails 2 time(s))",
    );
  });

  it("defaults to one failure, and a step that does not fail runs once", async () => {
    const queue = taskQueue("flaky");
    const attempts: number[] = [];
    const worker = await t.worker(queue, {
      async unreliableStep(failures) {
        attempts.push(Context.current().info.attempt);
        return real.unreliableStep(failures);
      },
    });
    await worker.runUntil(async () => {
      expect(
        await t.env.client.workflow.execute("flaky_step", {
          taskQueue: queue,
          workflowId: `flaky_step-${randomUUID()}`,
          args: [{ failures: 0 }],
        }),
      ).toEqual({
        attempts: 1,
      });
      expect(attempts).toEqual([1]);
      expect(
        await t.env.client.workflow.execute("flaky_step", { taskQueue: queue, workflowId: `flaky_step-${randomUUID()}`, args: [{}] }),
      ).toEqual({ attempts: 2 });
    });
    expect(attempts).toEqual([1, 1, 2]);
  });
});

describe("two_steps", () => {
  const counting = () => {
    const calls = { countWords: 0, shout: 0 };
    const mocks = {
      async countWords(text: string) {
        calls.countWords++;
        return real.countWords(text);
      },
      async shout(text: string) {
        calls.shout++;
        return real.shout(text);
      },
    };
    return { calls, mocks };
  };

  it("pauses durably: a worker stopped during the pause, and another one finishes the run without redoing the first step", async () => {
    const queue = taskQueue("two_steps");
    const { calls, mocks } = counting();
    const workflowId = `two_steps-${randomUUID()}`;
    const handle = await t.env.client.workflow.start("two_steps", {
      taskQueue: queue,
      workflowId,
      args: [{ text: "a b c", pauseMs: 3000 }],
    });
    const timerStarted = async () => (await handle.fetchHistory()).events!.some((e) => e.timerStartedEventAttributes);

    // The first worker runs the first step and starts the timer, then goes away mid-pause.
    const first = await t.worker(queue, mocks, { stickyQueueScheduleToStartTimeout: "1s" });
    const running = first.run();
    await until(timerStarted, "the pause's timer");
    first.shutdown();
    await running;
    expect(calls).toEqual({ countWords: 1, shout: 0 });
    expect((await handle.describe()).status.name).toBe("RUNNING");
    const timer = (await handle.fetchHistory()).events!.find((e) => e.timerStartedEventAttributes)!.timerStartedEventAttributes!;
    expect(Number(timer.startToFireTimeout?.seconds)).toBe(3);

    // A new worker picks the run up from its history (a replay) once the timer fires.
    const second = await t.worker(queue, mocks);
    expect(await second.runUntil(handle.result())).toEqual({ words: 3, shouted: "A B C" });
    expect(calls).toEqual({ countWords: 1, shout: 1 });
  });

  it("without pauseMs: the two steps in sequence, no timer", async () => {
    const queue = taskQueue("two_steps");
    const { calls, mocks } = counting();
    const worker = await t.worker(queue, mocks);
    const workflowId = `two_steps-${randomUUID()}`;
    expect(
      await worker.runUntil(t.env.client.workflow.execute("two_steps", { taskQueue: queue, workflowId, args: [{ text: " one  two " }] })),
    ).toEqual({
      words: 2,
      shouted: " ONE  TWO ",
    });
    expect(calls).toEqual({ countWords: 1, shout: 1 });
    const { events } = await t.env.client.workflow.getHandle(workflowId).fetchHistory();
    expect(events!.some((e) => e.timerStartedEventAttributes)).toBe(false);
  });
});

describe("run_prompt", () => {
  it("a prompt that renders past Temporal's 2 MiB payload limit still runs: the step renders it, its input is the run's own", async () => {
    const queue = taskQueue("run_prompt");
    const rendered: number[] = [];
    const worker = await t.worker(queue, {
      answerPrompt: async (input) => {
        const prompt = "prompt" in input ? input.prompt : renderTemplate(input.template, input.variables);
        rendered.push(prompt.length);
        return { text: "done", citations: [] };
      },
    });
    const value = "x".repeat(1024 * 1024);
    const input = { template: "{{v}} {{v}} {{v}}", variables: { v: value }, model: "local/writer", webSearch: false, maxOutputTokens: 10 };
    const result = await worker.runUntil(
      t.env.client.workflow.execute("run_prompt", {
        taskQueue: queue,
        workflowId: `run_prompt-${randomUUID()}`,
        args: [input],
        // As scheduled before, the step's input (3 MiB) failed every workflow task: the run would hang, not end.
        workflowExecutionTimeout: "30s",
      }),
    );
    expect(result).toEqual({ text: "done", citations: [] });
    expect(rendered).toEqual([3 * value.length + 2]);
  }, 60_000);
});
