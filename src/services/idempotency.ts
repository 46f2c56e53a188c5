/**
 * Claiming an `Idempotency-Key` for a start (see src/middleware/idempotency for the header).
 *
 * The claim is one D1 statement at the beginning of the start, inside the run's DO
 * (durable-objects/run-stream/run-starter.ts), so in the home region next to D1: an INSERT keyed by
 * (organization, key) that only takes over a row past its 24 h, RETURNING the row that holds the
 * key afterwards. Of any number of concurrent requests with one key exactly one sees its own
 * workflowId come back and starts the run; every other one resolves the holder's run:
 *
 * - a different fingerprint (route or body): 422 `idempotency_key_reused`;
 * - the same request whose run has no row yet (its start is still before acceptance: catalog,
 *   credits): 409 `idempotency_key_in_use` with Retry-After;
 * - else a replay: the first request's run (same workflowId and runId; `runId` is null, as it was
 *   for the first request, while an accepted run waits for Temporal to confirm it), with
 *   `Idempotent-Replayed: true`. A row that is `scheduled` with no run id is replayed only once
 *   its start is settled in its DO (run-starter.ts `isSettledStart`): until then the first
 *   request may still be refused, or its DO have gone away half-way, and the answer is the 409.
 *
 * A start that fails (no credits, host down, ...) releases the key with its undo, so the client's
 * retry with the same key is a fresh attempt, as Stripe does for requests that never ran. A claim
 * left behind by a Worker that died before writing the run row is taken over after
 * ABANDONED_CLAIM_MS.
 */
import { ApiError } from "../errors.ts";
import { findRunByWorkflowId } from "../db/runs.ts";
import type { RunStatus } from "../shared/run-status.ts";

/**
 * What a start path needs to claim the key (the middleware makes it from the header and the
 * request); `replayed` is set by the claim when it replays.
 */
export interface IdempotencyRequest {
  key: string;
  fingerprint: string;
  replayed: boolean;
}

export const IDEMPOTENCY_KEY_TTL_MS = 24 * 60 * 60_000;
/** A claim with no run row after this long belonged to a start that died before writing it. */
export const ABANDONED_CLAIM_MS = 60_000;

const SWEEP_PROBABILITY = 0.01;

export interface ReplayedRun {
  workflowId: string;
  runId: string | null;
  status: RunStatus;
  /** Our run id (the D1 row's UUID). */
  id: string;
  /** A prompt run's webSearch flag at its start (null: a code run, or a row from before migration 0022). */
  promptWebSearch: boolean | null;
}

/** The claim statement: after it ran, the row holding (organization, key) is returned. */
/** The start a key is claimed for: its Temporal workflow id and its run UUID (which tells starts apart). */
export interface ClaimingStart {
  workflowId: string;
  runUuid: string;
}

interface Holder {
  fingerprint: string;
  workflow_id: string;
  run_uuid: string;
  created_at: string;
}

export function claimStatement(
  d1: D1Database,
  organizationId: string,
  request: IdempotencyRequest,
  start: ClaimingStart,
  now = Date.now(),
): D1PreparedStatement {
  return d1
    .prepare(
      `INSERT INTO idempotency_keys (organization_id, key, fingerprint, workflow_id, run_uuid, expires_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
       ON CONFLICT (organization_id, key) DO UPDATE SET fingerprint = excluded.fingerprint, workflow_id = excluded.workflow_id,
         run_uuid = excluded.run_uuid, expires_at = excluded.expires_at, created_at = strftime('%Y-%m-%dT%H:%M:%fZ','now')
       WHERE idempotency_keys.expires_at < ?7
       RETURNING fingerprint, workflow_id, run_uuid, created_at`,
    )
    .bind(organizationId, request.key, request.fingerprint, start.workflowId, start.runUuid, now + IDEMPOTENCY_KEY_TTL_MS, now);
}

/** Gives the key back (the start it was claimed for was refused). */
export function releaseStatement(d1: D1Database, organizationId: string, key: string, runUuid: string): D1PreparedStatement {
  return d1
    .prepare("DELETE FROM idempotency_keys WHERE organization_id = ? AND key = ? AND run_uuid = ?")
    .bind(organizationId, key, runUuid);
}

/**
 * Claims the key for `start`. Returns null when this request holds it (go on and start), or the
 * run to replay; throws 422 / 409 as described above.
 */
export async function claimIdempotencyKey(
  d1: D1Database,
  organizationId: string,
  request: IdempotencyRequest,
  start: ClaimingStart,
): Promise<ReplayedRun | null> {
  const now = Date.now();
  // Rows past their 24 h are taken over by the claim; the rest are swept now and then.
  if (Math.random() < SWEEP_PROBABILITY) await d1.prepare("DELETE FROM idempotency_keys WHERE expires_at < ?").bind(now).run();
  let holder = await claimStatement(d1, organizationId, request, start, now).first<Holder>();
  if (!holder) {
    // Conflict with a live row: RETURNING gives nothing, read it.
    holder = await d1
      .prepare("SELECT fingerprint, workflow_id, run_uuid, created_at FROM idempotency_keys WHERE organization_id = ? AND key = ?")
      .bind(organizationId, request.key)
      .first<Holder>();
    // Deleted in between (its start was refused): try once more.
    if (!holder) holder = await claimStatement(d1, organizationId, request, start, now).first<Holder>();
    if (!holder) throw idempotencyKeyInUse();
  }
  if (holder.run_uuid === start.runUuid) return null;
  if (holder.fingerprint !== request.fingerprint) {
    throw new ApiError(
      "idempotency_key_reused",
      "this Idempotency-Key was used for a different request (route or body) in the last 24 hours; use a new key for a new request",
    );
  }
  const found = await findRunByWorkflowId(d1, organizationId, holder.workflow_id);
  // A caller-chosen workflowId may name another start's row: only the holder's own run counts.
  const run = found && found.id === holder.run_uuid ? found : null;
  if (!run) {
    if (now - Date.parse(holder.created_at) > ABANDONED_CLAIM_MS) {
      const taken = await d1
        .prepare(
          "UPDATE idempotency_keys SET workflow_id = ?, run_uuid = ?, created_at = strftime('%Y-%m-%dT%H:%M:%fZ','now') WHERE organization_id = ? AND key = ? AND run_uuid = ? RETURNING run_uuid",
        )
        .bind(start.workflowId, start.runUuid, organizationId, request.key, holder.run_uuid)
        .first();
      if (taken) return null;
    }
    throw idempotencyKeyInUse();
  }
  request.replayed = true;
  return {
    workflowId: run.temporalWorkflowId,
    runId: run.temporalRunId,
    status: run.status,
    id: run.id,
    promptWebSearch: run.promptWebSearch,
  };
}

/** 409: the key's start has not finished starting its run (no row yet, or a row not yet accepted for good). */
export const idempotencyKeyInUse = () =>
  new ApiError(
    "idempotency_key_in_use",
    "a request with this Idempotency-Key is still starting its run; retry in a moment to get its result",
    undefined,
    {
      "retry-after": "1",
    },
  );
