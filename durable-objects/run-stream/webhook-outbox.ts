/**
 * Completion webhooks, sent from the run's side: a durable outbox in the DO's SQLite, worked by
 * the DO's alarm.
 *
 * - The D1 projection's finish statement says whether the organization has any endpoint at all
 *   (`noteFinished`); if not, nothing more happens for the run: no alarm, no query. If it has,
 *   the run is noted as due (META_KEY_WEBHOOKS_DUE): a reset that makes another run the latest
 *   before the alarm enqueues (or while a failed enqueue waits for its retry) does not lose the
 *   ended run's message.
 * - When the workflow has ended and D1 has its outcome, or a noted run is no longer the latest,
 *   `enqueue` reads the organization's endpoints (one D1 query, joined through the run's row, so
 *   only the run's own organization's endpoints can ever be chosen) and writes one outbox row per
 *   endpoint that wants the event.
 *   The message (`webhook-id`, body) is fixed then and never changes, so every attempt, after a
 *   DO reset or an edge restart too, sends the same `webhook-id` and body.
 * - An attempt first moves the row's next attempt (and the alarm) to the backoff time, then
 *   sends: if the DO is aborted or evicted mid-delivery, the alarm sends it again. At least once.
 * - Backoff: WEBHOOK_RETRY_BASE_MS (5 s) × 5^(n-1), at most 8 h: 5 s, 25 s, ~2 min, ~10 min,
 *   ~52 min, ~4.3 h, then every 8 h, the last retry at the end of WEBHOOK_RETRY_WINDOW_MS (24 h)
 *   after the first attempt (never later, whatever the backoff says); failed after that one. A
 *   receiver's `Retry-After` (at most 8 h) puts the next attempt later than the backoff would, never
 *   past the window's end; a 410 Gone gives the message up at once. Each attempt is logged in D1
 *   (`webhook_attempts`, read by GET /admin/v1/organizations/:orgId/webhooks/:id/deliveries).
 * - The endpoint's URL and secret are read at each attempt: a deleted endpoint stops receiving,
 *   a rotated secret signs the next attempt (and the replaced one beside it, until the rotation's
 *   overlap ends); the URL policy is checked again. The secret is stored
 *   encrypted (src/shared/secret-box.ts): one that does not decrypt (unknown key id, or a ciphertext
 *   copied from another row) is logged as that attempt's error and nothing is sent. A missing or
 *   malformed WEBHOOK_SECRET_KEYS is that too (`webhook_secret_keys_missing: …` in the attempt's
 *   error), and also an error line in the Worker's log; the delivery stays pending and is retried
 *   with backoff until the operator sets the secret (or the retry window ends: failed). A legacy
 *   plain secret, or one sealed under an older key, is sealed under the newest key as it is used
 *   (src/webhooks/secret-reseal.ts: the same secret, one conditional UPDATE, beside the send).
 * - Nothing here is awaited by `record`: deliveries run in the alarm, and outbound fetches let
 *   the DO serve its other requests meanwhile.
 */
import { positiveNumberVar } from "../../src/shared/positive-number-var.ts";
import { aggregate, type Attribute } from "../../src/shared/aggregations.ts";
import { openSecret, secretKeysProblem, webhookSecretAad } from "../../src/shared/secret-box.ts";
import { retryAfterMs } from "../../src/shared/retry-after.ts";
import { previousSecretSigns, resealOnUse } from "../../src/webhooks/secret-reseal.ts";
import { eventTypeForStatus, webhookHeaders } from "../../src/webhooks/signing.ts";
import { checkWebhookUrl } from "../../src/webhooks/address-check.ts";
import type { EventLog } from "./event-log.ts";
import { answeredErrorDetails } from "../../src/shared/error-details.ts";
import { rowError, rowErrorDetails, rowOutput } from "./row-limits.ts";
import type { RunOutcome } from "./messages.ts";
import type { Meta } from "./meta.ts";
import { META_KEYS } from "./constants.ts";

/** Storage schema version of this module's table (bump with a migration step when it changes). */
export const WEBHOOK_OUTBOX_SCHEMA_VERSION = 1;
export const DEFAULT_WEBHOOK_RETRY_BASE_MS = 5_000;
export const WEBHOOK_BACKOFF_FACTOR = 5;
export const MAX_WEBHOOK_RETRY_INTERVAL_MS = 8 * 60 * 60_000;
export const DEFAULT_WEBHOOK_RETRY_WINDOW_MS = 24 * 60 * 60_000;
export const DEFAULT_WEBHOOK_TIMEOUT_MS = 10_000;
/** The deliveries log's error for a message whose endpoint was deleted before it went out. */
export const ENDPOINT_DELETED_ERROR = "the endpoint was deleted: the delivery is given up";
/** A receiver's answer that the endpoint is gone for good (RFC 9110): the message is not sent again. */
const GONE_STATUS = 410;
/** The deliveries log's error for a message whose receiver answered 410 Gone. */
export const ENDPOINT_GONE_ERROR = "the endpoint answered 410 Gone: the delivery is given up";
/** Attempts sent at once by one alarm (the rest wait for the next). */
const MAX_PARALLEL_DELIVERIES = 10;

/** The outbox's table (created by storage.ts: with the current schema, or by the v2 → v3 migration). */
export const WEBHOOK_OUTBOX_TABLE = `CREATE TABLE IF NOT EXISTS webhook_outbox (
  delivery_id TEXT PRIMARY KEY,      -- message_id:endpoint_id
  message_id TEXT NOT NULL,          -- the webhook-id header
  endpoint_id TEXT NOT NULL,
  organization_id TEXT NOT NULL,
  event_type TEXT NOT NULL,
  workflow_id TEXT NOT NULL,
  body TEXT NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0,
  first_attempt_at INTEGER,
  next_attempt_at INTEGER NOT NULL,
  state TEXT NOT NULL,               -- pending | delivered | failed
  schema_version INTEGER NOT NULL DEFAULT ${WEBHOOK_OUTBOX_SCHEMA_VERSION}
)`;

/** Meta key: `webhooks:<runId>` is "1" once that run's messages are in the outbox, "none" when its organization has no endpoint. */
export const webhooksQueuedKey = (runId: string) => `webhooks:${runId}`;
/** Meta key: the runs (a JSON array of run ids) whose end D1 has and whose messages are not in the outbox yet. */
const META_KEY_WEBHOOKS_DUE = "webhooksDue";
/** Meta key: a run accepted, then refused for good before it started (JSON NeverStartedRun): it ended `failed` in D1 only. */
const META_KEY_NEVER_STARTED = "webhooksNeverStarted";

/** A run whose start Temporal refused for good after the edge accepted it: no log, no Temporal run id. */
export interface NeverStartedRun {
  workflowId: string;
  /** The run's UUID (its accept id): names its message, as a Temporal run id names the others'. */
  acceptId: string;
  error: string;
  at: string;
}

/** A run's end to send: `key` names it (its Temporal run id, or a never-started run's accept id). */
interface DueMessage {
  key: string;
  workflowId: string;
  runId: string | null;
  outcome: Pick<RunOutcome, "status" | "output" | "error" | "errorDetails">;
  at: string | null;
}

/** What an attempt reads of its endpoint. */
interface EndpointRow {
  url: string;
  secret: string;
  previous_secret: string | null;
  previous_secret_expires_at: string | null;
}

interface OutboxRow extends Record<string, SqlStorageValue> {
  delivery_id: string;
  message_id: string;
  endpoint_id: string;
  organization_id: string;
  event_type: string;
  workflow_id: string;
  body: string;
  attempts: number;
  first_attempt_at: number | null;
  next_attempt_at: number;
  state: string;
}

/** The wait after the n-th failed attempt (1-based). */
export function webhookRetryDelay(attempt: number, baseMs = DEFAULT_WEBHOOK_RETRY_BASE_MS): number {
  return Math.min(baseMs * WEBHOOK_BACKOFF_FACTOR ** Math.min(attempt - 1, 20), MAX_WEBHOOK_RETRY_INTERVAL_MS);
}

async function messageIdFor(workflowId: string, runId: string, type: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(`${workflowId}\u0000${runId}\u0000${type}`));
  return `msg_${[...new Uint8Array(digest)]
    .slice(0, 16)
    .map((b) => b.toString(16).padStart(2, "0"))
    .join("")}`;
}

export interface WebhookOutboxDeps {
  sql: SqlStorage;
  storage: DurableObjectStorage;
  env: Env;
  log: EventLog;
  meta: Meta;
  /** The workflow's final outcome once it has ended and D1 has it; null before. */
  endedRun(): RunOutcome | null;
}

export class WebhookOutbox {
  /** Whether the outbox may hold pending rows (null: not read yet this wake). */
  private pending: boolean | null;
  /**
   * Failed tries at enqueueing the ended run's messages (a D1 error looking up its endpoints), and
   * when to try again: backed off as deliveries are, so a D1 outage does not spin the alarm.
   * In memory: a DO that restarts tries once more at once, then backs off again.
   */
  private enqueueFailures = 0;
  private enqueueRetryAt = 0;

  /** `fresh`: the DO was just created, so its outbox is empty (no query needed to know). */
  constructor(
    private readonly deps: WebhookOutboxDeps,
    fresh = false,
  ) {
    this.pending = fresh ? false : null;
  }

  private get baseMs() {
    return positiveNumberVar(this.deps.env.WEBHOOK_RETRY_BASE_MS, DEFAULT_WEBHOOK_RETRY_BASE_MS);
  }

  private get windowMs() {
    return positiveNumberVar(this.deps.env.WEBHOOK_RETRY_WINDOW_MS, DEFAULT_WEBHOOK_RETRY_WINDOW_MS);
  }

  private notedDue(): string[] {
    return JSON.parse(this.deps.meta.get(META_KEY_WEBHOOKS_DUE) || "[]") as string[];
  }

  /**
   * The ended runs whose messages are not in the outbox yet: the workflow's latest run once it has
   * ended (its history complete, so its message has what its steps reported), and the noted runs
   * that a reset has made earlier ones since; or, in a DO whose run never started, that run's.
   */
  private dueMessages(workflowId: string | null): DueMessage[] {
    const { meta, log } = this.deps;
    const never = this.neverStarted();
    if (never) {
      if (meta.get(webhooksQueuedKey(never.acceptId)) !== null) return [];
      const outcome = { status: "failed" as const, error: never.error };
      return [{ key: never.acceptId, workflowId: never.workflowId, runId: null, outcome, at: never.at }];
    }
    if (workflowId === null) return [];
    const ended = this.deps.endedRun();
    const latest = log.latestRunId();
    const runIds = new Set([...this.notedDue().filter((runId) => runId !== latest), ...(ended ? [ended.runId] : [])]);
    return [...runIds]
      .filter((runId) => meta.get(webhooksQueuedKey(runId)) === null)
      .flatMap((runId) => {
        const outcome = log.finished(runId);
        return outcome ? [{ key: runId, workflowId, runId, outcome, at: log.finishedAt(runId) }] : [];
      });
  }

  private neverStarted(): NeverStartedRun | null {
    const stored = this.deps.meta.get(META_KEY_NEVER_STARTED);
    return stored ? (JSON.parse(stored) as NeverStartedRun) : null;
  }

  private enqueueDue(): boolean {
    return this.dueMessages(this.deps.meta.get(META_KEYS.workflowId)).length > 0;
  }

  /**
   * The run was accepted, then refused for good before it started (run-starter.ts): D1 says it
   * failed, and nothing of it ever reaches the log. Its `run.failed` is due all the same (with
   * `runId: null`); the next alarm queues it.
   */
  noteNeverStarted(run: NeverStartedRun): void {
    if (!this.neverStarted()) this.deps.meta.set(META_KEY_NEVER_STARTED, JSON.stringify(run));
  }

  /**
   * From the D1 projection, once a run's end is in D1: the finish statement also says whether the
   * organization has any endpoint. Without one there is nothing to enqueue, so no alarm and no
   * lookup for this run; with one, the run is due until its messages are in the outbox.
   */
  noteFinished(runId: string, hasWebhooks: boolean): void {
    const { meta } = this.deps;
    if (!hasWebhooks) meta.set(webhooksQueuedKey(runId), "none");
    else if (meta.get(webhooksQueuedKey(runId)) === null && !this.notedDue().includes(runId))
      meta.set(META_KEY_WEBHOOKS_DUE, JSON.stringify([...this.notedDue(), runId]));
  }

  private nextDue(): number | null {
    if (this.pending === false) return null; // known empty: no query on every change to the log
    const at =
      this.deps.sql
        .exec<{ at: number | null }>("SELECT MIN(next_attempt_at) AS at FROM webhook_outbox WHERE state = 'pending'")
        .toArray()[0]?.at ?? null;
    this.pending = at !== null;
    return at;
  }

  /** Brings the alarm forward to the outbox's next due time (never later than what is set). */
  async arm(): Promise<void> {
    const next = this.nextDue();
    const due = this.enqueueDue() ? Math.min(Math.max(Date.now(), this.enqueueRetryAt), next ?? Number.POSITIVE_INFINITY) : next;
    if (due === null) return;
    const current = await this.deps.storage.getAlarm();
    if (current === null || current > due) await this.deps.storage.setAlarm(due);
  }

  /**
   * The alarm's part: enqueue the ended runs' messages, then send what is due. Never throws.
   * `workflowId`: null when nothing reached the log (a run that never started).
   */
  async work(workflowId: string | null): Promise<void> {
    try {
      const messages = this.dueMessages(workflowId);
      if (messages.length > 0 && Date.now() >= this.enqueueRetryAt) {
        try {
          for (const message of messages) await this.enqueue(message);
          this.enqueueFailures = 0;
        } catch (err) {
          this.enqueueFailures++;
          this.enqueueRetryAt = Date.now() + webhookRetryDelay(this.enqueueFailures, this.baseMs);
          console.warn(
            JSON.stringify({
              level: "warn",
              message: "webhook outbox: enqueue failed, retried later",
              workflowId,
              failures: this.enqueueFailures,
              error: String(err),
            }),
          );
        }
      }
      const due = this.deps.sql
        .exec<OutboxRow>(
          "SELECT * FROM webhook_outbox WHERE state = 'pending' AND next_attempt_at <= ? ORDER BY next_attempt_at LIMIT ?",
          Date.now(),
          MAX_PARALLEL_DELIVERIES,
        )
        .toArray();
      // Each attempt to its end: one that throws does not leave the others unawaited.
      for (const failed of (await Promise.allSettled(due.map((row) => this.attempt(row)))).filter((r) => r.status === "rejected"))
        console.warn(JSON.stringify({ level: "warn", message: "webhook attempt", workflowId, error: String(failed.reason) }));
    } catch (err) {
      this.pending = null;
      console.warn(JSON.stringify({ level: "warn", message: "webhook outbox", workflowId, error: String(err) }));
    }
  }

  private async enqueue(message: DueMessage): Promise<void> {
    const { key, workflowId, outcome } = message;
    const type = eventTypeForStatus(outcome.status);
    const { env, sql, meta, log } = this.deps;
    if (type) {
      const rows = await env.DB.prepare(
        `SELECT r.organization_id AS organization_id, r.workflow_name AS workflow_name, e.id AS endpoint_id, e.events AS events
         FROM runs r JOIN webhook_endpoints e ON e.organization_id = r.organization_id AND e.deleted_at IS NULL
         WHERE r.temporal_workflow_id = ?`,
      )
        .bind(workflowId)
        .all<{ organization_id: string; workflow_name: string; endpoint_id: string; events: string }>();
      const endpoints = rows.results.filter((r) => (JSON.parse(r.events) as string[]).includes(type));
      if (endpoints.length > 0) {
        const messageId = await messageIdFor(workflowId, key, type);
        // Usage as the run's result counts it (EventLog.usageAttributes): a message queued late (a
        // failed lookup, a late alarm) must not count the usage of a run a reset started since.
        const attributes = log.usageAttributes(message.runId).map((r) => r.data.attribute) as Attribute[];
        const output = rowOutput(outcome.output);
        const error = rowError(outcome.error);
        const body = JSON.stringify({
          type,
          timestamp: message.at ?? new Date().toISOString(),
          data: {
            workflowId,
            runId: message.runId,
            workflowName: endpoints[0]!.workflow_name,
            status: outcome.status,
            // An output too large for the run's row is too large for a message too (it is kept in
            // the DO's storage until delivered): the receiver reads it from the API instead.
            ...(output.inLog ? { output: null, outputOmitted: true } : { output: outcome.output ?? null }),
            error,
            errorDetails: answeredErrorDetails(outcome.status, rowErrorDetails(outcome.errorDetails), error),
            aggregations: aggregate(attributes),
          },
        });
        const now = Date.now();
        this.pending = true;
        for (const endpoint of endpoints) {
          sql.exec(
            `INSERT OR IGNORE INTO webhook_outbox (delivery_id, message_id, endpoint_id, organization_id, event_type, workflow_id, body, next_attempt_at, state)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'pending')`,
            `${messageId}:${endpoint.endpoint_id}`,
            messageId,
            endpoint.endpoint_id,
            endpoint.organization_id,
            type,
            workflowId,
            body,
            now,
          );
        }
      }
    }
    meta.set(webhooksQueuedKey(key), "1");
    const due = this.notedDue().filter((runId) => runId !== key);
    meta.set(META_KEY_WEBHOOKS_DUE, due.length > 0 ? JSON.stringify(due) : "");
  }

  private async attempt(row: OutboxRow): Promise<void> {
    const { env, sql, storage } = this.deps;
    const now = Date.now();
    const attempt = row.attempts + 1;
    const firstAt = row.first_attempt_at ?? now;
    // The backoff, but never past the window's end: the last retry is at the window's end, not
    // one backoff step (up to 8 h) after it. An attempt at or past the end (the last) keeps the
    // backoff: its next attempt time is only for a DO that goes away mid-send, never in the past.
    const backoffAt = now + webhookRetryDelay(attempt, this.baseMs);
    const windowEnd = firstAt + this.windowMs;
    let retryAt = now >= windowEnd ? backoffAt : Math.min(backoffAt, windowEnd);
    // Before sending: if this DO goes away mid-delivery, the alarm sends the same message again.
    sql.exec(
      "UPDATE webhook_outbox SET attempts = ?, first_attempt_at = ?, next_attempt_at = ? WHERE delivery_id = ?",
      attempt,
      firstAt,
      retryAt,
      row.delivery_id,
    );
    const current = await storage.getAlarm();
    if (current === null || current > retryAt) await storage.setAlarm(retryAt);

    let endpoint: EndpointRow | null;
    try {
      endpoint = await env.DB.prepare(
        "SELECT url, secret, previous_secret, previous_secret_expires_at FROM webhook_endpoints WHERE id = ? AND organization_id = ? AND deleted_at IS NULL",
      )
        .bind(row.endpoint_id, row.organization_id)
        .first<EndpointRow>();
    } catch (err) {
      // D1 could not say where to send: an attempt that failed like any other (retried within the
      // window, then given up), and logged as one.
      await this.conclude(row, { attempt, now, firstAt, retryAt }, null, `the endpoint could not be read: ${String(err)}`);
      return;
    }
    if (!endpoint) {
      // Deleted since the message was queued: given up, and said so in the deliveries log (else
      // its last row would be a "retrying" whose next attempt never comes).
      sql.exec("UPDATE webhook_outbox SET state = 'failed' WHERE delivery_id = ?", row.delivery_id);
      await this.logAttempt(row, attempt, now, { status: "failed", responseStatus: null, error: ENDPOINT_DELETED_ERROR });
      return;
    }
    let responseStatus: number | null = null;
    let givenUp = false;
    // Checked again: the configuration may have changed, and its DNS moved to a private address.
    const url = await checkWebhookUrl(endpoint.url, env);
    let error: string | null = url.verdict === "public" ? null : url.problem;
    if (url.verdict === "misconfigured")
      // The operator's to fix, for every endpoint: said loudly; the attempt is logged and retried as any failed one.
      console.error(
        JSON.stringify({
          level: "error",
          message: "webhook delivery failed: WEBHOOK_DNS_RESOLVER",
          detail: url.problem,
          deliveryId: row.delivery_id,
          organizationId: row.organization_id,
          endpointId: row.endpoint_id,
        }),
      );
    let secret: string | null = null;
    let previous: string | null = null;
    let sealing: Promise<void> | null = null;
    if (error === null) {
      try {
        secret = await openSecret(env.WEBHOOK_SECRET_KEYS, endpoint.secret, webhookSecretAad(row.organization_id, row.endpoint_id));
        previous = await this.previousSecret(row, endpoint, now);
        // A legacy plain value (or one under an older key) is sealed in place, beside the send, not before it.
        sealing = resealOnUse(
          env,
          row.organization_id,
          row.endpoint_id,
          {
            secret: endpoint.secret,
            previousSecret: endpoint.previous_secret,
            previousSecretExpiresAt: endpoint.previous_secret_expires_at,
          },
          now,
        );
      } catch (err) {
        const keys = secretKeysProblem(err);
        error = `the signing secret could not be read: ${err instanceof Error ? err.message : String(err)}`;
        if (keys) {
          // The operator's to fix, for every endpoint: said loudly; the delivery stays pending and is retried.
          error = `${keys.code}: ${keys.message}; the delivery is retried until then`;
          console.error(
            JSON.stringify({
              level: "error",
              message: "webhook delivery held: WEBHOOK_SECRET_KEYS",
              code: keys.code,
              detail: keys.message,
              deliveryId: row.delivery_id,
              organizationId: row.organization_id,
              endpointId: row.endpoint_id,
            }),
          );
        }
      }
    }
    if (error === null && secret !== null) {
      try {
        const response = await fetch(endpoint.url, {
          method: "POST",
          headers: await webhookHeaders(previous === null ? [secret] : [secret, previous], row.message_id, row.body, now),
          body: row.body,
          redirect: "manual",
          signal: AbortSignal.timeout(positiveNumberVar(env.WEBHOOK_TIMEOUT_MS, DEFAULT_WEBHOOK_TIMEOUT_MS)),
        });
        responseStatus = response.status;
        // The status is the receiver's answer; its body is never read. A body that then breaks off
        // (the connection dropped after a 2xx) must not turn a delivery into a retry: a second send.
        await response.body?.cancel().catch(() => undefined);
        if (response.status === GONE_STATUS) {
          error = ENDPOINT_GONE_ERROR;
          givenUp = true;
        } else if (response.status < 200 || response.status > 299) {
          error = `the endpoint answered ${response.status}`;
          // A receiver that asks for a pause (429, 503) gets it: the next attempt is no sooner.
          const asked = retryAfterMs((name) => response.headers.get(name), MAX_WEBHOOK_RETRY_INTERVAL_MS, now);
          if (asked !== undefined && now + asked > retryAt) retryAt = now >= windowEnd ? now + asked : Math.min(now + asked, windowEnd);
        }
      } catch (err) {
        error =
          err instanceof Error && err.name === "TimeoutError"
            ? "no answer within the timeout"
            : `could not reach the endpoint: ${String(err)}`;
      }
    }
    await this.conclude(row, { attempt, now, firstAt, retryAt, givenUp }, responseStatus, error);
    await sealing; // never rejects (a failure is a WARN line; the next attempt tries again)
  }

  /**
   * The secret a rotation replaced, while it still signs beside the current one; null past its
   * time, or when it cannot be opened (a key since dropped from WEBHOOK_SECRET_KEYS): the current
   * secret's signature goes out alone then, and a WARN line says why.
   */
  private async previousSecret(row: OutboxRow, endpoint: EndpointRow, now: number): Promise<string | null> {
    if (endpoint.previous_secret === null || !previousSecretSigns(endpoint.previous_secret_expires_at, now)) return null;
    try {
      return await openSecret(
        this.deps.env.WEBHOOK_SECRET_KEYS,
        endpoint.previous_secret,
        webhookSecretAad(row.organization_id, row.endpoint_id),
      );
    } catch (err) {
      console.warn(
        JSON.stringify({
          level: "warn",
          message: "webhook signed with the current secret only: the previous one could not be read",
          endpointId: row.endpoint_id,
          organizationId: row.organization_id,
          error: err instanceof Error ? err.message : String(err),
        }),
      );
      return null;
    }
  }

  /** An attempt's outcome: delivered, retried (within the window since the first attempt), or given up; and its row in the deliveries log. */
  private async conclude(
    row: OutboxRow,
    timing: { attempt: number; now: number; firstAt: number; retryAt: number; givenUp?: boolean },
    responseStatus: number | null,
    error: string | null,
  ): Promise<void> {
    const { attempt, now, firstAt, retryAt, givenUp = false } = timing;
    // An attempt made once the window has ended (the one at its end, or a late alarm's) is the last.
    const status = error === null ? "succeeded" : !givenUp && now < firstAt + this.windowMs ? "retrying" : "failed";
    const { sql } = this.deps;
    // A retry later than the one set before sending (the receiver's Retry-After): the row says when.
    if (status === "retrying") sql.exec("UPDATE webhook_outbox SET next_attempt_at = ? WHERE delivery_id = ?", retryAt, row.delivery_id);
    // A delivered message is never sent again: its body (up to about 850 KB with a run's output) is
    // not kept in the run's storage for good; the row stays, so a requeue of the run's end is ignored.
    if (status === "succeeded") sql.exec("UPDATE webhook_outbox SET state = 'delivered', body = '' WHERE delivery_id = ?", row.delivery_id);
    if (status === "failed") sql.exec("UPDATE webhook_outbox SET state = 'failed' WHERE delivery_id = ?", row.delivery_id);
    await this.logAttempt(row, attempt, now, { status, responseStatus, error, ...(status === "retrying" ? { retryAt } : {}) });
  }

  /** One row of the deliveries log (D1 `webhook_attempts`) for this attempt; a failure to write it is a WARN line. */
  private async logAttempt(
    row: OutboxRow,
    attempt: number,
    now: number,
    outcome: { status: "succeeded" | "retrying" | "failed"; responseStatus: number | null; error: string | null; retryAt?: number },
  ): Promise<void> {
    const { status, responseStatus, error, retryAt } = outcome;
    try {
      await this.deps.env.DB.prepare(
        `INSERT OR REPLACE INTO webhook_attempts (id, endpoint_id, organization_id, message_id, event_type, workflow_id, attempt, status, response_status, error, attempted_at, next_attempt_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      )
        .bind(
          `${row.delivery_id}:${attempt}`,
          row.endpoint_id,
          row.organization_id,
          row.message_id,
          row.event_type,
          row.workflow_id,
          attempt,
          status,
          responseStatus,
          error,
          new Date(now).toISOString(),
          retryAt === undefined ? null : new Date(retryAt).toISOString(),
        )
        .run();
    } catch (err) {
      console.warn(
        JSON.stringify({ level: "warn", message: "webhook attempt not logged", deliveryId: row.delivery_id, error: String(err) }),
      );
    }
  }

  /** Outbox rows (tests and diagnostics). */
  rows(): Array<{ messageId: string; endpointId: string; state: string; attempts: number; nextAttemptAt: number; bodyChars: number }> {
    return this.deps.sql
      .exec<OutboxRow>("SELECT * FROM webhook_outbox ORDER BY delivery_id")
      .toArray()
      .map((r) => ({
        messageId: r.message_id,
        endpointId: r.endpoint_id,
        state: r.state,
        attempts: r.attempts,
        nextAttemptAt: r.next_attempt_at,
        bodyChars: r.body.length,
      }));
  }
}
