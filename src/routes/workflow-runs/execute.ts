import type { Context } from "hono";
import type { App, AppEnv } from "../../app-env.ts";
import { ApiError, issueText } from "../../errors.ts";
import { isJsonMediaType, parseJsonText, readOptionalJson, zodIssues } from "../../middleware/json-body/index.ts";
import { isFormMediaType, MalformedFormError, parseFormBody, type FormPart } from "../../shared/form-body.ts";
import { isReservedName, RESERVED_NAME_MESSAGE, reservedKeys } from "../../shared/reserved-names.ts";
import { toWorkflowRunStatus, type WorkflowRunStatus } from "../../shared/run-status.ts";
import { stepRunId } from "../../shared/step-run-id.ts";
import { cutText } from "../../shared/text-limits.ts";
import { readRun, startAndWaitInRegion, workflowNameById } from "../../services/runs.ts";
import { startCommand } from "../../services/start-command.ts";
import { startAndSubscribe } from "../../sse/start-subscription.ts";
import { openAdmittedSubscription, REVOKED_KEY_MESSAGE, StreamAtEnd } from "../../sse/run-subscription.ts";
import { ADMISSION_PARAMS } from "../../../durable-objects/run-stream/subscriber-admission.ts";
import { workflowRunDetail } from "./views.ts";
import { logStreamResponse } from "../../sse/log-stream.ts";
import { NO_STORE, sseFrame } from "../../sse/frames.ts";
import { logEndId, parseLogCursor } from "../../sse/last-event-id.ts";
import type { Run } from "../../db/schema.ts";
import { detailOf, workflowIdOfRun } from "./detail.ts";
import { executeFields } from "./schemas.ts";

/** The seed's keep-alive: a `ping` event every 9 s. */
export const PING_INTERVAL_MS = 9_000;
/** The blocking execute waits at most this long, then answers 202 with the run so far. */
const EXECUTE_WAIT_MAX_MS = 15 * 60_000;

const EXECUTE_FIELDS = new Set(["workflowId", "inputs", "envs"]);

/**
 * Fields arrive as multipart/form-data (the seed) or urlencoded; `inputs` and `envs` are JSON text.
 * A JSON body works too. A field sent twice, a file, or a reserved name (`__proto__`, ...) is a
 * 400 naming it, and so is a field whose bytes are not UTF-8 (`invalid_encoding`); the fields are collected in a Map, never on an ordinary object.
 */
async function readExecuteFields(c: Context<AppEnv>) {
  const type = c.req.header("content-type") ?? "";
  const raw: Record<string, unknown> = Object.create(null) as Record<string, unknown>;
  if (isJsonMediaType(type)) {
    const body = await readOptionalJson(c);
    if (body === undefined) throw new ApiError("invalid_json", "request body is empty; send workflowId, inputs and envs");
    if (body === null || typeof body !== "object" || Array.isArray(body)) {
      throw new ApiError("invalid_request", "send a JSON object with workflowId, inputs and envs", [
        { path: "(body)", message: "expected an object" },
      ]);
    }
    refuseReservedKeys(body, "");
    Object.assign(raw, body);
  } else if (isFormMediaType(type)) {
    // Read strictly: a text field that is not UTF-8 is 400 invalid_encoding, never U+FFFD (shared/form-body.ts).
    let form: FormPart[];
    try {
      form = parseFormBody(type, new Uint8Array(await c.req.arrayBuffer()));
    } catch (err) {
      if (err instanceof MalformedFormError) throw new ApiError("invalid_request", `the form body could not be read: ${err.message}`);
      throw err;
    }
    const fields = new Map<string, string>();
    for (const part of form) {
      const name = part.name;
      if (isReservedName(name))
        throw new ApiError("invalid_request", `field ${name} ${RESERVED_NAME_MESSAGE}`, [{ path: name, message: "reserved name" }]);
      if (fields.has(name))
        throw new ApiError("invalid_request", `field ${name} appears more than once; send each field once`, [
          { path: name, message: "duplicate field" },
        ]);
      if (part.kind === "file")
        throw new ApiError("invalid_request", `field ${name} must be text, not a file`, [{ path: name, message: "expected text" }]);
      fields.set(name, part.value);
    }
    for (const [name, value] of fields) {
      if (!EXECUTE_FIELDS.has(name)) {
        raw[name] = value; // unknown: the strict schema below names it
      } else if (name === "inputs" || name === "envs") {
        raw[name] = parseJsonText(value, `field ${name}`);
        refuseReservedKeys(raw[name], name);
      } else raw[name] = value;
    }
  } else {
    // Neither a form nor JSON: the fields cannot be read, whatever the bytes are.
    throw new ApiError(
      "unsupported_media_type",
      `send workflowId, inputs and envs as multipart/form-data, application/x-www-form-urlencoded or application/json${type ? `, not ${cutText(type, 100)}` : " (the body has no Content-Type)"}`,
    );
  }
  if (raw.inputs !== undefined) refuseReservedKeys(raw.inputs, "inputs");
  if (raw.envs !== undefined) refuseReservedKeys(raw.envs, "envs");
  const parsed = executeFields.safeParse(raw);
  if (!parsed.success) {
    const issues = zodIssues(parsed.error);
    throw new ApiError("invalid_request", `invalid request: ${issueText(issues, (i) => `${i.path || "(body)"}: ${i.message}`)}`, issues);
  }
  return parsed.data;
}

/** 400 for `__proto__`, `constructor` or `prototype` among an object's keys (zod records drop `__proto__` silently). */
function refuseReservedKeys(value: unknown, prefix: string) {
  const reserved = reservedKeys(value);
  if (reserved.length === 0) return;
  const paths = reserved.map((k) => (prefix ? `${prefix}.${k}` : k));
  throw new ApiError(
    "invalid_request",
    `${paths.join(", ")} ${RESERVED_NAME_MESSAGE}`,
    paths.map((path) => ({ path, message: "reserved name" })),
  );
}

/** The start command of an execute: fields checked here, the input against the catalog in the run's DO. */
async function executeCommand(c: Context<AppEnv>) {
  const fields = await readExecuteFields(c);
  const organizationId = c.get("auth").organizationId;
  const idempotency = c.get("idempotency");
  const name = await workflowNameById(c.env, organizationId, fields.workflowId).catch((err: unknown) => {
    // The name only makes the new run's id. A retry with an Idempotency-Key may be for a run of a
    // workflow no longer published: the key decides, in the run's DO, which replays that run, or
    // refuses a new start with this same 404 (giving the key back).
    if (idempotency && err instanceof ApiError && err.code === "workflow_not_found") return UNLISTED_WORKFLOW_NAME;
    throw err;
  });
  return startCommand(
    organizationId,
    name,
    { kind: "code", by: { id: fields.workflowId }, input: fields.inputs, envs: fields.envs },
    { idempotency },
  );
}

/** The name part of a run id made for a workflow the catalog does not list (`<name>-<uuid>`). */
const UNLISTED_WORKFLOW_NAME = "workflow";

/**
 * What the blocking execute answers once its wait is over: 200 for a run that ended (`success`
 * says whether it completed), 202 `success: true` for one still going (scheduled, running, or
 * waiting for a signal or human input): it did not fail, it is not done.
 */
export function blockingExecuteAnswer(status: WorkflowRunStatus): { success: boolean; status: 200 | 202 } {
  if (status === "completed") return { success: true, status: 200 };
  if (status === "failed" || status === "cancelled") return { success: false, status: 200 };
  return { success: true, status: 202 };
}

/** Starts the run and waits up to `waitMs` for it: one call into the home region, the run's DO. */
async function execute(c: Context<AppEnv>, waitMs: number) {
  return (await startAndWaitInRegion(c.env, await executeCommand(c), waitMs, { settle: waitMs > 0 })).run;
}

/** What a stream needs of its run; `temporalRunId` is null when the first subscription's admission names it. */
type StreamedRun = Pick<Run, "id" | "temporalWorkflowId" | "organizationId"> & { temporalRunId: string | null };

/** The log entries this stream shows (an admission needs them to tell whether a client has seen everything). */
const STREAMED_ENTRY_TYPES = ["run.started", "run.waiting", "run.finished", "step", "thinking"] as const;

/**
 * SSE over a run's log in the Workflow Runs API's events; ids are log sequence numbers, and the
 * final `result` or `error` has `<seq>.end` (logEndId), so that a client reconnecting after it
 * gets 204 (EventSource then stops) rather than the end again, and one that lost it gets it again.
 */
function runEventStream(
  c: Context<AppEnv>,
  run: StreamedRun,
  afterSeq: number,
  openFirst?: () => Promise<{ socket: WebSocket; runId: string }>,
  /** The request started the run (`openFirst` is its streaming start's subscription). */
  startedByThisRequest = false,
): Promise<Response> {
  const content = (status: string) => ({ content: { workflowRunId: run.id, status } });
  // The last log entry this stream passed (shown or not): the end frame's id resumes after it.
  let lastSeq = afterSeq;
  return logStreamResponse(c, {
    workflowId: run.temporalWorkflowId,
    runId: run.temporalRunId,
    afterSeq,
    ...(openFirst ? { openFirst } : {}),
    startedByThisRequest,
    keepAliveMs: PING_INTERVAL_MS,
    keepAlive: () => sseFrame({ event: "ping", data: { content: "ping" } }),
    // The workflow run is the workflow id's: a continue-as-new or a reset goes on in its stream, as its row follows the next run.
    followWorkflow: true,
    onEntry: async (entry) => {
      lastSeq = entry.seq;
      if (entry.type === "run.started") return sseFrame({ id: entry.seq, event: "workflow-run", data: content("running") });
      // The run became blocked on a signal or human input, or went on (the DO's own entry: durable-objects/run-stream/waiting.ts).
      if (entry.type === "run.waiting") {
        return sseFrame({ id: entry.seq, event: "workflow-run", data: content(entry.data.waiting ? "waiting" : "running") });
      }
      if (entry.type === "run.finished") {
        return sseFrame({ id: entry.seq, event: "workflow-run", data: content(toWorkflowRunStatus(entry.data.status)) });
      }
      if (entry.type === "step") {
        const data = entry.data;
        const state = data.state === "started" ? "running" : data.state;
        return sseFrame({
          id: entry.seq,
          event: "activity-run",
          data: {
            content: {
              ...content(state).content,
              activityRunId: await stepRunId(run.temporalWorkflowId, data.runId, data.activityId, data.attempt || 1),
              stepId: data.activityId,
              stepName: data.stepName,
              attempt: data.attempt,
              ...(data.error ? { error: data.error } : {}),
            },
          },
        });
      }
      if (entry.type === "thinking") {
        const data = entry.data;
        const activityRunId = await stepRunId(run.temporalWorkflowId, data.runId, String(data.activityId), data.attempt || 1);
        return sseFrame({ id: entry.seq, event: "thinking", data: { content: data.text, stepId: data.activityId, activityRunId } });
      }
      return "";
    },
    onDone: async (done) => {
      const id = logEndId(lastSeq);
      // Read in the run's DO once D1 has what its log has: the end was sent to subscribers before D1 got it.
      const settled = await readRun(c.env, run.organizationId, run.temporalWorkflowId, { settle: false, projected: true });
      const detail = await detailOf(c.env, settled.run);
      if (done.status === "completed")
        return sseFrame({
          id,
          event: "result",
          data: { success: true, workflowRun: { ...detail, status: "completed", outputs: done.output ?? null } },
        });
      return sseFrame({
        id,
        event: "error",
        data: { error: `workflow run ${toWorkflowRunStatus(done.status)}`, details: done.error ?? done.status },
      });
    },
    onLost: () => sseFrame({ event: "error", data: { error: "stream interrupted", details: "reconnect with Last-Event-ID to resume" } }),
    onRevoked: () => sseFrame({ event: "error", data: { error: "unauthorized", details: REVOKED_KEY_MESSAGE } }),
  });
}

/**
 * POST /api/v1/workflow-runs/execute (blocking), POST …/execute/stream (SSE), and
 * GET /api/v1/workflow-runs/:runId/stream, where a client that lost the stream resumes it with
 * Last-Event-ID.
 */
export function registerExecute(app: App) {
  app.post("/api/v1/workflow-runs/execute", async (c) => {
    const run = await execute(c, EXECUTE_WAIT_MAX_MS);
    const detail = await detailOf(c.env, run);
    const { success, status } = blockingExecuteAnswer(detail.status);
    return c.json({ success, workflowRun: detail }, status);
  });

  app.post("/api/v1/workflow-runs/execute/stream", async (c) => {
    const command = await executeCommand(c);
    const { organizationId } = command;
    // One call into the home region: the run's DO starts it and subscribes this stream to its log.
    const opened = await startAndSubscribe(c.env, command, { withRow: true });
    if (opened.kind === "subscribed") {
      const { started, socket } = opened;
      const runId = started.runId!;
      const run = { id: started.id, temporalWorkflowId: started.workflowId, temporalRunId: runId, organizationId };
      return runEventStream(c, run, 0, async () => ({ socket, runId }), true);
    }
    if (opened.kind === "accepted") {
      // Accepted, but the host has not confirmed the start yet: it will run; follow it by id.
      if (!opened.run) throw new ApiError("run_not_found", `no workflow run "${opened.started.id}"`);
      return c.json({ success: true, workflowRun: workflowRunDetail(opened.run, opened.steps ?? []) }, 202);
    }
    // An Idempotency-Key replay: the earlier run, read and followed in its own DO (a second call).
    const { run } = await readRun(c.env, organizationId, opened.started.workflowId, { settle: false });
    if (!run.temporalRunId) {
      // Not started in Temporal: still to start (202), or refused for good, which ended it (as the blocking execute answers).
      const detail = await detailOf(c.env, run);
      const { success, status } = blockingExecuteAnswer(detail.status);
      return c.json({ success, workflowRun: detail }, status);
    }
    return runEventStream(c, run, 0);
  });

  app.get("/api/v1/workflow-runs/:runId/stream", async (c) => {
    const organizationId = c.get("auth").organizationId;
    // Which DO: from a D1 read replica near the Worker (the primary only if the replica has not seen the row yet).
    const { workflowId, runUuid } = await workflowIdOfRun(c.env, organizationId, c.req.param("runId"));
    const cursor = parseLogCursor(c);
    const afterSeq = cursor?.afterSeq ?? 0;
    // The first subscription carries the admission (the row is this organization's, the run has started): one call.
    // A client that saw the end gets 204 unless its run shows something new since (a reset's run).
    const admit = async () => {
      const admitted = await openAdmittedSubscription(c.env, workflowId, {
        view: "log",
        after: String(afterSeq),
        [ADMISSION_PARAMS.organizationId]: organizationId,
        [ADMISSION_PARAMS.runUuid]: runUuid,
        ...(cursor?.sawEnd ? { [ADMISSION_PARAMS.endTypes]: STREAMED_ENTRY_TYPES.join(",") } : {}),
      });
      return { socket: admitted.socket, runId: admitted.runId ?? "" };
    };
    // A run that ended before it ever started in Temporal has nothing to stream, and a client that has the end has it all: 204.
    return runEventStream(c, { id: runUuid, temporalWorkflowId: workflowId, temporalRunId: null, organizationId }, afterSeq, admit).catch(
      (err) => {
        if (err instanceof StreamAtEnd) return c.body(null, 204, NO_STORE);
        throw err;
      },
    );
  });
}
