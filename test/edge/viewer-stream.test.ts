/** GET /runs/:workflowId/events (the run viewer's stream) and the viewer page's headers, driven by pushed events (no host). */
import { beforeAll, describe, expect, it } from "vitest";
import { mintStreamToken } from "../../src/stream-tokens.ts";
import { call, seedCatalog, seedOrganization } from "./helpers.ts";
import {
  closeEvent,
  createRunningRun,
  expectExactResume,
  finishedEvent,
  historyEvent,
  httpAttributeEvent,
  push,
  thinkingEvent,
} from "./stream-helpers.ts";

const STREAM_SECRET = "edge-test-stream-token-secret";

const stepEvent = (runId: string, state: "started" | "completed") => ({
  sourceKey: `step:${runId}:5:1:${state}`,
  type: "step",
  at: new Date().toISOString(),
  data: { runId, activityId: "5", stepName: "askModel", attempt: 1, state },
});

describe("run viewer stream: resume (security: exact replay, no duplicates)", () => {
  let org: Awaited<ReturnType<typeof seedOrganization>>;
  beforeAll(async () => {
    org = await seedOrganization();
    await seedCatalog();
  });

  it("every run, step, thinking and attribute frame has an id, and Last-Event-ID resumes exactly after it", async () => {
    const { workflowId, runId } = await createRunningRun(org.organizationId);
    await push(workflowId, [
      historyEvent(runId, 1),
      stepEvent(runId, "started"),
      thinkingEvent(runId, 1, "Reading "),
      httpAttributeEvent(runId, 1),
    ]);
    await push(workflowId, [
      thinkingEvent(runId, 2, "done reading."),
      stepEvent(runId, "completed"),
      closeEvent(runId, 2),
      finishedEvent(runId),
    ]);
    const { token } = await mintStreamToken(STREAM_SECRET, { organizationId: org.organizationId, workflowId });
    const open = (lastEventId?: string) =>
      call(`/runs/${workflowId}/events?token=${token}`, { headers: lastEventId ? { "last-event-id": lastEventId } : {} });
    const { frames, resumes } = await expectExactResume(open, ["done"]);
    expect(frames.filter((f) => f.id).map((f) => f.event)).toEqual(["run", "step", "thinking", "attribute", "thinking", "step", "run"]);
    expect(resumes).toBe(7);
  });
});
