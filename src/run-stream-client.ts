import type { RunEvent } from "./shared/host-api.ts";

/**
 * Cloudflare's Durable Object location hints. A hint places a DO when it is first created (later
 * gets cannot move it): RUN_STREAM_LOCATION_HINT puts each run's RunStream near the Node host and
 * D1's primary, the home region (docs/architecture.md, placement). Empty: no hint (Cloudflare
 * places the DO near the Worker that first names it).
 */
const LOCATION_HINTS: ReadonlySet<string> = new Set<DurableObjectLocationHint>([
  "wnam",
  "enam",
  "sam",
  "weur",
  "eeur",
  "apac",
  "apac-ne",
  "apac-se",
  "oc",
  "afr",
  "me",
]);

/** A misconfigured hint is reported once per isolate, then ignored (a run must still start). */
let reportedBadHint: string | null = null;

/** The get() options for RunStream DOs: the configured location hint, if it is one Cloudflare knows. */
export function runStreamPlacement(env: Pick<Env, "RUN_STREAM_LOCATION_HINT">): DurableObjectNamespaceGetDurableObjectOptions | undefined {
  const hint = (env.RUN_STREAM_LOCATION_HINT ?? "").trim();
  if (hint === "") return undefined;
  if (LOCATION_HINTS.has(hint)) return { locationHint: hint as DurableObjectLocationHint };
  if (reportedBadHint !== hint) {
    reportedBadHint = hint;
    console.error(
      JSON.stringify({
        level: "error",
        message: `RUN_STREAM_LOCATION_HINT "${hint}" is not a Durable Object location hint (one of ${[...LOCATION_HINTS].join(", ")}); RunStreams are placed without one`,
      }),
    );
  }
  return undefined;
}

/** The RunStream DO of a run, by Temporal workflow id. */
export function runStream(env: Env, workflowId: string) {
  return env.RUN_STREAM.get(env.RUN_STREAM.idFromName(workflowId), runStreamPlacement(env));
}

export function recordRunEvents(env: Env, workflowId: string, events: RunEvent[], nonce?: { nonce: string; expiresAt: number }) {
  return runStream(env, workflowId).record(workflowId, events, nonce);
}
