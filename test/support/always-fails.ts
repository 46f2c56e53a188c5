/**
 * What a run of the `always_fails` example ends with: Output's V1 errorDetails as its API server
 * builds them from Temporal's failure chain (the workflow throws a non-retryable ApplicationFailure
 * of type AlwaysFails, which the client's result() wraps in WorkflowFailedError).
 */
import { ALWAYS_FAILS_MESSAGE } from "../../host/workflows/examples.ts";

export const ALWAYS_FAILS_ERROR_DETAILS = {
  message: ALWAYS_FAILS_MESSAGE,
  name: "AlwaysFails",
  retryable: false,
  activityId: null,
  cause: {
    name: "WorkflowFailedError",
    message: "Workflow execution failed",
    cause: { name: "AlwaysFails", message: ALWAYS_FAILS_MESSAGE },
  },
};
