import { spawnSync } from "node:child_process";
import { resolve } from "node:path";
import type { TestProject } from "vitest/node";
import { setPacerDelay } from "../support/llm-pacer.ts";
import { useSharedStack } from "../support/shared-stack.ts";

declare module "vitest" {
  export interface ProvidedContext {
    baseUrl: string;
    apiKey: string;
    /** How long the browser stack's local LLM holds each completion (ms). */
    llmDelayMs: number;
  }
}

/** Each LLM call of the stack takes at least this long while the browser tests run (see llm-pacer.ts). */
const LLM_DELAY_MS = 1_500;

/** The stack `npm test` shares with the e2e, cli and fuzz layers, or one of its own (test/support/shared-stack.ts). */
export default async function setup(project: TestProject) {
  // `npm test` on a fresh machine: Debian's Chromium is installed here when it is missing.
  const install = spawnSync("bash", ["scripts/install-chromium.sh"], { cwd: resolve(import.meta.dirname, "../.."), stdio: "inherit" });
  if (install.status !== 0) throw new Error("could not install Chromium (scripts/install-chromium.sh)");
  const { stack, stop } = await useSharedStack();
  // The host reaches the local LLM server through the stack's pacer: paced while these tests run.
  await setPacerDelay(stack.llmPacerOrigin, LLM_DELAY_MS);
  project.provide("baseUrl", stack.baseUrl);
  project.provide("apiKey", stack.apiKey);
  project.provide("llmDelayMs", LLM_DELAY_MS);
  return async () => {
    await setPacerDelay(stack.llmPacerOrigin, 0).catch(() => {});
    await stop();
  };
}
