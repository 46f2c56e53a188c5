/**
 * The blocking starts (POST /workflow/run, POST /api/v1/workflow-runs/execute) wait for the
 * workflow's end, not its first run's: a run that continues as new has not ended, and the wait
 * goes on with the next run, as Temporal's own result() follows runs. The host is scripted in this
 * isolate: its first run hands over to a second, which completes.
 */
import { env } from "cloudflare:workers";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runStream } from "../../src/run-stream-client.ts";
import { HOST_PATHS } from "../../src/shared/host-api.ts";
import { call, postJson, scriptedStart, scriptHost, seedCatalog, seedOrganization } from "./helpers.ts";

/** Each workflow's second run, by workflow id; and the result calls the host got, as `<runId or "-">`. */
const nextRuns = new Map<string, string>();
const resultCalls: string[] = [];
let restoreHost: () => void;

beforeAll(async () => {
  await seedCatalog();
  restoreHost = scriptHost(async (request, path) => {
    if (path === HOST_PATHS.start) {
      const started = await scriptedStart(request);
      nextRuns.set(started.workflowId, crypto.randomUUID());
      return Response.json(started);
    }
    if (path.endsWith("/result")) {
      const workflowId = decodeURIComponent(path.split("/").at(-2)!);
      const asked = new URL(request.url).searchParams.get("runId");
      resultCalls.push(asked ?? "-");
      const second = nextRuns.get(workflowId)!;
      const closeTime = new Date().toISOString();
      if (asked !== second) {
        // The first run (named, or the latest when it still was): it continued as new.
        const first = asked ?? crypto.randomUUID();
        return Response.json({
          workflowId,
          runId: first,
          status: "continued_as_new",
          output: null,
          error: null,
          closeTime,
          newRunId: second,
        });
      }
      return Response.json({ workflowId, runId: second, status: "completed", output: { greeting: "Hello, Ada!" }, error: null, closeTime });
    }
    throw new TypeError("connection refused");
  });
});
afterAll(() => restoreHost());

const row = (workflowId: string) =>
  env.DB.prepare("SELECT status, temporal_run_id FROM runs WHERE temporal_workflow_id = ?").bind(workflowId).first();

/** The log's run.finished entries of the workflow, as [runId, status, newRunId]. */
async function ends(workflowId: string) {
  const events = await runStream(env, workflowId).events();
  return events
    .filter((e) => e.type === "run.finished")
    .map((e) => {
      const data = e.data as { runId: string; status: string; newRunId?: string | null };
      return [data.runId, data.status, data.newRunId ?? null];
    });
}

describe("a blocking start of a run that continues as new", () => {
  it("POST /workflow/run answers the second run's output (200 completed), and the row and the log follow the hand-over", async () => {
    const org = await seedOrganization();
    const res = await postJson("/workflow/run", { workflowName: "hello", input: { name: "Ada" }, timeout: 20_000 }, org.key);
    expect(res.status).toBe(200);
    const body = (await res.json()) as { workflowId: string; runId: string; status: string; output: unknown };
    const second = nextRuns.get(body.workflowId)!;
    expect(body).toMatchObject({ status: "completed", runId: second, output: { greeting: "Hello, Ada!" } });
    expect(await row(body.workflowId)).toEqual({ status: "completed", temporal_run_id: second });
    const [first] = (await ends(body.workflowId))[0] as [string];
    expect(await ends(body.workflowId)).toEqual([
      [first, "continued_as_new", second],
      [second, "completed", null],
    ]);
    // The wait asked the host about the first run, then about the one it handed over to.
    expect(resultCalls.slice(-2)).toEqual([first, second]);
  });

  it("POST /api/v1/workflow-runs/execute answers 200 success with the completed run, not 202 at the hand-over", async () => {
    const org = await seedOrganization();
    const hello = await env.DB.prepare("SELECT id FROM workflows WHERE name = 'hello' AND organization_id IS NULL").first<{ id: string }>();
    const res = await call("/api/v1/workflow-runs/execute", {
      method: "POST",
      // A trusted internal caller (INTERNAL_SERVICE_SECRET, test/edge/vitest.config.ts) acting for the organization.
      headers: {
        authorization: "Bearer edge-test-internal-secret-of-32-characters",
        "x-organization-id": org.organizationId,
        "content-type": "application/json",
      },
      body: JSON.stringify({ workflowId: hello!.id, inputs: { name: "Ada" } }),
    });
    expect(res.status).toBe(200);
    const body = (await res.json()) as { success: boolean; workflowRun: { id: string; status: string; outputs: unknown } };
    expect(body).toMatchObject({ success: true, workflowRun: { status: "completed", outputs: { greeting: "Hello, Ada!" } } });
    const stored = await env.DB.prepare("SELECT temporal_workflow_id AS workflowId FROM runs WHERE id = ?")
      .bind(body.workflowRun.id)
      .first<{ workflowId: string }>();
    expect(await row(stored!.workflowId)).toEqual({ status: "completed", temporal_run_id: nextRuns.get(stored!.workflowId) });
  });
});
