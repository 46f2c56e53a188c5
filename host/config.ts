/** The host's configuration, read once from the environment. Defaults are for local development. */
import { readFileSync } from "node:fs";
import type { LogLevel } from "@temporalio/worker";
import { parseSecrets } from "../src/shared/signing.ts";
import { llmConfigFromEnv, type LlmConfig } from "./llm/models.ts";
import { loadPrices, type PriceTable } from "./llm/pricing.ts";
import { PUSH_WINDOW_MS } from "./edge-client.ts";
import { policyFromEnv, type OutboundPolicy } from "./activities/outbound-guard.ts";

export interface HostConfig {
  port: number;
  bind: string;
  temporalAddress: string;
  temporalNamespace: string;
  /** How to reach Temporal beyond its address: TLS and an API key or a client certificate (Temporal Cloud). */
  temporalConnection: { tls?: { clientCertPair?: { crt: Buffer; key: Buffer } } | boolean; apiKey?: string };
  taskQueue: string;
  edgeUrl: string;
  /** How long the first run event of a push waits for others (EDGE_PUSH_WINDOW_MS, default 5 ms). */
  edgePushWindowMs: number;
  /** Current secret first; a second one is accepted while a rotation is under way. */
  sharedSecrets: string[];
  logLevel: LogLevel;
  llm: LlmConfig;
  prices: PriceTable;
  /** USD per outbound HTTP request made by activities through the HTTP helper. */
  httpRequestCost: number;
  /** The SSRF guard of activities' outbound HTTP: OUTBOUND_HTTP_ALLOW, _MAX_BYTES, _TIMEOUT_MS (docs/configuration.md). */
  outbound: OutboundPolicy;
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
    temporalConnection: temporalConnectionFromEnv(env),
    taskQueue: env.TEMPORAL_TASK_QUEUE ?? "outrider",
    edgeUrl: env.EDGE_URL ?? "http://127.0.0.1:8787",
    edgePushWindowMs: Number(env.EDGE_PUSH_WINDOW_MS) > 0 ? Number(env.EDGE_PUSH_WINDOW_MS) : PUSH_WINDOW_MS,
    sharedSecrets,
    logLevel: LOG_LEVELS.find((l) => l === env.HOST_LOG_LEVEL?.toUpperCase()) ?? "INFO",
    llm: llmConfigFromEnv(env),
    prices: loadPrices(env.LLM_PRICES),
    httpRequestCost: Number(env.HTTP_REQUEST_COST_USD ?? 0) || 0,
    outbound: policyFromEnv(env),
  };
}

/**
 * TEMPORAL_API_KEY (Temporal Cloud API keys; implies TLS), or TEMPORAL_TLS_CERT and
 * TEMPORAL_TLS_KEY (paths to an mTLS client certificate and key), or TEMPORAL_TLS=true alone.
 * None of them: plain gRPC, as the local dev server expects.
 */
function temporalConnectionFromEnv(env: NodeJS.ProcessEnv): HostConfig["temporalConnection"] {
  if (env.TEMPORAL_TLS_CERT || env.TEMPORAL_TLS_KEY) {
    if (!env.TEMPORAL_TLS_CERT || !env.TEMPORAL_TLS_KEY) throw new Error("TEMPORAL_TLS_CERT and TEMPORAL_TLS_KEY go together");
    return { tls: { clientCertPair: { crt: readFileSync(env.TEMPORAL_TLS_CERT), key: readFileSync(env.TEMPORAL_TLS_KEY) } } };
  }
  if (env.TEMPORAL_API_KEY) return { tls: true, apiKey: env.TEMPORAL_API_KEY };
  return env.TEMPORAL_TLS === "true" ? { tls: true } : {};
}
