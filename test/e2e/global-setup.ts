import type { TestProject } from "vitest/node";
import { useSharedStack } from "../support/shared-stack.ts";

declare module "vitest" {
  export interface ProvidedContext {
    baseUrl: string;
    apiKey: string;
    adminKey: string;
    stateDir: string;
    temporalAddress: string;
    localLlmUrl: string;
    /** Private JWK (RS256, kid "e2e-key") whose public half the stack's JWT_JWKS_URL serves. */
    jwksPrivateKey: string;
  }
}

/** The stack `npm test` shares with the cli, browser and fuzz layers, or one of its own (test/support/shared-stack.ts). */
export default async function setup(project: TestProject) {
  const { stack, stop } = await useSharedStack();
  project.provide("baseUrl", stack.baseUrl);
  project.provide("apiKey", stack.apiKey);
  project.provide("adminKey", stack.adminKey);
  project.provide("stateDir", stack.stateDir);
  project.provide("temporalAddress", stack.temporalAddress);
  project.provide("localLlmUrl", stack.localLlmUrl);
  project.provide("jwksPrivateKey", stack.jwksPrivateKey);
  return stop;
}
