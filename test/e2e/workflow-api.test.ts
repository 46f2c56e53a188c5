import { Client, Connection } from "@temporalio/client";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { ALWAYS_FAILS_MESSAGE } from "../../host/workflows/examples.ts";
import { ALWAYS_FAILS_ERROR_DETAILS } from "../support/always-fails.ts";
import {
  api,
  eventually,
  newOrganization,
  type Organization,
  postJson,
  queryD1,
  type OutputErrorBody,
  type ResultPayload,
} from "./helpers.ts";

describe("Workflow API through the whole stack", () => {
  it("POST /workflow/run of hello returns a completed result with the greeting (the README's curl)", async () => {
    const res = await postJson("/workflow/run", { workflowName: "hello", input: { name: "Ada" } });
    expect(res.status).toBe(200);
    const body = (await res.json()) as ResultPayload;
    expect(body).toMatchObject({
      status: "completed",
      runStatus: "completed",
      input: { name: "Ada" },
      output: { greeting: "Hello, Ada!" },
      attributes: [],
      aggregations: { cost: { total: 0 }, tokens: { total: 0, input: 0, output: 0 }, httpRequests: { total: 0 } },
      error: null,
    });
    expect(body.workflowId).toMatch(/^hello-[0-9a-f-]{36}$/);
    expect(body.runId).toBeTruthy();
  });

  it("POST /workflow/run of a run terminated while it waits answers as Output's run does: status failed (runStatus terminated), so every CLI exits 1", async () => {
    const workflowId = `approval-${crypto.randomUUID()}`;
    const running = postJson("/workflow/run", { workflowName: "approval", input: { request: "never approved" }, workflowId });
    await eventually(async () => {
      const res = await api(`/workflow/${workflowId}/status`);
      return res.status === 200 && ((await res.json()) as { status: string }).status === "running";
    });
    expect((await api(`/workflow/${workflowId}/terminate`, { method: "POST" })).status).toBe(200);
    const res = await running;
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ workflowId, status: "failed", runStatus: "terminated" });
    // The result route answers the run's own status, as Output's does.
    expect(await (await api(`/workflow/${workflowId}/result`)).json()).toMatchObject({ status: "terminated" });
  });

  it("start, then status reaches completed, then the result carries the output", async () => {
    const start = await postJson("/workflow/start", { workflowName: "two_steps", input: { text: "durable work pays off" } });
    expect(start.status).toBe(200);
    const started = (await start.json()) as { workflowId: string; runId: string; status: string };
    expect(started).toMatchObject({ status: "running" });
    expect(started.workflowId).toMatch(/^two_steps-/);

    const status = await eventually(async () => {
      const s = (await (await api(`/workflow/${started.workflowId}/status`)).json()) as { status: string; runId: string };
      return s.status === "completed" && s;
    });
    expect(status.runId).toBe(started.runId);

    const result = (await (await api(`/workflow/${started.workflowId}/result`)).json()) as ResultPayload;
    expect(result).toMatchObject({
      workflowId: started.workflowId,
      runId: started.runId,
      status: "completed",
      output: { words: 4, shouted: "DURABLE WORK PAYS OFF" },
      error: null,
    });
  });

  it("always_fails ends failed with its error message, in run, status and result", async () => {
    const res = await postJson("/workflow/run", { workflowName: "always_fails", input: {} });
    expect(res.status).toBe(200);
    const body = (await res.json()) as ResultPayload;
    expect(body).toMatchObject({ status: "failed", output: null, error: ALWAYS_FAILS_MESSAGE });
    // Output's V1 errorDetails, as its API server builds them from Temporal's failure chain.
    expect((body as ResultPayload & { errorDetails: unknown }).errorDetails).toEqual(ALWAYS_FAILS_ERROR_DETAILS);
    const status = (await (await api(`/workflow/${body.workflowId}/status`)).json()) as { status: string };
    expect(status.status).toBe("failed");
    const result = (await (await api(`/workflow/${body.workflowId}/result`)).json()) as ResultPayload & { errorDetails: unknown };
    expect(result.error).toBe(ALWAYS_FAILS_MESSAGE);
    expect(result.errorDetails).toEqual(ALWAYS_FAILS_ERROR_DETAILS);
  });

  it("POST /workflow/run with a timeout that runs out answers 408 WorkflowExecutionTimedOutError with the workflowId, and the run goes on", async () => {
    const res = await postJson("/workflow/run", {
      workflowName: "two_steps",
      input: { text: "slow enough", pauseMs: 2_000 },
      timeout: 250,
    });
    expect(res.status).toBe(408);
    const body = (await res.json()) as OutputErrorBody;
    expect(body).toMatchObject({ error: "WorkflowExecutionTimedOutError", code: "wait_timed_out" });
    expect(res.headers.get("location")).toBe(`/workflow/${body.workflowId}/result`);
    const final = await eventually(async () => {
      const r = await api(res.headers.get("location")!);
      return r.status === 200 && ((await r.json()) as ResultPayload);
    });
    expect(final.status).toBe("completed");
    expect(final.output).toEqual({ words: 2, shouted: "SLOW ENOUGH" });
  });

  it("Authorization: Basic <key> works as Output-compatible clients send it", async () => {
    const res = await postJson(
      "/workflow/run",
      { workflowName: "hello", input: { name: "Basic" } },
      { key: null, headers: { authorization: `Basic ${inject("apiKey")}` } },
    );
    expect(res.status).toBe(200);
    expect(((await res.json()) as ResultPayload).output).toEqual({ greeting: "Hello, Basic!" });
  });
});

describe("the D1 run row follows the run to its end", () => {
  let client: Client;
  beforeAll(async () => {
    client = new Client({ connection: await Connection.connect({ address: inject("temporalAddress") }) });
  });
  afterAll(async () => client?.connection.close());

  it("without any client polling: the host's push reaches the row through the RunStream DO", async () => {
    const start = await postJson("/workflow/start", { workflowName: "two_steps", input: { text: "nobody polls" } });
    const { workflowId } = (await start.json()) as { workflowId: string };
    // Wait on Temporal itself, not on the edge, so no edge read can reconcile the row.
    await client.workflow.getHandle(workflowId).result();
    const row = await eventually(
      async () => {
        const [r] = queryD1<{ status: string; output: string; completed_at: string }>(
          `SELECT status, output, completed_at FROM runs WHERE temporal_workflow_id = '${workflowId}'`,
        );
        return r?.status === "completed" && r;
      },
      30_000,
      1_000,
    );
    expect(JSON.parse(row.output)).toEqual({ words: 2, shouted: "NOBODY POLLS" });
    expect(row.completed_at).toBeTruthy();
  });
});

describe("errors through the whole stack", () => {
  // An organization of its own: what its refused requests left behind is all of its rows.
  let org: Organization;
  beforeAll(async () => {
    org = await newOrganization("refused requests e2e");
  });

  it("401 without a key and with a wrong key, in the JSON error shape", async () => {
    for (const key of [null, "otr_abcdefgh1234_wrongwrongwrongwrongwrongwrong"]) {
      const res = await postJson("/workflow/run", { workflowName: "hello", input: { name: "x" } }, { key });
      expect(res.status).toBe(401);
      const body = (await res.json()) as OutputErrorBody;
      expect(body.error).toBe("UnauthorizedError");
      expect(body.code).toBe("unauthorized");
      expect(body.requestId).toBeTruthy();
    }
  });

  it("400 for malformed JSON, a missing field and a wrong-typed input field", async () => {
    const malformed = await postJson("/workflow/start", "{nope", { key: org.key });
    expect(malformed.status).toBe(400);
    expect(((await malformed.json()) as OutputErrorBody).code).toBe("invalid_json");

    const missing = await postJson("/workflow/start", { input: { name: "x" } }, { key: org.key });
    expect(missing.status).toBe(400);
    expect(((await missing.json()) as OutputErrorBody).issues?.[0]?.path).toBe("workflowName");

    const wrongType = await postJson("/workflow/start", { workflowName: "hello", input: { name: 42 } }, { key: org.key });
    expect(wrongType.status).toBe(400);
    const body = (await wrongType.json()) as OutputErrorBody;
    expect(body.code).toBe("invalid_input");
    expect(body.issues?.map((i) => i.path)).toContain("input.name");
  });

  it("424 for an unknown workflow (as Output) and 404 for an unknown run", async () => {
    const unknownWorkflow = await postJson("/workflow/start", { workflowName: "no_such_thing", input: {} }, { key: org.key });
    expect(unknownWorkflow.status).toBe(424);
    expect(((await unknownWorkflow.json()) as OutputErrorBody).code).toBe("unsupported_workflow");
    const unknownRun = await api(`/workflow/hello-${crypto.randomUUID()}/status`, { key: org.key });
    expect(unknownRun.status).toBe(404);
    expect(((await unknownRun.json()) as OutputErrorBody).code).toBe("run_not_found");
  });

  it("413 for a body over 1 MiB", async () => {
    const res = await postJson("/workflow/start", { workflowName: "hello", input: { name: "x".repeat(1_100_000) } }, { key: org.key });
    expect(res.status).toBe(413);
    expect(((await res.json()) as OutputErrorBody).code).toBe("payload_too_large");
  });

  it("/health answers without auth", async () => {
    expect((await api("/health", { key: null })).status).toBe(200);
  });

  it("no refused request left a run row behind, in any status", () => {
    const rows = queryD1<{ n: number }>(`SELECT COUNT(*) AS n FROM runs WHERE organization_id = '${org.id}'`);
    expect(rows[0]!.n).toBe(0);
  });
});
