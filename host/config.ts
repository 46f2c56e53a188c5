/** The host's configuration, read once from the environment. Defaults are for local development. */
import type { LogLevel } from "@temporalio/worker";
import { parseSecrets } from "../src/shared/signing.ts";
import { llmConfigFromEnv, type LlmConfig } from "./llm/models.ts";
import { loadPrices, type PriceTable } from "./llm/pricing.ts";

export interface HostConfig {
  port: number;
  bind: string;
  temporalAddress: string;
  temporalNamespace: string;
  taskQueue: string;
  edgeUrl: string;
  /** Current secret first; a second one is accepted while a rotation is under way. */
  sharedSecrets: string[];
  logLevel: LogLevel;
  llm: LlmConfig;
  prices: PriceTable;
  /** USD per outbound HTTP request made by activities through the HTTP helper. */
  httpRequestCost: number;
}

const LOG_LEVELS: readonly LogLevel[] = ["TRACE", "DEBUG", "INFO", "WARN", "ERROR"];

export function loadConfig(env: NodeJS.ProcessEnv = process.env): HostConfig {
  const sharedSecrets = parseSecrets(env.HOST_SHARED_SECRET);
  if (sharedSecrets.length === 0) {
    throw new Error("HOST_SHARED_SECRET is not set: the host refuses to run without the edge's shared secret");
  }
  return {
    port: Number(env.HOST_PORT ?? 8788),
    bind: env.HOST_BIND ?? "127.0.0.1",
    temporalAddress: env.TEMPORAL_ADDRESS ?? "127.0.0.1:7233",
    temporalNamespace: env.TEMPORAL_NAMESPACE ?? "default",
    taskQueue: env.TEMPORAL_TASK_QUEUE ?? "outrider",
    edgeUrl: env.EDGE_URL ?? "http://127.0.0.1:8787",
    sharedSecrets,
    logLevel: LOG_LEVELS.find((l) => l === env.HOST_LOG_LEVEL?.toUpperCase()) ?? "INFO",
    llm: llmConfigFromEnv(env),
    prices: loadPrices(env.LLM_PRICES),
    httpRequestCost: Number(env.HTTP_REQUEST_COST_USD ?? 0) || 0,
  };
}
