import type { TestProject } from "vitest/node";
import { startTemporal } from "../support/temporal-server.ts";

declare module "vitest" {
  export interface ProvidedContext {
    temporalAddress: string;
  }
}

export default async function setup(project: TestProject) {
  // Free ports chosen at run time (test/support/ports.ts).
  const temporal = await startTemporal();
  project.provide("temporalAddress", temporal.address);
  return () => temporal.stop();
}
