/**
 * Output's errorDetails from Temporal's failure chains (host/failure-details.ts), for the shapes
 * the client's result() throws: a step's failure under ActivityFailure, a workflow's own, and the
 * ends with no author's failure (terminated, timed out).
 */
import { WorkflowFailedError } from "@temporalio/client";
import { ActivityFailure, ApplicationFailure, RetryState, TerminatedFailure, TimeoutFailure } from "@temporalio/common";
import { describe, expect, it } from "vitest";
import { failureDetails, MAX_DETAILS_TEXT_CHARS } from "../../host/failure-details.ts";
import { errorDetails, MAX_ERROR_CAUSE_DEPTH } from "../../src/shared/error-details.ts";

const failed = (cause: Error, message = "Workflow execution failed") =>
  new WorkflowFailedError(message, cause, RetryState.NON_RETRYABLE_FAILURE);

describe("failureDetails (happy)", () => {
  it("a step that threw: the author's message and type, retryable from the flagged link, the step's name, the whole chain", () => {
    const thrown = ApplicationFailure.create({ message: "Foo", type: "Error", nonRetryable: false });
    const activity = new ActivityFailure(
      "Activity task failed",
      "summarizeUrl",
      "5",
      RetryState.MAXIMUM_ATTEMPTS_REACHED,
      "worker-1",
      thrown,
    );
    const details = failureDetails(failed(activity));
    expect(details).toEqual({
      message: "Foo",
      name: "Error",
      retryable: true,
      activityId: "summarizeUrl",
      cause: {
        name: "WorkflowFailedError",
        message: "Workflow execution failed",
        cause: { name: "ActivityFailure", message: "Activity task failed", cause: { name: "Error", message: "Foo" } },
      },
    });
    expect(errorDetails.parse(details)).toEqual(details);
  });

  it("a non-retryable failure of the workflow's own says retryable false, and no step", () => {
    const details = failureDetails(failed(ApplicationFailure.nonRetryable("no way", "ValidationError")));
    expect(details).toMatchObject({ message: "no way", name: "ValidationError", retryable: false, activityId: null });
  });

  it("Temporal's wrapper types are skipped for the name: an ApplicationFailure of type ActivityFailure names the author's below it", () => {
    const inner = ApplicationFailure.create({ message: "deep", type: "RateLimited" });
    const wrapper = ApplicationFailure.create({ message: "wrapped", type: "ActivityFailure", cause: inner });
    expect(failureDetails(failed(wrapper))).toMatchObject({ message: "deep", name: "RateLimited" });
  });
});

describe("failureDetails (error)", () => {
  it("a terminated run: no author's failure, so the deepest message and the outer class; retryable unknown", () => {
    const details = failureDetails(failed(new TerminatedFailure("Workflow execution terminated"), "operator stop"));
    expect(details).toEqual({
      message: "Workflow execution terminated",
      name: "WorkflowFailedError",
      retryable: null,
      activityId: null,
      cause: {
        name: "WorkflowFailedError",
        message: "operator stop",
        cause: { name: "TerminatedFailure", message: "Workflow execution terminated" },
      },
    });
  });

  it("a timed-out run names the timeout", () => {
    const details = failureDetails(
      failed(new TimeoutFailure("Workflow execution timed out", undefined, "START_TO_CLOSE"), "Workflow execution timed out"),
    );
    expect(details).toMatchObject({ name: "WorkflowFailedError", retryable: null, cause: { cause: { name: "TimeoutFailure" } } });
  });
});

describe("failureDetails (security)", () => {
  it("a very long message is cut in the details (it is there up to three times), to MAX_DETAILS_TEXT_CHARS", () => {
    const long = "m".repeat(100_000);
    const details = failureDetails(failed(ApplicationFailure.create({ message: long, type: "Error" })));
    expect(details.message).toBe(`${"m".repeat(MAX_DETAILS_TEXT_CHARS)}… (${100_000 - MAX_DETAILS_TEXT_CHARS} more characters)`);
    expect(details.cause?.cause?.message).toBe(details.message);
    expect(JSON.stringify(details).length).toBeLessThan(4 * MAX_DETAILS_TEXT_CHARS);
  });

  it("a cause chain past MAX_ERROR_CAUSE_DEPTH ends in a link that says so, and a cycle does not loop", () => {
    let deep: Error = new Error("bottom");
    for (let i = 0; i < 30; i++) deep = new Error(`level ${i}`, { cause: deep });
    let link = failureDetails(deep).cause;
    let depth = 0;
    while (link?.cause) {
      link = link.cause;
      depth++;
    }
    expect(depth).toBe(MAX_ERROR_CAUSE_DEPTH + 1);
    expect(link).toEqual({ name: "Error", message: "Cause chain too deep" });
    const cyclic = new Error("a") as Error & { cause?: unknown };
    cyclic.cause = cyclic;
    expect(failureDetails(cyclic).message).toBe("a");
  });
});
