import type { TestProject } from "vitest/node";
import { useSharedStack } from "../support/shared-stack.ts";

declare module "vitest" {
  export interface ProvidedContext {
    baseUrl: string;
    adminKey: string;
  }
}

/** The stack `npm test` shares with the e2e, cli and browser layers, or one of its own (test/support/shared-stack.ts). */
export default async function setup(project: TestProject) {
  const { stack, stop } = await useSharedStack();
  project.provide("baseUrl", stack.baseUrl);
  project.provide("adminKey", stack.adminKey);
  return stop;
}
