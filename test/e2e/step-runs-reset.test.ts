/**
 * Step rows across a reset against the real stack (Temporal, wrangler dev, the host): the reset's
 * run re-runs `shout` under the same activity id and attempt as the replaced run did, and both
 * runs' attempts stay in D1 and in the Workflow Runs API's detail, each naming its Temporal run.
 * test/edge/step-runs-reset.test.ts covers the orderings the real stack rarely produces.
 */
import { beforeAll, describe, expect, it } from "vitest";
import { testJwt } from "../support/stack.ts";
import { admin, api, baseUrl, eventually, postJson, queryD1 } from "./helpers.ts";

let key = "";
let token = "";

beforeAll(async () => {
  const org = await admin<{ id: string }>("POST", "/admin/v1/organizations", { name: "step runs reset e2e" });
  key = (await admin<{ key: string }>("POST", `/admin/v1/organizations/${org.id}/api-keys`, { name: "e2e" })).key;
  token = await testJwt(org.id);
});

const completedRun = (workflowId: string, runId: string) =>
  eventually(async () => {
    const s = (await (await api(`/workflow/${workflowId}/status`, { key })).json()) as { runId: string; status: string };
    return s.runId === runId && s.status === "completed";
  }, 60_000);

interface ActivityRun {
  id: string;
  temporalRunId: string | null;
  stepName: string;
  stepId: string;
  attempt: number;
  status: string;
  outputs: unknown;
}

describe("step rows across a reset (real stack)", () => {
  it("a reset of a finished two_steps after countWords: the new run's shout gets its own row; the old run's countWords and shout stay", async () => {
    const start = await postJson("/workflow/start", { workflowName: "two_steps", input: { text: "keep my steps" } }, { key });
    expect(start.status).toBe(200);
    const { workflowId, runId: first } = (await start.json()) as { workflowId: string; runId: string };
    await completedRun(workflowId, first);

    const res = await postJson(`/workflow/${workflowId}/runs/${first}/reset`, { stepName: "countWords" }, { key });
    expect(res.status).toBe(200);
    const { runId: second } = (await res.json()) as { runId: string };
    await completedRun(workflowId, second);

    const [{ id: runUuid }] = queryD1<{ id: string }>(`SELECT id FROM runs WHERE temporal_workflow_id = '${workflowId}'`) as [
      { id: string },
    ];
    // Step rows reach D1 through the host's pushes: wait until the new run's shout has ended there too.
    const detail = await eventually(async () => {
      const r = await fetch(new URL(`/api/v1/workflow-runs/${runUuid}`, baseUrl()), { headers: { authorization: `Bearer ${token}` } });
      const body = (await r.json()) as { temporalRunId: string; activityRuns: ActivityRun[] };
      return body.activityRuns.some((a) => a.temporalRunId === second && a.status === "completed") && body;
    });
    expect(detail.temporalRunId).toBe(second);
    expect(detail.activityRuns.map((a) => [a.temporalRunId, a.stepName, a.attempt, a.status, a.outputs])).toEqual([
      [first, "countWords", 1, "completed", { text: "keep my steps", words: 3 }],
      [first, "shout", 1, "completed", { value: "KEEP MY STEPS" }],
      [second, "shout", 1, "completed", { value: "KEEP MY STEPS" }],
    ]);
    // Temporal numbered shout the same in both runs; the rows (and their ids) are still two.
    const shouts = detail.activityRuns.filter((a) => a.stepName === "shout");
    expect(shouts[0]!.stepId).toBe(shouts[1]!.stepId);
    expect(shouts[0]!.id).not.toBe(shouts[1]!.id);
    expect(
      queryD1<{ temporal_run_id: string; step_name: string }>(
        `SELECT s.temporal_run_id, s.step_name FROM step_runs s JOIN runs r ON r.id = s.run_id WHERE r.temporal_workflow_id = '${workflowId}' ORDER BY s.created_at`,
      ),
    ).toEqual([
      { temporal_run_id: first, step_name: "countWords" },
      { temporal_run_id: first, step_name: "shout" },
      { temporal_run_id: second, step_name: "shout" },
    ]);
  });
});
