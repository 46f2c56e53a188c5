/**
 * The Worker's half of every start: the ids minted at the edge (the run UUID, and the
 * `<name>-<uuid>` workflow id unless the caller chose one) and the command that the run's
 * RunStream DO carries out in one call (durable-objects/run-stream/run-starter.ts).
 */
import type { StartCommand, StartTarget } from "../../durable-objects/run-stream/run-starter.ts";
import type { IdempotencyRequest } from "./idempotency.ts";

/** Caller-chosen options of a start. */
export interface StartChoices {
  /** A caller-chosen Temporal workflow id (else `<workflow>-<uuid>`). */
  workflowId?: string;
  /** The request's `Idempotency-Key`; marked `replayed` when the start replays an earlier run. */
  idempotency?: IdempotencyRequest;
}

/** The Worker side of every start: mint the ids, then ONE call into the home region (the run's DO). */
export function startCommand(organizationId: string, idPrefix: string, target: StartTarget, choices: StartChoices = {}): StartCommand {
  const runUuid = crypto.randomUUID();
  return {
    organizationId,
    workflowId: choices.workflowId ?? `${idPrefix}-${runUuid}`,
    runUuid,
    target,
    ...(choices.idempotency ? { idempotency: choices.idempotency } : {}),
  };
}
