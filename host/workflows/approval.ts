/**
 * `approval`: waits for a human. Signal `approve` ({approvedBy}) completes it (so does `resume`,
 * the signal Output's `POST /workflow/:id/feedback` sends, with the same payload); the first
 * approval counts, later ones change nothing. Query `progress` reads its state (or, given
 * `{field}`, one field of it; an unknown field makes the query fail), update `setPriority`
 * ({priority: 1-5}) changes its priority and returns it, until the request is approved.
 * Stopped gracefully (cancellation), it runs a cleanup step before it ends `cancelled`.
 */
import {
  CancellationScope,
  condition,
  defineQuery,
  defineSignal,
  defineUpdate,
  isCancellation,
  proxyActivities,
  setHandler,
} from "@temporalio/workflow";
import type * as activities from "../activities/index.ts";

const steps = proxyActivities<typeof activities>({ startToCloseTimeout: "1 minute", retry: { maximumAttempts: 5 } });

export const approveSignal = defineSignal<[{ approvedBy: string }?]>("approve");
export const resumeSignal = defineSignal<[{ approvedBy: string }?]>("resume");
export const progressQuery = defineQuery<ApprovalProgress | ApprovalProgress[keyof ApprovalProgress], [{ field?: unknown }?]>("progress");
export const setPriorityUpdate = defineUpdate<{ priority: number }, [{ priority: number }]>("setPriority");

export interface ApprovalProgress {
  stage: "waiting_for_approval" | "approved" | "cleaning_up";
  priority: number;
  approvedBy: string | null;
}

export const PRIORITY_ERROR = "priority must be an integer from 1 to 5";
export const PRIORITY_FIXED_ERROR = "the request was already approved (or its run is being stopped): its priority can no longer change";
/**
 * The longest approver name a signal may give. A signal's payload may be up to Temporal's 2 MiB
 * limit, but the approver goes into the recording step's input with the request, and a step input
 * past that limit makes Temporal terminate the run: a longer one is ignored, as an empty one is.
 */
export const MAX_APPROVED_BY_CHARS = 256;
export const PROGRESS_FIELDS = ["stage", "priority", "approvedBy"] as const;
const isProgressField = (field: unknown): field is (typeof PROGRESS_FIELDS)[number] =>
  (PROGRESS_FIELDS as readonly unknown[]).includes(field);
export const PROGRESS_FIELD_ERROR = `field must be one of ${PROGRESS_FIELDS.join(", ")}`;

export async function approval(input: { request: string }): Promise<{ request: string; approvedBy: string; priority: number }> {
  const state: ApprovalProgress = { stage: "waiting_for_approval", priority: 3, approvedBy: null };
  setHandler(progressQuery, (arg) => {
    const field = arg?.field;
    if (field === undefined) return state;
    if (!isProgressField(field)) throw new Error(PROGRESS_FIELD_ERROR);
    return state[field];
  });
  // Still waiting: not approved (a signal handled in this workflow task counts) nor being stopped.
  const waiting = () => state.approvedBy === null && state.stage === "waiting_for_approval";
  // Callers may send no payload or any value: only a non-empty string approvedBy of at most
  // MAX_APPROVED_BY_CHARS counts, and only the first one (a second approval, or a /feedback after
  // it, must not change who approved what is being recorded).
  const approve = (payload?: { approvedBy?: unknown }) => {
    const approvedBy = payload?.approvedBy;
    if (!waiting() || typeof approvedBy !== "string") return;
    if (approvedBy.length > 0 && approvedBy.length <= MAX_APPROVED_BY_CHARS) state.approvedBy = approvedBy;
  };
  setHandler(approveSignal, approve);
  setHandler(resumeSignal, approve);
  setHandler(
    setPriorityUpdate,
    ({ priority }) => {
      state.priority = priority;
      return { priority };
    },
    {
      validator: (arg) => {
        // Once approved, the priority is the one being recorded: a change would be lost, not applied.
        if (!waiting()) throw new Error(PRIORITY_FIXED_ERROR);
        const priority = (arg as { priority?: unknown } | undefined)?.priority;
        if (!Number.isInteger(priority) || (priority as number) < 1 || (priority as number) > 5) throw new Error(PRIORITY_ERROR);
      },
    },
  );
  try {
    await condition(() => state.approvedBy !== null);
    state.stage = "approved";
    return await steps.recordApproval(input.request, state.approvedBy!, state.priority);
  } catch (err) {
    if (isCancellation(err)) {
      state.stage = "cleaning_up";
      // The cleanup must run even though the workflow is being cancelled.
      await CancellationScope.nonCancellable(() => steps.cleanupApproval(input.request));
    }
    throw err;
  }
}
