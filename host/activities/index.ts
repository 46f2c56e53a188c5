export * from "./examples.ts";
export { answerPrompt, askModel } from "./llm.ts";
export { checkSummaryLength, fetchPageText } from "./research.ts";
