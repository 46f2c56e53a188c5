/**
 * Environment overrides of a run (Workflow Runs API `envs`). They may hold secrets, so they never
 * enter Temporal history in clear: the host seals them (AES-256-GCM, key derived from the shared
 * secret) into the workflow's memo, and the activity interceptor opens them for each attempt.
 * Activities read them with `activityEnv(name)` (host/activities/runtime.ts).
 */
import { createCipheriv, createDecipheriv, createHash, randomBytes } from "node:crypto";
import type { Client } from "@temporalio/client";

export const ENVS_MEMO_KEY = "outriderEnvs";
/** Opened envs kept per workflow, so most attempts need no Temporal call. */
const CACHE_MAX_ENTRIES = 1_000;

const keyOf = (secret: string) => createHash("sha256").update(`outrider-run-envs:${secret}`).digest();

export function sealEnvs(envs: Record<string, string>, secret: string): string {
  const iv = randomBytes(12);
  const cipher = createCipheriv("aes-256-gcm", keyOf(secret), iv);
  const sealed = Buffer.concat([cipher.update(JSON.stringify(envs), "utf8"), cipher.final()]);
  return Buffer.concat([iv, cipher.getAuthTag(), sealed]).toString("base64");
}

/** Tries every secret (a rotation may be under way); throws if none opens it. */
export function openEnvs(sealed: string, secrets: string[]): Record<string, string> {
  const raw = Buffer.from(sealed, "base64");
  for (const secret of secrets) {
    try {
      const decipher = createDecipheriv("aes-256-gcm", keyOf(secret), raw.subarray(0, 12));
      decipher.setAuthTag(raw.subarray(12, 28));
      const envs = JSON.parse(Buffer.concat([decipher.update(raw.subarray(28)), decipher.final()]).toString("utf8")) as Record<
        string,
        string
      >;
      // Null prototype: every name is just a name (the edge refuses __proto__ and co. anyway).
      return Object.assign(Object.create(null) as Record<string, string>, envs);
    } catch {
      /* next secret */
    }
  }
  throw new Error("the run's environment overrides cannot be opened with any configured shared secret");
}

export class RunEnvs {
  private readonly cache = new Map<string, Record<string, string>>();

  constructor(
    private readonly client: Client,
    private readonly secrets: string[],
  ) {}

  /** The memo to start a workflow with. */
  memoFor(workflowId: string, envs: Record<string, string>): Record<string, string> {
    this.remember(workflowId, envs);
    return { [ENVS_MEMO_KEY]: sealEnvs(envs, this.secrets[0]!) };
  }

  async forWorkflow(workflowId: string): Promise<Record<string, string>> {
    const cached = this.cache.get(workflowId);
    if (cached) return cached;
    const description = await this.client.workflow.getHandle(workflowId).describe();
    const sealed = description.memo?.[ENVS_MEMO_KEY];
    const envs = typeof sealed === "string" ? openEnvs(sealed, this.secrets) : {};
    this.remember(workflowId, envs);
    return envs;
  }

  /** A run started here without overrides: no need to ask Temporal later. */
  noEnvs(workflowId: string): void {
    this.remember(workflowId, {});
  }

  private remember(workflowId: string, envs: Record<string, string>): void {
    if (this.cache.size >= CACHE_MAX_ENTRIES) this.cache.delete(this.cache.keys().next().value!);
    this.cache.set(workflowId, envs);
  }
}
