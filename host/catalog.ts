/**
 * The workflow catalog: each example workflow's name, description and zod schemas. The host
 * publishes it to the edge on start (as JSON Schema), which validates inputs before they reach
 * Temporal. Adding a workflow means adding it to host/workflows/ and here.
 */
import { z } from "zod";
import type { CatalogEntry } from "../src/shared/host-api.ts";

interface WorkflowDefinition {
  description: string;
  input: z.ZodType;
  output: z.ZodType;
  /** Names of the signal, query and update handlers clients may call. */
  handlers?: { signals?: string[]; queries?: string[]; updates?: string[] };
}

export const WORKFLOWS = {
  hello: {
    description: "Greets someone by name in one step.",
    input: z.object({ name: z.string().min(1).max(200).describe("Who to greet") }).strict(),
    output: z.object({ greeting: z.string() }),
  },
  two_steps: {
    description: "Counts the words of a text, then upper-cases it: two steps in sequence, optionally pausing between them.",
    input: z
      .object({
        text: z.string().max(10_000),
        pauseMs: z.number().int().min(0).max(60_000).optional().describe("A durable pause between the two steps"),
      })
      .strict(),
    output: z.object({ words: z.number().int(), shouted: z.string() }),
  },
  always_fails: {
    description: "Runs one step, then fails with a clear message. Useful to see failures end to end.",
    input: z.object({ reason: z.string().max(500).optional() }).strict(),
    output: z.never(),
  },
  approval: {
    description:
      "Waits for signal `approve` or `resume` ({approvedBy}); query `progress` ({field?}); update `setPriority` ({priority: 1-5}). Stopped, it cleans up.",
    input: z.object({ request: z.string().min(1).max(500) }).strict(),
    output: z.object({ request: z.string(), approvedBy: z.string(), priority: z.number().int() }),
    handlers: { signals: ["approve", "resume"], queries: ["progress"], updates: ["setPriority"] },
  },
  flaky_step: {
    description: "One step that fails its first `failures` attempts (default 1), then succeeds: retries, visible.",
    input: z.object({ failures: z.number().int().min(0).max(3).optional() }).strict(),
    output: z.object({ attempts: z.number().int() }),
  },
  summarize_url: {
    description: "Fetches a web page and summarizes it with one LLM step. `maxSummaryWords` makes it fail when the summary is longer.",
    input: z
      .object({
        // The scheme again as a pattern: the published JSON Schema (what the edge checks) has
        // `format: uri` for zod's url, not its protocol option (both: allOf).
        url: z.intersection(
          z.url({ protocol: /^https?$/ }).max(2048),
          z
            .string()
            .regex(/^[Hh][Tt][Tt][Pp][Ss]?:\/\//, "an http or https URL")
            .describe("an http or https URL"),
        ),
        maxSummaryWords: z.number().int().min(1).max(10_000).optional(),
      })
      .strict(),
    output: z.object({
      url: z.string().describe("the URL asked for"),
      finalUrl: z.string().describe("the URL the page was read from, after redirects"),
      title: z.string().nullable(),
      summary: z.string(),
    }),
  },
  company_research: {
    description: "Researches a company from its domain with several LLM steps (profile, market, brief).",
    input: z
      .object({
        domain: z
          .string()
          .min(3)
          .max(253)
          // Both cases spelt out: a JSON Schema pattern has no flags, and the edge checks that.
          .regex(/^[A-Za-z0-9.-]+\.[A-Za-z]{2,}$/, "a domain name like example.com")
          .describe("a domain name like example.com"),
      })
      .strict(),
    output: z.object({ domain: z.string(), profile: z.string(), market: z.string(), brief: z.string() }),
  },
} satisfies Record<string, WorkflowDefinition>;

/**
 * Workflows the edge starts on its own behalf, never listed in the catalog: `run_prompt` runs
 * every published prompt workflow (its input is the prompt definition plus the caller's values).
 */
export const INTERNAL_WORKFLOWS: ReadonlySet<string> = new Set(["run_prompt"]);

export function isStartable(workflowName: string): boolean {
  // Own names only: `constructor` or `toString` are not workflows.
  return Object.hasOwn(WORKFLOWS, workflowName) || INTERNAL_WORKFLOWS.has(workflowName);
}

export type HandlerKind = "signals" | "queries" | "updates";

export function hasHandler(workflowName: string, kind: HandlerKind, name: string): boolean {
  const def: WorkflowDefinition | undefined = Object.hasOwn(WORKFLOWS, workflowName)
    ? (WORKFLOWS as Record<string, WorkflowDefinition>)[workflowName]
    : undefined;
  return def?.handlers?.[kind]?.includes(name) ?? false;
}

export function catalogEntries(): CatalogEntry[] {
  return Object.entries(WORKFLOWS as Record<string, WorkflowDefinition>).map(([name, def]) => ({
    name,
    description: def.description,
    handlers: { signals: def.handlers?.signals ?? [], queries: def.handlers?.queries ?? [], updates: def.handlers?.updates ?? [] },
    inputSchema: z.toJSONSchema(def.input, { target: "draft-2020-12" }) as Record<string, unknown>,
    outputSchema: z.toJSONSchema(def.output, { target: "draft-2020-12", unrepresentable: "any" }) as Record<string, unknown>,
  }));
}
