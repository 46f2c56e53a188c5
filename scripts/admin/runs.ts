/**
 * Admin API commands that stop a tenant's runs: one run, or every open run of an organization
 * (/admin/v1/organizations/:orgId/runs/:workflowId/terminate, …/terminate-runs). What an operator
 * needs once an organization is suspended: its own terminate is refused.
 */
import { integer, required, str } from "./args.ts";
import { answer, type Command } from "./command.ts";
import { OutcomeUnknown } from "./errors.ts";
import type { JsonClient } from "./http.ts";
import { err, out, printFields, printTable } from "./output.ts";

interface Terminated {
  terminated: true;
  workflowId: string;
  runId: string | null;
  status: "terminated";
  reason: string;
}
type Outcome = "terminated" | "already_ended" | "not_started" | "error";
interface RunResult {
  workflowId: string;
  runId: string | null;
  status: Outcome;
  code?: string;
  message?: string;
}
interface TerminateRunsPage {
  reason: string;
  results: RunResult[];
  summary: Record<Outcome, number>;
  remaining: number;
  next: string | null;
}

const seg = encodeURIComponent;
const OUTCOMES: Outcome[] = ["terminated", "already_ended", "not_started", "error"];

/** A terminate whose answer was lost: terminating again is harmless (a run already terminated is not terminated twice). */
function safeToRepeat(error: unknown): never {
  if (error instanceof OutcomeUnknown)
    error.hints.push("running it again is safe: a run already terminated answers so, nothing is terminated twice");
  throw error;
}

/**
 * Calls POST …/terminate-runs until `next` is null, following it, and sums the pages. The server
 * moves `next` past every run it settled, so each call makes progress or names the same `next`
 * again; then it stops, with those runs left (`remaining`).
 */
async function terminateAll(admin: JsonClient, orgId: string, reason: string, limit: number | undefined): Promise<TerminateRunsPage> {
  const total: TerminateRunsPage = {
    reason: "",
    results: [],
    summary: { terminated: 0, already_ended: 0, not_started: 0, error: 0 },
    remaining: 0,
    next: null,
  };
  let after: string | null = null;
  do {
    const page: TerminateRunsPage = await admin
      .request<TerminateRunsPage>("POST", `/admin/v1/organizations/${seg(orgId)}/terminate-runs`, {
        reason,
        ...(limit === undefined ? {} : { limit }),
        ...(after ? { after } : {}),
      })
      .catch(safeToRepeat);
    total.reason = page.reason;
    total.results.push(...page.results);
    for (const outcome of OUTCOMES) total.summary[outcome] += page.summary[outcome];
    total.remaining = page.remaining;
    total.next = page.next;
    // The same `next` again: the page's first run could not be settled (its start is being retried,
    // the host is unreachable), and asking at once would change nothing.
    if (page.next === after) break;
    after = page.next;
  } while (after !== null);
  return total;
}

export const runCommands: Command[] = [
  {
    words: ["runs", "terminate"],
    operands: ["<workflowId>"],
    options: ["org", "reason"],
    synopsis: "--org <orgId> --reason <why>",
    summary:
      "terminate one run of an organization, suspended or not; the reason is recorded in the run's history as the operator's, where the tenant reads it",
    run: (ctx) => {
      const orgId = required(ctx.args, "org", ctx.usage);
      const body = { reason: required(ctx.args, "reason", ctx.usage) };
      const path = `/admin/v1/organizations/${seg(orgId)}/runs/${seg(ctx.operands[0]!)}/terminate`;
      return answer(ctx, ctx.admin().request<Terminated>("POST", path, body).catch(safeToRepeat), (run) => {
        console.log(`${out.green("terminated")} run ${out.bold(run.workflowId)} of ${orgId}`);
        printFields([
          ["run id", run.runId],
          ["reason", run.reason],
        ]);
      });
    },
  },
  {
    words: ["orgs", "terminate-runs"],
    operands: ["<orgId>"],
    options: ["reason", "limit"],
    synopsis: "--reason <why> [--limit <n>]",
    summary:
      "terminate every open run of an organization, oldest first (--limit: runs per call, 1-100, default 100); exit 1 when some are left (not started yet, host unreachable): run it again",
    run: async (ctx) => {
      const orgId = ctx.operands[0]!;
      const reason = required(ctx.args, "reason", ctx.usage);
      let remaining = 0;
      const call = terminateAll(ctx.admin(), orgId, reason, integer("--limit", str(ctx.args, "limit"))).then((total) => {
        remaining = total.remaining;
        return total;
      });
      await answer(ctx, call, (total) => {
        console.log(`${out.green("terminated")} ${total.summary.terminated} run(s) of ${out.bold(orgId)}`);
        printTable(
          ["WORKFLOW ID", "RUN ID", "RESULT"],
          total.results.map((r) => [r.workflowId, r.runId, r.code ? `${r.status} (${r.code})` : r.status]),
          "no open runs",
        );
        if (total.results.length > 0) printFields([["reason", total.reason]]);
        if (total.remaining > 0)
          console.error(
            err.yellow(
              `${total.remaining} open run(s) left (not started yet, or the host could not be reached): run it again in a few seconds`,
            ),
          );
      });
      // With --json too: runs are left, so the job is not done.
      return remaining > 0 ? 1 : 0;
    },
  },
];
