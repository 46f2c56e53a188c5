import { evictDurableObject, runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { beforeAll, describe, expect, it } from "vitest";
import { runStream } from "../../src/run-stream-client.ts";
import { collectHistoryStream } from "../support/sse.ts";
import { call, seedCatalog, seedOrganization } from "./helpers.ts";
import { closeEvent, createRunningRun, finishedEvent, historyEvent, push, range } from "./stream-helpers.ts";

const subscriberCount = (workflowId: string) =>
  runInDurableObject(runStream(env, workflowId), (_instance, state) => state.getWebSockets().length);

describe("stream lifecycle", () => {
  let org: Awaited<ReturnType<typeof seedOrganization>>;
  const open = (workflowId: string) => call(`/workflow/${workflowId}/history/stream`, { headers: { authorization: `Bearer ${org.key}` } });

  beforeAll(async () => {
    org = await seedOrganization();
    await seedCatalog();
  });

  it("sends Output's keepalive comments while the run is quiet", async () => {
    const { workflowId, runId } = await createRunningRun(org.organizationId);
    await push(workflowId, [historyEvent(runId, 1)]);
    const res = await open(workflowId);
    const reader = res.body!.getReader();
    let text = "";
    const deadline = Date.now() + 5_000;
    while (!text.includes(": keepalive") && Date.now() < deadline) {
      text += new TextDecoder().decode((await reader.read()).value);
    }
    await reader.cancel();
    expect(text).toContain(": keepalive\n\n"); // Output's comment text
  });

  it("notices a subscriber that leaves and drops its socket", async () => {
    const { workflowId, runId } = await createRunningRun(org.organizationId);
    await push(workflowId, [historyEvent(runId, 1)]);
    const streams = await Promise.all(range(1, 3).map(() => open(workflowId)));
    expect(await subscriberCount(workflowId)).toBe(3);
    await streams[0]!.body!.cancel();
    await expect.poll(() => subscriberCount(workflowId), { timeout: 5_000 }).toBe(2);
    await Promise.all(streams.slice(1).map((s) => s.body!.cancel()));
    await expect.poll(() => subscriberCount(workflowId), { timeout: 5_000 }).toBe(0);
  });

  it("hibernates with subscribers connected and wakes up to deliver the next events", async () => {
    const { workflowId, runId } = await createRunningRun(org.organizationId);
    await push(
      workflowId,
      range(1, 3).map((n) => historyEvent(runId, n)),
    );
    const streams = await Promise.all(range(1, 5).map(() => open(workflowId)));
    const collected = Promise.all(streams.map((s) => collectHistoryStream(s.body!)));
    await push(workflowId, [historyEvent(runId, 4)]);
    // Evict the idle object; its WebSockets hibernate instead of closing.
    await evictDurableObject(runStream(env, workflowId), { webSockets: "hibernate" });
    expect(await subscriberCount(workflowId)).toBe(5);
    await push(workflowId, [...range(5, 8).map((n) => historyEvent(runId, n)), closeEvent(runId, 9), finishedEvent(runId)]);
    for (const seen of await collected) {
      expect(seen.eventIds).toEqual(range(1, 9));
      expect(seen.workflow).toHaveLength(1);
      expect(seen.done).toHaveLength(1);
    }
  });
});
