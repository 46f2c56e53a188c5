/** The host's configuration, read once from the environment. Defaults are for local development. */
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { msToNumber } from "@temporalio/common";
import type { LogLevel } from "@temporalio/worker";
import { MAX_ATTRIBUTE_NUMBER } from "../src/shared/run-event-schema.ts";
import { parseSecrets, secretsProblem } from "../src/shared/signing.ts";
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
  /**
   * The longest a run may take, continue-as-new included, when its start names no limit of its own
   * (TEMPORAL_WORKFLOW_EXECUTION_TIMEOUT, default 24 h, as Output's API server): past it Temporal
   * ends the run `timed_out`, so a run that waits for ever (an `approval` nobody answers) does not
   * hold its credits and its open-run slot for ever.
   */
  workflowExecutionTimeoutMs: number;
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
  /**
   * The SQLite file of the run event journal (HOST_RUN_EVENT_JOURNAL; default
   * `.outrider/host-run-events-<HOST_PORT>.sqlite`, so hosts on one machine each have their own
   * and a restarted host takes up its predecessor's): host/run-event-journal.ts.
   */
  runEventJournalPath: string;
  /** The SSRF guard of activities' outbound HTTP: OUTBOUND_HTTP_ALLOW, _MAX_BYTES, _TIMEOUT_MS (docs/configuration.md). */
  outbound: OutboundPolicy;
}

const LOG_LEVELS: readonly LogLevel[] = ["TRACE", "DEBUG", "INFO", "WARN", "ERROR"];

export function loadConfig(env: NodeJS.ProcessEnv = process.env): HostConfig {
  const sharedSecrets = parseSecrets(env.HOST_SHARED_SECRET);
  if (sharedSecrets.length === 0) {
    throw new Error("HOST_SHARED_SECRET is not set: the host refuses to run without the edge's shared secret");
  }
  // A short one could be guessed offline from one signed request. The message never holds the value.
  const problem = secretsProblem("HOST_SHARED_SECRET", sharedSecrets);
  if (problem) throw new Error(`${problem}; the host refuses to run with a shared secret that could be guessed offline`);
  const port = portFrom(env.HOST_PORT);
  return {
    port,
    bind: env.HOST_BIND ?? "127.0.0.1",
    temporalAddress: env.TEMPORAL_ADDRESS ?? "127.0.0.1:7233",
    temporalNamespace: env.TEMPORAL_NAMESPACE ?? "default",
    temporalConnection: temporalConnectionFromEnv(env),
    taskQueue: env.TEMPORAL_TASK_QUEUE ?? "outrider",
    workflowExecutionTimeoutMs: executionTimeoutFrom(env.TEMPORAL_WORKFLOW_EXECUTION_TIMEOUT),
    edgeUrl: edgeUrlFrom(env.EDGE_URL),
    edgePushWindowMs: Number(env.EDGE_PUSH_WINDOW_MS) > 0 ? Number(env.EDGE_PUSH_WINDOW_MS) : PUSH_WINDOW_MS,
    sharedSecrets,
    logLevel: LOG_LEVELS.find((l) => l === env.HOST_LOG_LEVEL?.toUpperCase()) ?? "INFO",
    llm: llmConfigFromEnv(env),
    prices: loadPrices(env.LLM_PRICES),
    httpRequestCost: costFrom(env.HTTP_REQUEST_COST_USD),
    outbound: policyFromEnv(env),
    runEventJournalPath: resolve(env.HOST_RUN_EVENT_JOURNAL || `.outrider/host-run-events-${port}.sqlite`),
  };
}

export const DEFAULT_HOST_PORT = 8788;

/**
 * HOST_PORT: 1 to 65535, unset or empty for DEFAULT_HOST_PORT. Anything else stops the host at
 * start: `Number("")` is 0, which listens on a random port the edge never calls, and a port the
 * host cannot listen on would fail later, further from its cause.
 */
function portFrom(value: string | undefined): number {
  const text = value?.trim();
  if (!text) return DEFAULT_HOST_PORT;
  const port = /^\d+$/.test(text) ? Number(text) : Number.NaN;
  if (!(port >= 1 && port <= 65_535)) throw new Error(`HOST_PORT "${value}" is not a port (an integer from 1 to 65535)`);
  return port;
}

/**
 * HTTP_REQUEST_COST_USD: 0 to MAX_ATTRIBUTE_NUMBER (unset: 0). A negative or larger cost makes
 * attributes the edge refuses, so every request a step made would fail its step after it was
 * made: refused at start.
 */
function costFrom(value: string | undefined): number {
  const text = value?.trim();
  if (!text) return 0;
  // A decimal number only: Number() also reads "0x10" (16) and "0b1" as numbers.
  const cost = DECIMAL.test(text) ? Number(text) : Number.NaN;
  if (!Number.isFinite(cost) || cost < 0 || cost > MAX_ATTRIBUTE_NUMBER) {
    throw new Error(`HTTP_REQUEST_COST_USD "${value}" is not a cost in USD from 0 to ${MAX_ATTRIBUTE_NUMBER} (a decimal number)`);
  }
  return cost;
}

/** A decimal number, as an operator writes a price: `0.002`, `2`, `1e-3`. */
const DECIMAL = /^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/i;

/** EDGE_URL: an http(s) URL (unset: the local edge); anything else would fail every push, for ever. */
function edgeUrlFrom(value: string | undefined): string {
  const text = value?.trim() || "http://127.0.0.1:8787";
  const url = URL.parse(text);
  if (!url || (url.protocol !== "http:" && url.protocol !== "https:")) throw new Error(`EDGE_URL "${value}" is not an http(s) URL`);
  return text;
}

/** Output's default for TEMPORAL_WORKFLOW_EXECUTION_TIMEOUT. */
export const DEFAULT_WORKFLOW_EXECUTION_TIMEOUT = "24h";

/** A duration as Temporal's SDK reads one (`24h`, `90m`, `30s`, or milliseconds); anything else stops the host at start. */
export function executionTimeoutFrom(value: string | undefined): number {
  const text = value?.trim() || DEFAULT_WORKFLOW_EXECUTION_TIMEOUT;
  let ms: number;
  try {
    ms = msToNumber(/^\d+$/.test(text) ? Number(text) : (text as Parameters<typeof msToNumber>[0]));
  } catch {
    ms = Number.NaN;
  }
  if (!Number.isFinite(ms) || ms < 1_000)
    throw new Error(`TEMPORAL_WORKFLOW_EXECUTION_TIMEOUT "${value}" is not a duration of at least 1s (examples: 24h, 90m, 3600000)`);
  return ms;
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
