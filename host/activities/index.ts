export * from "./examples.ts";
export { askModel } from "./llm.ts";
export { checkSummaryLength, fetchPageText } from "./research.ts";
