import type { TestProject } from "vitest/node";
import { startStack } from "../support/stack.ts";

declare module "vitest" {
  export interface ProvidedContext {
    baseUrl: string;
    apiKey: string;
    adminKey: string;
    stateDir: string;
    temporalAddress: string;
    localLlmUrl: string;
  }
}

export default async function setup(project: TestProject) {
  const stack = await startStack({
    edge: Number(process.env.E2E_EDGE_PORT ?? 8797),
    host: Number(process.env.E2E_HOST_PORT ?? 8798),
    temporal: Number(process.env.E2E_TEMPORAL_PORT ?? 7237),
  });
  project.provide("baseUrl", stack.baseUrl);
  project.provide("apiKey", stack.apiKey);
  project.provide("adminKey", stack.adminKey);
  project.provide("stateDir", stack.stateDir);
  project.provide("temporalAddress", stack.temporalAddress);
  project.provide("localLlmUrl", stack.localLlmUrl);
  return () => stack.stop();
}
