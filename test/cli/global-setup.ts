import type { TestProject } from "vitest/node";
import { useSharedStack } from "../support/shared-stack.ts";

declare module "vitest" {
  export interface ProvidedContext {
    baseUrl: string;
    apiKey: string;
    adminKey: string;
    internalSecret: string;
    temporalAddress: string;
  }
}

/** The stack `npm test` shares with the e2e, browser and fuzz layers, or one of its own (test/support/shared-stack.ts). */
export default async function setup(project: TestProject) {
  const { stack, stop } = await useSharedStack();
  project.provide("baseUrl", stack.baseUrl);
  project.provide("apiKey", stack.apiKey);
  project.provide("adminKey", stack.adminKey);
  project.provide("internalSecret", stack.internalSecret);
  project.provide("temporalAddress", stack.temporalAddress);
  return stop;
}
