import type { TestProject } from "vitest/node";
import { startStack } from "../support/stack.ts";

declare module "vitest" {
  export interface ProvidedContext {
    baseUrl: string;
    apiKey: string;
    adminKey: string;
    internalSecret: string;
  }
}

export default async function setup(project: TestProject) {
  const stack = await startStack({
    edge: Number(process.env.CLI_EDGE_PORT ?? 8877),
    host: Number(process.env.CLI_HOST_PORT ?? 8878),
    temporal: Number(process.env.CLI_TEMPORAL_PORT ?? 7249),
  });
  project.provide("baseUrl", stack.baseUrl);
  project.provide("apiKey", stack.apiKey);
  project.provide("adminKey", stack.adminKey);
  project.provide("internalSecret", stack.internalSecret);
  return () => stack.stop();
}
