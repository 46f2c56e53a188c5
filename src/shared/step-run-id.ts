/**
 * Step run (activity run) ids are UUID-shaped and derived from the run's Temporal workflow id, the
 * Temporal run the attempt ran in, the step and the attempt, so the RunStream that writes the row
 * and a stream that reports it agree without a lookup (one run row per Temporal workflow id; every
 * step event names its Temporal run). The Temporal run is part of it because a reset or a
 * continue-as-new starts a new run whose activity ids and attempts repeat the earlier run's.
 */
export async function stepRunId(temporalWorkflowId: string, temporalRunId: string, stepId: string, attempt: number): Promise<string> {
  const digest = new Uint8Array(
    await crypto.subtle.digest("SHA-256", new TextEncoder().encode(`${temporalWorkflowId}\n${temporalRunId}\n${stepId}\n${attempt}`)),
  );
  const bytes = digest.slice(0, 16);
  bytes[6] = (bytes[6]! & 0x0f) | 0x80; // version 8: custom
  bytes[8] = (bytes[8]! & 0x3f) | 0x80; // RFC 9562 variant
  const hex = [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}
