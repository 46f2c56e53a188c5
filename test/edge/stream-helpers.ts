/** Runs and history pushes for stream tests, shaped exactly as the host's relay sends them. */
import { runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { SignJWT } from "jose";
import { runStream } from "../../src/run-stream-client.ts";
import { HOST_PATHS } from "../../src/shared/host-api.ts";
import { call, scriptHost, signedPost } from "./helpers.ts";

export function historyEvent(runId: string, eventId: number, eventType = "EVENT_TYPE_ACTIVITY_TASK_COMPLETED") {
  return {
    sourceKey: `history:${runId}:${eventId}`,
    type: "history",
    at: new Date().toISOString(),
    data: {
      runId,
      event: {
        eventId: String(eventId),
        eventTime: new Date().toISOString(),
        eventType: eventId === 1 ? "EVENT_TYPE_WORKFLOW_EXECUTION_STARTED" : eventType,
        attributes: eventId === 1 ? { taskQueue: { name: "outrider" } } : {},
        payloads: { result: { step: eventId } },
      },
    },
  };
}

export const closeEvent = (runId: string, eventId: number) => historyEvent(runId, eventId, "EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED");

/** A run's continue-as-new, as the host relays it: its closing history event (`eventId`), then its outcome naming the next run. */
export const continuedAsNewEvents = (runId: string, eventId: number, newRunId: string) => [
  historyEvent(runId, eventId, "EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW"),
  { ...finishedEvent(runId, "continued_as_new"), data: { runId, status: "continued_as_new", newRunId } },
];

export function finishedEvent(runId: string, status = "completed") {
  return {
    sourceKey: `run:${runId}:finished`,
    type: "run.finished",
    at: new Date().toISOString(),
    data: { runId, status, output: { ok: true }, error: null },
  };
}

export async function push(workflowId: string, events: unknown[]) {
  const res = await signedPost(`/internal/runs/${workflowId}/events`, { events });
  if (res.status !== 200) throw new Error(`push failed: ${res.status} ${await res.text()}`);
  return (await res.json()) as { accepted: number; duplicates: number };
}

/** A run row as the start route leaves it, plus the run.started event. */
export async function createRunningRun(organizationId: string, name = "two_steps", chosenWorkflowId?: string) {
  const id = crypto.randomUUID();
  const workflowId = chosenWorkflowId ?? `${name}-${id}`;
  // Temporal run ids are UUIDs (the run-pinned routes check it).
  const runId = crypto.randomUUID();
  const wf = await env.DB.prepare("SELECT id FROM workflows WHERE name = ? AND organization_id IS NULL").bind(name).first<{ id: string }>();
  await env.DB.prepare(
    "INSERT INTO runs (id, organization_id, workflow_id, workflow_name, temporal_workflow_id, status, input) VALUES (?, ?, ?, ?, ?, 'scheduled', '{}')",
  )
    .bind(id, organizationId, wf!.id, name, workflowId)
    .run();
  await push(workflowId, [{ sourceKey: `run:${runId}:started`, type: "run.started", at: new Date().toISOString(), data: { runId } }]);
  return { workflowId, runId };
}

export const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i);

/** A thinking entry as an LLM step publishes it. */
export const thinkingEvent = (runId: string, n: number, text: string, activityId = "5") => ({
  sourceKey: `thinking:${runId}:${activityId}:1:${n}`,
  type: "thinking",
  at: new Date().toISOString(),
  data: { runId, activityId, stepName: "askModel", attempt: 1, text },
});

/** An `http:request` attribute as a step publishes it: the `n`th of step `activityId` (`total`: its cost). */
export const httpAttributeEvent = (runId: string, n: number, step = { activityId: "5", stepName: "askModel" }, total = 0) => ({
  sourceKey: `attribute:${runId}:${step.activityId}:1:${n}`,
  type: "attribute",
  at: new Date().toISOString(),
  data: {
    runId,
    ...step,
    attempt: 1,
    attribute: { type: "http:request", method: "GET", url: "https://example.com/", status: 200, count: 1, total },
  },
});

export interface Frame {
  event: string;
  id?: string;
  data: string;
}

/** Every frame of a stream until it ends (a 204 is no frames). */
export async function allFrames(res: Response): Promise<Frame[]> {
  if (res.status === 204) return [];
  if (res.status !== 200) throw new Error(`stream answered ${res.status}: ${await res.text()}`);
  const { readSse } = await import("../support/sse.ts");
  const frames: Frame[] = [];
  for await (const m of readSse(res.body!)) frames.push({ event: m.event, id: m.id || undefined, data: m.data });
  return frames;
}

/**
 * Resume is exact: on a finished run's stream, every frame but the `unnumbered` kinds (summaries,
 * keep-alives, the final outcome) carries an id, and resuming from each id gives exactly the
 * frames that followed it: none twice, none lost.
 */
export async function expectExactResume(open: (lastEventId?: string) => Promise<Response>, unnumbered: string[]) {
  const numbered = (frames: Frame[]) => frames.filter((f) => !unnumbered.includes(f.event));
  const all = await allFrames(await open());
  const expected = numbered(all);
  for (const f of expected) if (!f.id) throw new Error(`a ${f.event} frame has no id: ${f.data}`);
  let resumes = 0;
  for (const [i, frame] of expected.entries()) {
    const rest = numbered(await allFrames(await open(frame.id)));
    if (JSON.stringify(rest) !== JSON.stringify(expected.slice(i + 1))) {
      throw new Error(
        `resuming after ${frame.event} ${frame.id} gave ${JSON.stringify(rest.map((f) => `${f.event}:${f.id}`))}, expected ${JSON.stringify(expected.slice(i + 1).map((f) => `${f.event}:${f.id}`))}`,
      );
    }
    resumes++;
  }
  return { frames: all, resumes };
}

/** A `hello` run started through its RunStream DO, as the start routes do; `reply` is the DO's answer. */
export async function startHelloInItsDo(organizationId: string) {
  const runUuid = crypto.randomUUID();
  const workflowId = `hello-${runUuid}`;
  const stub = runStream(env, workflowId);
  const reply = await stub.start({
    organizationId,
    workflowId,
    runUuid,
    target: { kind: "code", by: { name: "hello" }, input: { name: "Ada" } },
  });
  return { runUuid, workflowId, stub, reply };
}

/** The start outbox's next attempt, now: the pending start made due, then the DO's alarm. */
export async function runStartOutboxAttempt(stub: ReturnType<typeof runStream>): Promise<void> {
  await runInDurableObject(stub, (_i, state) => state.storage.sql.exec("UPDATE run_start SET next_attempt_at = 0"));
  await runDurableObjectAlarm(stub);
}

/**
 * A `hello` run accepted while the host is unreachable (its start waiting in the DO's outbox,
 * `scheduled`), and `refuseForGood`, which has the host refuse the outbox's next attempt for good
 * and runs it: the run ends `failed` before Temporal ever had it. `restore` gives the host back.
 */
export async function runAcceptedWhileHostIsDown(organizationId: string) {
  let refuse = false;
  const restore = scriptHost((_request, path) => {
    if (path === HOST_PATHS.start && refuse)
      return Response.json({ error: { code: "workflow_not_found", message: "the workflow left the host's catalog" } }, { status: 404 });
    throw new TypeError("connection refused");
  });
  try {
    const started = await startHelloInItsDo(organizationId);
    const refuseForGood = async () => {
      refuse = true;
      await runStartOutboxAttempt(started.stub);
    };
    return { ...started, refuseForGood, restore };
  } catch (err) {
    restore();
    throw err;
  }
}

/**
 * The Workflow Runs API's stream of a run, as the organization's backend opens it (a JWT signed
 * with the edge tests' secret): `open` it by run UUID, from a Last-Event-ID; `runUuidOf` a workflow id.
 */
export async function workflowRunsStream(organizationId: string) {
  const token = await new SignJWT({ org_id: organizationId })
    .setProtectedHeader({ alg: "HS256" })
    .setExpirationTime("5m")
    .sign(new TextEncoder().encode("edge-test-jwt-secret-at-least-32-bytes-long"));
  return {
    open: (runUuid: string, lastEventId?: string) =>
      call(`/api/v1/workflow-runs/${runUuid}/stream`, {
        headers: { authorization: `Bearer ${token}`, ...(lastEventId ? { "last-event-id": lastEventId } : {}) },
      }),
    runUuidOf: async (workflowId: string) =>
      (await env.DB.prepare("SELECT id FROM runs WHERE temporal_workflow_id = ?").bind(workflowId).first<{ id: string }>())!.id,
  };
}
