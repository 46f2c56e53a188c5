export * from "./examples.ts";
