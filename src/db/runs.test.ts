/** A row read back raw in a batch (runFromRow) is the run drizzle's own read gives, value for value. */
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { seedCatalog, seedOrganization } from "../../test/edge/helpers.ts";
import { findRunByWorkflowId, runFromRow, selectRunRowStatement } from "./runs.ts";

describe("runFromRow", () => {
  it("maps every column as drizzle does: JSON parsed, booleans as booleans, numbers and nulls as they are", async () => {
    await seedCatalog();
    const { organizationId } = await seedOrganization();
    const workflow = await env.DB.prepare("SELECT id FROM workflows WHERE name = 'hello' AND organization_id IS NULL").first<{
      id: string;
    }>();
    const id = crypto.randomUUID();
    const workflowId = `hello-${id}`;
    await env.DB.prepare(
      `INSERT INTO runs (id, organization_id, workflow_id, workflow_name, temporal_workflow_id, temporal_run_id, status, input, output,
         output_in_log, error, error_details, cost_total, tokens_total, completed_at)
       VALUES (?, ?, ?, 'hello', ?, ?, 'failed', ?, ?, 1, 'boom', ?, 0.25, 12, '2026-12-06T00:00:00.000Z')`,
    )
      .bind(
        id,
        organizationId,
        workflow!.id,
        workflowId,
        crypto.randomUUID(),
        JSON.stringify({ name: "Ada", nested: [1, { a: null }] }),
        JSON.stringify("text output"),
        JSON.stringify({ message: "boom", name: "Error" }),
      )
      .run();
    const raw = await selectRunRowStatement(env.DB, workflowId).first<Record<string, unknown>>();
    const run = runFromRow(raw!);
    expect(run).toEqual(await findRunByWorkflowId(env.DB, organizationId, workflowId));
    expect(run).toMatchObject({
      outputInLog: true,
      input: { name: "Ada", nested: [1, { a: null }] },
      output: "text output",
      waitingSince: null,
    });
  });
});
