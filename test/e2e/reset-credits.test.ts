/**
 * A reset's credits against the real stack (Temporal, wrangler dev, the host): a metered
 * organization's reset of a run still going holds credits before the host resets it, the replaced
 * run's end (terminated by the reset) settles nothing, and the new run's end settles the reset's
 * hold once, with its own ledger row. test/edge/reset-credits.test.ts covers the refusals.
 */
import { describe, expect, it } from "vitest";
import { admin, api, eventually, postJson, queryD1 } from "./helpers.ts";

async function meteredOrg(credits: number) {
  const org = await admin<{ id: string }>("POST", "/admin/v1/organizations", { name: "reset credits e2e" });
  const key = await admin<{ key: string }>("POST", `/admin/v1/organizations/${org.id}/api-keys`, {
    name: "e2e",
    rateLimitPerMinute: 10_000,
  });
  await admin("POST", `/admin/v1/organizations/${org.id}/credits`, { amount: credits });
  return { id: org.id, key: key.key };
}

const credits = (orgId: string) =>
  queryD1<{ balance: number; reserved: number }>(
    `SELECT credit_balance AS balance, credits_reserved AS reserved FROM organizations WHERE id = '${orgId}'`,
  )[0]!;

describe("POST /workflow/:id/runs/:rid/reset, metered", () => {
  it("a reset of a running two_steps holds credits once, and the new run's end settles that hold with its own ledger row", async () => {
    const org = await meteredOrg(1_000_000);
    const start = await postJson(
      "/workflow/start",
      { workflowName: "two_steps", input: { text: "reset me", pauseMs: 4000 } },
      { key: org.key },
    );
    expect(start.status).toBe(200);
    const { workflowId, runId: oldRunId } = (await start.json()) as { workflowId: string; runId: string };
    const hold = credits(org.id).reserved;
    expect(hold).toBeGreaterThan(0);
    // The first step is done and the workflow sleeps: the reset point exists.
    await eventually(async () => {
      const page = (await (await api(`/workflow/${workflowId}/history`, { key: org.key })).json()) as {
        events: Array<{ eventTypeName: string }>;
      };
      return page.events.some((e) => e.eventTypeName === "TIMER_STARTED");
    });
    const res = await postJson(`/workflow/${workflowId}/runs/${oldRunId}/reset`, { stepName: "countWords" }, { key: org.key });
    expect(res.status).toBe(200);
    const { runId: newRunId } = (await res.json()) as { runId: string };
    expect(credits(org.id)).toEqual({ balance: 1_000_000, reserved: hold });

    await eventually(async () => {
      const s = (await (await api(`/workflow/${workflowId}/status`, { key: org.key })).json()) as { runId: string; status: string };
      return s.status === "completed" && s.runId === newRunId;
    }, 60_000);
    const [row] = queryD1<{ id: string; credit_hold: number; credits_charged: number }>(
      `SELECT id, credit_hold, credits_charged FROM runs WHERE temporal_workflow_id = '${workflowId}'`,
    );
    expect(row).toMatchObject({ credit_hold: 0, credits_charged: 0 });
    expect(credits(org.id)).toEqual({ balance: 1_000_000, reserved: 0 });
    // two_steps calls no model: the new run is charged 0 tokens, on its own ledger row; the
    // replaced run's end (terminated) settled nothing.
    expect(
      queryD1<{ id: string; note: string }>(`SELECT id, note FROM credit_ledger WHERE organization_id = '${org.id}' AND kind = 'charge'`),
    ).toEqual([{ id: `charge:${row!.id}:${newRunId}`, note: "0 tokens" }]);
  });

  it("a reset pinned to an earlier run while a later run is going: Temporal terminates the later run, and the row follows the reset's run, charged once", async () => {
    const org = await meteredOrg(1_000_000);
    const start = await postJson(
      "/workflow/start",
      { workflowName: "two_steps", input: { text: "reset me twice", pauseMs: 4000 } },
      { key: org.key },
    );
    const { workflowId, runId: first } = (await start.json()) as { workflowId: string; runId: string };
    const sleeping = (runId: string) =>
      eventually(async () => {
        const page = (await (await api(`/workflow/${workflowId}/runs/${runId}/history`, { key: org.key })).json()) as {
          events: Array<{ eventTypeName: string }>;
        };
        return page.events.some((e) => e.eventTypeName === "TIMER_STARTED");
      });
    await sleeping(first);
    const second = (await (
      await postJson(`/workflow/${workflowId}/runs/${first}/reset`, { stepName: "countWords" }, { key: org.key })
    ).json()) as {
      runId: string;
    };
    await sleeping(second.runId);
    // Reset from the first run again: the second (the workflow's current run, still sleeping) is the one Temporal terminates.
    const res = await postJson(`/workflow/${workflowId}/runs/${first}/reset`, { stepName: "countWords" }, { key: org.key });
    expect(res.status).toBe(200);
    const { runId: third } = (await res.json()) as { runId: string };
    expect(third).not.toBe(second.runId);
    const during = (await (await api(`/workflow/${workflowId}/status`, { key: org.key })).json()) as { runId: string; status: string };
    expect(during).toMatchObject({ runId: third, status: "running" });

    await eventually(async () => {
      const s = (await (await api(`/workflow/${workflowId}/status`, { key: org.key })).json()) as { runId: string; status: string };
      return s.status === "completed" && s.runId === third;
    }, 60_000);
    // The terminated second run reads as an earlier run of the workflow.
    const replaced = (await (await api(`/workflow/${workflowId}/runs/${second.runId}/status`, { key: org.key })).json()) as {
      status: string;
    };
    expect(replaced.status).toBe("terminated");
    const [row] = queryD1<{ id: string; status: string; temporal_run_id: string; credit_hold: number }>(
      `SELECT id, status, temporal_run_id, credit_hold FROM runs WHERE temporal_workflow_id = '${workflowId}'`,
    );
    expect(row).toMatchObject({ status: "completed", temporal_run_id: third, credit_hold: 0 });
    expect(credits(org.id)).toEqual({ balance: 1_000_000, reserved: 0 });
    // One settlement, the last run's: neither replaced run's end settled the hold.
    expect(queryD1<{ id: string }>(`SELECT id FROM credit_ledger WHERE organization_id = '${org.id}' AND kind = 'charge'`)).toEqual([
      { id: `charge:${row!.id}:${third}` },
    ]);
  });
});
