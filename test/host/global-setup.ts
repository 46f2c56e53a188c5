import type { TestProject } from "vitest/node";
import { startTemporal } from "../support/temporal-server.ts";

const TEMPORAL_TEST_PORT = Number(process.env.TEMPORAL_TEST_PORT ?? 7235);

declare module "vitest" {
  export interface ProvidedContext {
    temporalAddress: string;
  }
}

export default async function setup(project: TestProject) {
  const temporal = await startTemporal(TEMPORAL_TEST_PORT);
  project.provide("temporalAddress", temporal.address);
  return () => temporal.stop();
}
