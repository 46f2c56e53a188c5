import { spawnSync } from "node:child_process";
import { resolve } from "node:path";
import type { TestProject } from "vitest/node";
import { startStack } from "../support/stack.ts";
import { startLlmPacer } from "./llm-pacer.ts";

declare module "vitest" {
  export interface ProvidedContext {
    baseUrl: string;
    apiKey: string;
    /** How long the browser stack's local LLM holds each completion (ms). */
    llmDelayMs: number;
  }
}

/** Each LLM call of the browser stack takes at least this long (see llm-pacer.ts). */
const LLM_DELAY_MS = 1_500;

export default async function setup(project: TestProject) {
  // `npm test` on a fresh machine: Debian's Chromium is installed here when it is missing.
  const install = spawnSync("bash", ["scripts/install-chromium.sh"], { cwd: resolve(import.meta.dirname, "../.."), stdio: "inherit" });
  if (install.status !== 0) throw new Error("could not install Chromium (scripts/install-chromium.sh)");
  const ports = {
    edge: Number(process.env.BROWSER_EDGE_PORT ?? 8867),
    host: Number(process.env.BROWSER_HOST_PORT ?? 8868),
    temporal: Number(process.env.BROWSER_TEMPORAL_PORT ?? 7247),
  };
  // The stack's local LLM server listens on host + 2; the host reaches it through the pacer.
  const pacer = await startLlmPacer(`http://127.0.0.1:${ports.host + 2}`, LLM_DELAY_MS);
  let stack;
  try {
    stack = await startStack(ports, { env: { LOCAL_LLM_URL: pacer.url } });
  } catch (err) {
    await pacer.close();
    throw err;
  }
  project.provide("baseUrl", stack.baseUrl);
  project.provide("apiKey", stack.apiKey);
  project.provide("llmDelayMs", LLM_DELAY_MS);
  return async () => {
    await stack.stop();
    await pacer.close();
  };
}
