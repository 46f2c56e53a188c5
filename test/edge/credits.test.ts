/** Credit holds and settlement, at the level of D1 and the RunStream that settles runs. */
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { attributeEvent, meteredOrg, orgRow, signedPost } from "./helpers.ts";

async function insertHeldRun(organizationId: string, hold: number): Promise<string> {
  const workflowId = `hello-${crypto.randomUUID()}`;
  await env.DB.prepare(
    `INSERT INTO workflows (id, organization_id, name, kind, input_schema, output_schema) VALUES ('wf_credits_test', NULL, 'credits_test', 'code', '{}', '{}')
     ON CONFLICT DO NOTHING`,
  ).run();
  await env.DB.prepare(
    "INSERT INTO runs (id, organization_id, workflow_id, workflow_name, temporal_workflow_id, status, input, credit_hold) VALUES (?, ?, 'wf_credits_test', 'credits_test', ?, 'running', '{}', ?)",
  )
    .bind(crypto.randomUUID(), organizationId, workflowId, hold)
    .run();
  // The row's hold is on the organization's reserve through the trigger runs_credit_hold_on_insert.
  expect((await orgRow(organizationId))?.reserved).toBeGreaterThanOrEqual(hold);
  return workflowId;
}

function usage(runId: string, input: number, output: number) {
  return attributeEvent(
    runId,
    { activityId: "1", attempt: 1 },
    {
      type: "llm:usage",
      modelId: "local/writer",
      total: 0,
      tokensUsed: input + output,
      usage: [
        { type: "input", ppm: 0, amount: input, total: 0 },
        { type: "output", ppm: 0, amount: output, total: 0 },
      ],
    },
  );
}

const finished = (runId: string, status: string) => ({
  sourceKey: `run:${runId}:finished`,
  type: "run.finished",
  at: new Date().toISOString(),
  data: {
    runId,
    status,
    output: status === "completed" ? { text: "hi", citations: [] } : null,
    error: status === "completed" ? null : "boom",
  },
});

describe("credit settlement by the run's RunStream", () => {
  it("a completed run is charged its tokens once, however often its end is delivered", async () => {
    const org = await meteredOrg(1000);
    const workflowId = await insertHeldRun(org.organizationId, 400);
    const events = [usage("r1", 30, 12), finished("r1", "completed")];
    for (let i = 0; i < 3; i++) expect((await signedPost(`/internal/runs/${workflowId}/events`, { events })).status).toBe(200);
    expect(await orgRow(org.organizationId)).toEqual({ balance: 958, reserved: 0 });
    const run = await env.DB.prepare("SELECT credit_hold, credits_charged FROM runs WHERE temporal_workflow_id = ?")
      .bind(workflowId)
      .first();
    expect(run).toEqual({ credit_hold: 0, credits_charged: 42 });
    const ledger = await env.DB.prepare(
      "SELECT kind, amount, balance_after, note FROM credit_ledger WHERE run_id IS NOT NULL AND organization_id = ?",
    )
      .bind(org.organizationId)
      .all();
    expect(ledger.results).toEqual([{ kind: "charge", amount: -42, balance_after: 958, note: "42 tokens" }]);
  });

  it("a failed run is not charged and its hold is released", async () => {
    const org = await meteredOrg(1000);
    const workflowId = await insertHeldRun(org.organizationId, 400);
    await signedPost(`/internal/runs/${workflowId}/events`, { events: [usage("r2", 30, 12), finished("r2", "failed")] });
    expect(await orgRow(org.organizationId)).toEqual({ balance: 1000, reserved: 0 });
  });

  it("a charge never exceeds the run's hold", async () => {
    const org = await meteredOrg(1000);
    const workflowId = await insertHeldRun(org.organizationId, 50);
    await signedPost(`/internal/runs/${workflowId}/events`, { events: [usage("r3", 40, 40), finished("r3", "completed")] });
    expect(await orgRow(org.organizationId)).toEqual({ balance: 950, reserved: 0 });
  });
});
