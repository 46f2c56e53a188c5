/**
 * What activities need beyond their arguments: where to publish run events (attributes, thinking
 * text), prices, and LLM configuration. Installed once per worker (host/worker.ts).
 *
 * Events are keyed by run, activity and attempt, so a retried push is dropped at the edge while a
 * retried attempt records its own (its calls were made, and cost, again).
 */
import { AsyncLocalStorage } from "node:async_hooks";
import { Context } from "@temporalio/activity";
import type { RunEnvs } from "../run-envs.ts";
import type { Attribute } from "../../src/shared/aggregations.ts";
import type { RunEvent, RunEventOf } from "../../src/shared/host-api.ts";
import { issueText } from "../../src/errors.ts";
import { zodIssues } from "../../src/middleware/json-body/index.ts";
import { attributeSchema } from "../../src/shared/run-event-schema.ts";
import type { RunEventSink } from "../run-event-journal.ts";
import type { LlmConfig } from "../llm/models.ts";
import type { PriceTable } from "../llm/pricing.ts";
import type { OutboundPolicy } from "./outbound-guard.ts";

export interface ActivityRuntime {
  /** Where run events go: the host's journal in front of the EdgeClient (host/run-event-journal.ts). */
  edge: RunEventSink;
  prices: PriceTable;
  llm: LlmConfig;
  /** USD charged per outbound HTTP request made through the HTTP helper (0: count only). */
  httpRequestCost: number;
  /** The SSRF guard's policy for outbound HTTP (absent: the defaults, no allow-list). */
  outbound?: OutboundPolicy;
  /** Where a run's environment overrides come from (absent: none). */
  envs?: RunEnvs;
  /** How long a step waits for its events to reach the edge (absent: DELIVERY_WAIT_MS). */
  deliveryWaitMs?: number;
}

/**
 * How long a step waits for its events (its end, its usage) to reach the edge. Usually that is
 * milliseconds; while the edge is down the push goes on retrying in the background (the host's
 * run event journal keeps the events, and delivers them later if the host restarts) and the step
 * ends anyway. Waiting out the push's retries (minutes) would time out the attempt, and Temporal
 * would run it again: its provider calls and fetches too, paid again, for an outage of the API in
 * front of them.
 */
export const DELIVERY_WAIT_MS = 10_000;

/**
 * How long each attempt has waited for the edge so far, keyed by the attempt's activity Context
 * (one per attempt): the waits of one attempt share one DELIVERY_WAIT_MS, however many events it
 * publishes. A step that fetches thirty pages while the edge is down would otherwise wait 10 s
 * after each, and outlast its start-to-close timeout; Temporal would then run it, and pay for
 * it, again.
 */
const deliveryWaited = new WeakMap<Context, number>();

/**
 * Waits for `delivery`, at most what is left of the current attempt's `budgetMs` of waiting for
 * the edge (nothing, once an outage has used it up: the push goes on behind the step).
 */
export async function waitForDelivery(delivery: Promise<void>, budgetMs: number): Promise<void> {
  const attempt = Context.current();
  const waited = deliveryWaited.get(attempt) ?? 0;
  const startedAt = Date.now();
  let timer: ReturnType<typeof setTimeout> | undefined;
  await Promise.race([delivery, new Promise<void>((resolve) => (timer = setTimeout(resolve, Math.max(0, budgetMs - waited))))]);
  clearTimeout(timer);
  deliveryWaited.set(attempt, (deliveryWaited.get(attempt) ?? 0) + (Date.now() - startedAt));
}

/**
 * A step heartbeats this often while it waits on the outside world (a model's stream, a fetch).
 * Temporal tells an activity that it was cancelled (its run cancelled, terminated or timed out)
 * only in its answer to a heartbeat; the worker passes heartbeats on at most every few seconds
 * (host/worker.ts).
 */
export const STEP_HEARTBEAT_MS = 1_000;

/**
 * Runs `work` heartbeating every STEP_HEARTBEAT_MS, so that a cancelled attempt hears of it and
 * its `cancellationSignal` (which `work` should pass on to what it waits for) aborts.
 */
export async function heartbeating<T>(work: () => Promise<T>): Promise<T> {
  const activity = Context.current();
  activity.heartbeat();
  const heartbeats = setInterval(() => activity.heartbeat(), STEP_HEARTBEAT_MS);
  try {
    return await work();
  } finally {
    clearInterval(heartbeats);
  }
}

const envOverrides = new AsyncLocalStorage<Record<string, string>>();

/** Runs an activity attempt with its run's environment overrides (the step-events interceptor does). */
export function withEnvOverrides<T>(envs: Record<string, string>, fn: () => Promise<T>): Promise<T> {
  return envOverrides.run(envs, fn);
}

/** An environment variable as the current run sees it: its override, else the host's own. */
export function activityEnv(name: string): string | undefined {
  const overrides = envOverrides.getStore();
  return overrides && Object.hasOwn(overrides, name) ? overrides[name] : process.env[name];
}

let runtime: ActivityRuntime | undefined;

/** The attempt's budget for waiting on the edge: the runtime's, else DELIVERY_WAIT_MS. */
export function deliveryWaitMs(): number {
  return runtime?.deliveryWaitMs ?? DELIVERY_WAIT_MS;
}

export function installActivityRuntime(r: ActivityRuntime): void {
  runtime = r;
}

export function activityRuntime(): ActivityRuntime {
  if (!runtime) throw new Error("activity runtime not installed (host/worker.ts installs it)");
  return runtime;
}

/**
 * The last sequence number of each attempt's events, keyed by its activity Context (one per
 * attempt): one count for all of the attempt's publishers (the interceptor's, a model call's, each
 * call of the HTTP helper with a publisher of its own). A count per publisher gave two of them the
 * same source key, and the edge, which drops an event whose key it has, dropped the second
 * one's events: a request or a model call's usage never charged.
 */
const attemptSequences = new WeakMap<Context, number>();

/**
 * Publishes events of the current activity attempt, in order: each is handed to the EdgeClient at
 * once, which delivers a run's events in the order it got them (one push of a run on the wire at
 * a time). Not one push after another: while the edge is down, an attempt's events wait together
 * for it to come back, instead of each waiting out the retries of the one before.
 */
export class StepPublisher {
  private delivered: Promise<void> = Promise.resolve();
  private readonly attempt = Context.current();
  private readonly info = this.attempt.info;
  private readonly execution = (() => {
    const execution = this.info.workflowExecution;
    if (!execution) throw new Error("StepPublisher needs an activity started by a workflow");
    return execution;
  })();

  /** The attempt's part of every step event's data. */
  private context() {
    const { activityId, attempt, activityType } = this.info;
    return { runId: this.execution.runId, activityId, stepName: activityType, attempt };
  }

  /** The attempt's next sequence number, counted across all of its publishers (attemptSequences). */
  private nextSequence(): number {
    const next = (attemptSequences.get(this.attempt) ?? 0) + 1;
    attemptSequences.set(this.attempt, next);
    return next;
  }

  private key(type: RunEvent["type"], key: string | number = this.nextSequence()): string {
    return `${type}:${this.execution.runId}:${this.info.activityId}:${this.info.attempt}:${key}`;
  }

  /** Resolves once the event, and every one published before it, was delivered or given up (logged, not fatal to the step). */
  private push(event: RunEvent): Promise<void> {
    const { edge } = activityRuntime();
    // The handler below lives as long as the push: hours, for a row waiting in the journal's file
    // through an outage. It holds the event's name only, not the event (a step's end may carry
    // MiBs of outputs): holding it kept every waiting row in memory, past the journal's bound.
    const what = `${event.type} for ${this.info.activityId}`;
    const sent = edge
      .pushRunEvents(this.execution.workflowId, [event])
      .catch((err) => console.warn(`could not publish ${what}: ${String(err)}`));
    this.delivered = Promise.all([this.delivered, sent]).then(() => undefined);
    return this.delivered;
  }

  private now = () => new Date().toISOString();

  /**
   * Throws, before anything is sent, for an attribute the edge would refuse (an `llm:usage` or
   * `http:request` without a field the run's totals are summed from): the step that made it
   * fails with the field named, where its author sees it, instead of a push given up in a log.
   */
  attribute(attribute: Attribute): Promise<void> {
    const checked = attributeSchema.safeParse(attribute);
    if (!checked.success) {
      const issues = issueText(zodIssues(checked.error), (i) => `${i.path || "(attribute)"}: ${i.message}`);
      throw new Error(`the ${String(attribute.type)} attribute cannot be recorded: ${issues}`);
    }
    const event: RunEventOf<"attribute"> = {
      sourceKey: this.key("attribute"),
      type: "attribute",
      at: this.now(),
      data: { ...this.context(), attribute: { ...attribute } },
    };
    return this.push(event);
  }

  thinking(text: string): Promise<void> {
    return this.push({ sourceKey: this.key("thinking"), type: "thinking", at: this.now(), data: { ...this.context(), text } });
  }

  /**
   * The step's own lifecycle: `started` when an attempt begins, `completed` or `failed` when it
   * ends. Temporal records no history event for a retried attempt until the activity finally
   * ends, so these are what show attempts while they happen.
   */
  step(
    state: "started" | "completed" | "failed",
    details: Pick<RunEventOf<"step">["data"], "outputs" | "outputsOmitted" | "outputsSize" | "error"> = {},
  ): Promise<void> {
    return this.push({ sourceKey: this.key("step", state), type: "step", at: this.now(), data: { ...this.context(), state, ...details } });
  }

  /** A piece of the step's answer, for clients that stream it as it is generated. */
  text(delta: string): Promise<void> {
    return this.push({ sourceKey: this.key("text"), type: "text", at: this.now(), data: { ...this.context(), delta } });
  }

  /** Resolves when everything published so far has been delivered (or given up). */
  flush(): Promise<void> {
    return this.delivered;
  }

  /**
   * `flush`, waited for at most what is left of the attempt's delivery wait (DELIVERY_WAIT_MS, for
   * all its waits together): what a step awaits before it ends. Its usage then usually reaches the
   * edge before its end, so the run's end is charged for it; after a longer outage it arrives
   * later, from the journal (docs/credits.md).
   */
  settled(): Promise<void> {
    return waitForDelivery(this.delivered, deliveryWaitMs());
  }
}
