/**
 * `run <workflow>`: executes a code workflow through the Workflow Runs API as a trusted internal
 * caller (`Authorization: Bearer <INTERNAL_SERVICE_SECRET>` + `X-Organization-Id`) and follows
 * its SSE stream, printing progress as it happens. A lost stream is resumed with Last-Event-ID.
 */
import { headerValue, list, required, str } from "./args.ts";
import type { Command, Context } from "./command.ts";
import { API_KEY, INTERNAL_SECRET, credentialHint, resolveCredential } from "./config.ts";
import { ApiFailure, CliError, apiFailure } from "./errors.ts";
import { jsonClient, send } from "./http.ts";
import { err, oneLine, out, printable, printableDeep } from "./output.ts";
import { retryAfterMs } from "../../src/shared/retry-after.ts";
import { readSse, type SseMessage } from "../../src/shared/sse-reader.ts";

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const MAX_RESUMES = 5;
/**
 * How long a run accepted but not yet started in Temporal (its stream answers 503 with Retry-After
 * while the edge's outbox retries the start) is waited for before the CLI gives up following it.
 */
const NOT_STARTED_WAIT_MS = 5 * 60_000;
/** The wait before asking again when a 503 gives no usable Retry-After (or 0). */
const NOT_STARTED_RETRY_MS = 1_000;
/** The longest Retry-After followed. */
const NOT_STARTED_RETRY_MAX_MS = 30_000;

function parseInputs(raw: string | undefined): Record<string, unknown> {
  if (raw === undefined) return {};
  let value: unknown;
  try {
    value = JSON.parse(raw);
  } catch (error) {
    throw new CliError(`--input is not valid JSON: ${(error as Error).message}`, [`example: --input '{"name":"Ada"}'`]);
  }
  if (!value || typeof value !== "object" || Array.isArray(value)) throw new CliError("--input must be a JSON object");
  return value as Record<string, unknown>;
}

/** What `--env NAME` (no `=`) may name: a variable of the shell. */
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/**
 * `--env NAME=value`, or `--env NAME` for the value of this process's $NAME (as `docker run -e`):
 * the value of a flag is on the command line, which `ps` shows every user of the machine, and
 * --env values are the run's secrets.
 */
function parseEnvs(pairs: string[]): Record<string, string> {
  const envs: Record<string, string> = {};
  for (const [i, pair] of pairs.entries()) {
    const eq = pair.indexOf("=");
    // Never quoted: --env values are the run's secrets, and `--env sk-...` is a value given without its name.
    if (eq === 0) throw new CliError(`--env takes NAME=value or NAME: --env number ${i + 1} has no name before its =`);
    if (eq > 0) {
      envs[pair.slice(0, eq)] = pair.slice(eq + 1);
      continue;
    }
    const value = ENV_NAME.test(pair) ? process.env[pair] : undefined;
    if (value === undefined) {
      throw new CliError(`--env takes NAME=value or NAME: --env number ${i + 1} names no variable set in this environment`, [
        "NAME alone sends this shell's $NAME (export it first), keeping the value off the command line",
      ]);
    }
    envs[pair] = value;
  }
  return envs;
}

/** The workflow's UUID: given as is, or looked up by name in `GET /workflow/catalog` (needs an API key). */
async function workflowUuid(ctx: Context, nameOrId: string): Promise<{ id: string; name: string }> {
  if (UUID.test(nameOrId)) return { id: nameOrId, name: nameOrId };
  const apiKey = resolveCredential(API_KEY, str(ctx.args, "api-key"), ctx.url);
  const { workflows } = await jsonClient(ctx.url, apiKey, ctx.timeoutMs, credentialHint(API_KEY)).request<{
    workflows: Array<{ id: string; name: string }>;
  }>("GET", "/workflow/catalog");
  const found = workflows.find((w) => w.name === nameOrId);
  if (!found) {
    throw new CliError(`no workflow named "${nameOrId}" in the catalog`, [
      `available: ${workflows.map((w) => w.name).join(", ") || "(none)"}`,
    ]);
  }
  return found;
}

/**
 * Whether the organization exists, asked with the admin key when it is at hand (else assumed):
 * the edge answers 401 to an internal caller's X-Organization-Id that names no organization, the
 * same status as a wrong secret, and the hint must say which it was.
 */
async function organizationExists(ctx: Context, org: string): Promise<boolean> {
  try {
    await ctx.admin().request("GET", `/admin/v1/organizations/${encodeURIComponent(org)}`);
    return true;
  } catch (error) {
    return !(error instanceof ApiFailure && error.code === "organization_not_found");
  }
}

interface Content {
  workflowRunId?: string;
  status?: string;
  activityRunId?: string;
  stepName?: string;
  attempt?: number;
  error?: unknown;
}

/** Prints one line per event worth seeing; remembers what it needs to resume and to exit. */
class Progress {
  startedAt = Date.now();
  attemptStarts = new Map<string, number>();
  runId: string | undefined;
  lastEventId: string | undefined;
  outcome: "completed" | "failed" | "interrupted" | undefined;
  json: boolean;

  constructor(json: boolean) {
    this.json = json;
  }

  private stamp(at = Date.now()) {
    return out.dim(`+${((at - this.startedAt) / 1000).toFixed(2).padStart(6)}s`);
  }

  private status(status: string) {
    if (status === "completed") return out.green(status);
    if (status === "failed" || status === "cancelled") return out.red(status);
    return out.cyan(status);
  }

  handle(message: SseMessage): void {
    if (message.id !== undefined) this.lastEventId = message.id;
    let data: Record<string, unknown>;
    try {
      data = JSON.parse(message.data) as Record<string, unknown>;
    } catch {
      data = { raw: message.data };
    }
    // What is printed as text never carries a control character (a step's error, a model's thinking).
    // The outputs are printed as JSON, whose strings escape control characters themselves.
    const outputs = (data.workflowRun as { outputs?: unknown } | undefined)?.outputs;
    if (!this.json) data = printableDeep(data);
    const content = (typeof data.content === "object" && data.content ? data.content : {}) as Content;
    if (content.workflowRunId) this.runId = content.workflowRunId;
    if (message.event === "result") this.outcome = data.success === true ? "completed" : "failed";
    else if (message.event === "error") this.outcome = data.error === "stream interrupted" ? "interrupted" : "failed";

    if (this.json) {
      if (message.event !== "ping") console.log(JSON.stringify({ event: message.event, id: message.id ?? null, data }));
      return;
    }
    const now = Date.now();
    switch (message.event) {
      case "workflow-run":
        console.log(`${this.stamp(now)} workflow run ${out.dim(content.workflowRunId ?? "")} ${this.status(String(content.status))}`);
        break;
      case "activity-run": {
        const key = content.activityRunId ?? `${content.stepName}:${content.attempt}`;
        let took = "";
        if (content.status === "running") this.attemptStarts.set(key, now);
        else if (this.attemptStarts.has(key)) took = out.dim(` (${((now - this.attemptStarts.get(key)!) / 1000).toFixed(2)}s)`);
        const error =
          content.error === undefined
            ? ""
            : ` ${err.red("—")} ${oneLine(typeof content.error === "string" ? content.error : JSON.stringify(content.error), 200)}`;
        console.log(
          `${this.stamp(now)}   activity ${out.bold(String(content.stepName))}  attempt ${content.attempt}  ${this.status(String(content.status))}${took}${error}`,
        );
        break;
      }
      case "thinking":
        console.log(out.dim(`${" ".repeat(18)}thinking: ${oneLine(typeof data.content === "string" ? data.content : "", 120)}`));
        break;
      case "result": {
        const run = (data.workflowRun ?? {}) as {
          id?: string;
          outputs?: unknown;
          usage?: { tokens?: number; costUsd?: number; credits?: number | null };
        };
        const usage = run.usage;
        const figures = usage?.tokens ? `, ${usage.tokens} tokens, $${(usage.costUsd ?? 0).toFixed(6)}` : "";
        console.log(`${this.stamp(now)} ${out.green("done")} in ${((now - this.startedAt) / 1000).toFixed(2)}s${figures}`);
        console.log(out.bold("outputs:"));
        console.log(JSON.stringify(outputs ?? null, null, 2));
        break;
      }
      case "error":
        if (this.outcome === "interrupted") {
          console.log(out.yellow(`${this.stamp(now)} stream interrupted; resuming after event ${this.lastEventId ?? "0"}`));
          break;
        }
        console.error(`${err.red("error:")} ${String(data.error ?? "the run failed")}`);
        if (data.details !== undefined)
          console.error(`  ${typeof data.details === "string" ? data.details : JSON.stringify(data.details, null, 2)}`);
        break;
      default:
        break; // ping and anything new
    }
  }
}

/** A Workflow Runs API run, as its detail (GET /api/v1/workflow-runs/{id}) or a 202 shows it. */
interface RunDetail {
  id?: string;
  status?: string;
  outputs?: unknown;
  error?: unknown;
}

/**
 * The outcome of a run whose stream has nothing more to send (a resume answered 204: the run has
 * ended and every event was seen), from its detail, shown as its stream would have shown it.
 */
async function finishFromDetail(ctx: Context, secret: string, org: string, progress: Progress): Promise<void> {
  const detail = await jsonClient(ctx.url, secret, ctx.timeoutMs, credentialHint(INTERNAL_SECRET)).request<RunDetail>(
    "GET",
    `/api/v1/workflow-runs/${encodeURIComponent(progress.runId!)}`,
    undefined,
    { "x-organization-id": org },
  );
  const ended =
    detail.status === "completed"
      ? { event: "result", data: { success: true, workflowRun: detail } }
      : { event: "error", data: { error: detail.error ?? `the run ended ${String(detail.status)}` } };
  progress.handle({ event: ended.event, id: undefined, data: JSON.stringify(ended.data) });
  // A run that has not ended cannot have a stream with nothing more to send: say so, do not loop.
  if (progress.outcome === undefined) progress.outcome = "failed";
}

/** Reads the stream until the run's outcome, an interruption, or a dropped connection (then resumed). */
async function follow(res: Response, progress: Progress): Promise<void> {
  try {
    for await (const message of readSse(res.body!)) {
      progress.handle(message);
      if (progress.outcome !== undefined) return;
    }
  } catch (error) {
    if (!progress.json)
      console.log(out.yellow(`connection lost (${(error as Error).message}); resuming after event ${progress.lastEventId ?? "0"}`));
  }
}

async function runWorkflow(ctx: Context): Promise<number> {
  const org = headerValue("--org", required(ctx.args, "org", ctx.usage));
  const inputs = parseInputs(str(ctx.args, "input"));
  const envs = parseEnvs(list(ctx.args, "env"));
  const secret = resolveCredential(INTERNAL_SECRET, str(ctx.args, "internal-secret"), ctx.url);
  const workflow = await workflowUuid(ctx, ctx.operands[0]!);
  const headers = { authorization: `Bearer ${secret}`, "x-organization-id": org, accept: "text/event-stream" };

  const form = new FormData();
  form.set("workflowId", workflow.id);
  form.set("inputs", JSON.stringify(inputs));
  form.set("envs", JSON.stringify(envs));
  const progress = new Progress(ctx.json);
  const label =
    workflow.name === workflow.id ? `workflow ${workflow.id}` : `${printable(workflow.name)} ${out.dim(`(${printable(workflow.id)})`)}`;
  if (!ctx.json) console.log(`${out.bold("running")} ${label} for ${org} at ${ctx.url}`);
  const res = await send(`${ctx.url}/api/v1/workflow-runs/execute/stream`, { method: "POST", headers, body: form }, ctx.timeoutMs);
  if (!res.ok) {
    const unknownOrganization = res.status === 401 && !(await organizationExists(ctx, org));
    const failure = await apiFailure(res, unknownOrganization ? undefined : credentialHint(INTERNAL_SECRET), secret);
    if (unknownOrganization) failure.hints.push(`organization "${org}" does not exist (see \`orgs list\`)`);
    throw failure;
  }
  // JSON instead of the stream: the run was accepted but Temporal has not confirmed its start yet
  // (202). It will run: it is followed by its id, from its first event.
  const accepted = res.headers.get("content-type")?.includes("text/event-stream") ? null : await acceptedRun(ctx, res);
  if (accepted) {
    progress.runId = accepted.id;
    if (!ctx.json) console.log(out.yellow(`accepted as ${printable(accepted.id)}; its start is not confirmed yet: following it`));
  }

  const onInterrupt = () => {
    console.error(`\nstopped following${progress.runId ? `; the run goes on on the server: ${progress.runId}` : ""}`);
    process.exit(130);
  };
  process.once("SIGINT", onInterrupt);
  try {
    if (!accepted) await follow(res, progress);
    const notStartedUntil = Date.now() + NOT_STARTED_WAIT_MS;
    let resumes = 0;
    // An accepted run's first connect goes at once; a resume after a backoff that grows.
    let connectNow = accepted !== null;
    while (progress.outcome !== "completed" && progress.outcome !== "failed") {
      if (!progress.runId || resumes >= MAX_RESUMES) {
        throw new CliError(
          "the stream ended before the run did",
          progress.runId ? [`follow it with GET /api/v1/workflow-runs/${progress.runId}/stream`] : [],
        );
      }
      if (!connectNow) {
        resumes++;
        await new Promise((r) => setTimeout(r, 1000 * resumes));
      }
      connectNow = false;
      progress.outcome = undefined;
      const again = await send(
        `${ctx.url}/api/v1/workflow-runs/${progress.runId}/stream`,
        { headers: { ...headers, ...(progress.lastEventId ? { "last-event-id": progress.lastEventId } : {}) } },
        ctx.timeoutMs,
      );
      // Not started yet (the edge's outbox is still starting it): asked again when it says, not counted as a resume.
      if (again.status === 503 && again.headers.has("retry-after") && Date.now() < notStartedUntil) {
        await again.body?.cancel();
        const waitMs = retryAfterMs((name) => again.headers.get(name), NOT_STARTED_RETRY_MAX_MS) || NOT_STARTED_RETRY_MS;
        await new Promise((r) => setTimeout(r, waitMs));
        connectNow = true;
        continue;
      }
      if (!again.ok) throw await apiFailure(again, credentialHint(INTERNAL_SECRET), secret);
      if (again.status === 204) {
        await finishFromDetail(ctx, secret, org, progress);
        break;
      }
      await follow(again, progress);
    }
  } finally {
    process.off("SIGINT", onInterrupt);
  }
  return progress.outcome === "completed" ? 0 : 1;
}

/** The run of a JSON answer to execute/stream (202: accepted, its start not confirmed yet); anything else is an error. */
async function acceptedRun(ctx: Context, res: Response): Promise<{ id: string }> {
  const text = await res.text();
  let body: { workflowRun?: RunDetail } | undefined;
  try {
    body = JSON.parse(text) as { workflowRun?: RunDetail };
  } catch {
    body = undefined;
  }
  const id = body?.workflowRun?.id;
  if (res.status !== 202 || typeof id !== "string" || !UUID.test(id)) {
    throw new CliError(
      `${ctx.url} answered HTTP ${res.status} with ${body ? "JSON that is not an accepted run" : `a body that is neither an event stream nor JSON (${res.headers.get("content-type") ?? "no content type"})`}`,
      ["check --url / OUTRIDER_URL: it must be the edge"],
    );
  }
  return { id };
}

export const runCommand: Command = {
  words: ["run"],
  operands: ["<workflow>"],
  options: ["org", "input", "env", "internal-secret", "api-key"],
  synopsis: "--org <orgId> [--input '<json>'] [--env NAME=value | --env NAME ...]",
  summary: "run a code workflow (name or UUID) through the Workflow Runs API, with live progress",
  run: runWorkflow,
};
