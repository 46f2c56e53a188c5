// Entry point of the workflow bundle the Temporal worker loads (see host/worker.ts).
export * from "./approval.ts";
export * from "./examples.ts";
export * from "./research.ts";
export * from "./prompt.ts";
