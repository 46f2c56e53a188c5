import type { RunEvent } from "./shared/host-api.ts";

/** The RunStream DO of a run, by Temporal workflow id. */
export function runStream(env: Env, workflowId: string) {
  return env.RUN_STREAM.get(env.RUN_STREAM.idFromName(workflowId));
}

export function recordRunEvents(env: Env, workflowId: string, events: RunEvent[], nonce?: { nonce: string; expiresAt: number }) {
  return runStream(env, workflowId).record(workflowId, events, nonce);
}
