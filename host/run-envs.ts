/**
 * Environment overrides of a run (Workflow Runs API `envs`). They may hold secrets, so they never
 * enter Temporal history in clear: the host seals them (AES-256-GCM, keys derived from the shared
 * secrets, every listed one) into the workflow's memo, and the activity interceptor opens them for
 * each attempt.
 * Activities read them with `activityEnv(name)` (host/activities/runtime.ts).
 */
import { createCipheriv, createDecipheriv, createHash, randomBytes } from "node:crypto";
import type { Client } from "@temporalio/client";
import { setBounded } from "../src/shared/bounded-map.ts";

export const ENVS_MEMO_KEY = "outriderEnvs";
/** Opened envs kept per workflow, so most attempts need no Temporal call. */
const CACHE_MAX_ENTRIES = 1_000;
/**
 * How long opened envs are kept after they were opened. They are secrets in clear, and nothing
 * tells the host when a run ends; a run's attempts mostly come within minutes of each other, and
 * one after this opens them again from the memo (one describe).
 */
export const ENVS_CACHE_TTL_MS = 5 * 60_000;

const keyOf = (secret: string) => createHash("sha256").update(`outrider-run-envs:${secret}`).digest();
/**
 * Names a shared secret in a sealed value without revealing it: 8 hex digits of a hash. It tells
 * an attacker nothing the sealed value itself (a GCM tag per secret) does not already let them check.
 */
export const secretId = (secret: string) => createHash("sha256").update(`outrider-run-envs-id:${secret}`).digest("hex").slice(0, 8);

/** Current format: `e2.<id>:<wrapped key>[,<id>:<wrapped key>…].<sealed envs>`; older values are bare base64. */
const FORMAT = "e2";
const ID_PATTERN = /^[0-9a-f]{8}$/;

function gcmSeal(key: Buffer, plain: Buffer, aad: string): Buffer {
  const iv = randomBytes(12);
  const cipher = createCipheriv("aes-256-gcm", key, iv);
  cipher.setAAD(Buffer.from(aad, "utf8"));
  const sealed = Buffer.concat([cipher.update(plain), cipher.final()]);
  return Buffer.concat([iv, cipher.getAuthTag(), sealed]);
}

/** Throws if the key is wrong or the bytes were changed. */
function gcmOpen(key: Buffer, raw: Buffer, aad?: string): Buffer {
  const decipher = createDecipheriv("aes-256-gcm", key, raw.subarray(0, 12));
  if (aad !== undefined) decipher.setAAD(Buffer.from(aad, "utf8"));
  decipher.setAuthTag(raw.subarray(12, 28));
  return Buffer.concat([decipher.update(raw.subarray(28)), decipher.final()]);
}

// Null prototype: every name is just a name (the edge refuses __proto__ and co. anyway).
const asEnvs = (plain: Buffer) =>
  Object.assign(Object.create(null) as Record<string, string>, JSON.parse(plain.toString("utf8")) as Record<string, string>);

/**
 * Seals envs so that EVERY given secret opens them: a random data key encrypts the envs, and each
 * secret wraps that key (AES-256-GCM throughout). The host passes its whole HOST_SHARED_SECRET
 * list, so a run started while a rotation lists `old,new` still opens after `old` is dropped.
 */
export function sealEnvs(envs: Record<string, string>, secrets: readonly string[]): string {
  if (secrets.length === 0) throw new Error("sealing a run's environment overrides needs a shared secret");
  const dataKey = randomBytes(32);
  const recipients = [...new Set(secrets)]
    .map((secret) => {
      const id = secretId(secret);
      return `${id}:${gcmSeal(keyOf(secret), dataKey, `${FORMAT}:${id}`).toString("base64")}`;
    })
    .join(",");
  const header = `${FORMAT}.${recipients}`;
  return `${header}.${gcmSeal(dataKey, Buffer.from(JSON.stringify(envs), "utf8"), header).toString("base64")}`;
}

/**
 * Opens with whichever configured secret the value was sealed under (a rotation may be under way).
 * Values sealed before the `e2` format (one secret, no id) are opened by trying every secret.
 * Throws a message naming the secrets (by id) when none of the configured ones can open it.
 */
export function openEnvs(sealed: string, secrets: readonly string[]): Record<string, string> {
  if (!sealed.startsWith(`${FORMAT}.`)) return openLegacy(sealed, secrets);
  const parts = sealed.split(".");
  const recipients = (parts[1] ?? "").split(",").map((r) => r.split(":"));
  if (parts.length !== 3 || recipients.some((r) => r.length !== 2 || !ID_PATTERN.test(r[0]!)))
    throw new Error("the run's environment overrides are damaged (not a sealed value)");
  const header = `${parts[0]}.${parts[1]}`;
  let matched = false;
  for (const secret of secrets) {
    const id = secretId(secret);
    for (const [recipientId, wrapped] of recipients) {
      if (recipientId !== id) continue;
      matched = true;
      try {
        const dataKey = gcmOpen(keyOf(secret), Buffer.from(wrapped!, "base64"), `${FORMAT}:${id}`);
        return asEnvs(gcmOpen(dataKey, Buffer.from(parts[2]!, "base64"), header));
      } catch {
        /* damaged, or another secret with the same id: try the rest */
      }
    }
  }
  if (matched) throw new Error("the run's environment overrides are damaged (the configured shared secret does not open them)");
  const sealedUnder = recipients.map((r) => r[0]).join(", ");
  throw new Error(
    `the run's environment overrides were sealed under shared secret id ${sealedUnder}, which HOST_SHARED_SECRET ` +
      `does not list (it lists id ${secrets.map(secretId).join(", ")}); put that secret back in the host's list until this run ends`,
  );
}

/** The format before `e2`: base64 of iv, tag and ciphertext under the one secret that sealed it. */
function openLegacy(sealed: string, secrets: readonly string[]): Record<string, string> {
  const raw = Buffer.from(sealed, "base64");
  for (const secret of secrets) {
    try {
      return asEnvs(gcmOpen(keyOf(secret), raw));
    } catch {
      /* next secret */
    }
  }
  throw new Error("the run's environment overrides cannot be opened with any configured shared secret");
}

interface CachedEnvs {
  envs: Record<string, string>;
  expiresAt: number;
}

export class RunEnvs {
  /** In the order the entries were remembered, which is their expiry order (see `remember`). */
  private readonly cache = new Map<string, CachedEnvs>();
  private sweepTimer: ReturnType<typeof setTimeout> | undefined;
  private readonly now: () => number;

  constructor(
    private readonly client: Client,
    private readonly secrets: string[],
    options: { now?: () => number } = {},
  ) {
    this.now = options.now ?? Date.now;
  }

  /** The memo to start a workflow with. Nothing is remembered until the start succeeds (`started`). */
  memoFor(envs: Record<string, string>): Record<string, string> {
    return { [ENVS_MEMO_KEY]: sealEnvs(envs, this.secrets) };
  }

  async forWorkflow(workflowId: string): Promise<Record<string, string>> {
    this.sweep();
    const cached = this.cache.get(workflowId);
    if (cached) return cached.envs;
    const description = await this.client.workflow.getHandle(workflowId).describe();
    const sealed = description.memo?.[ENVS_MEMO_KEY];
    const envs = typeof sealed === "string" ? openEnvs(sealed, this.secrets) : {};
    // A run that has closed has no more attempts to open them for.
    if (description.status.name === "RUNNING") this.remember(workflowId, envs);
    return envs;
  }

  /**
   * A run this host just started, with these overrides (none: `{}`): no need to ask Temporal later.
   * Only after the start succeeded: a start refused because the id is taken must not leave its
   * envs for the run that holds the id to read.
   */
  started(workflowId: string, envs: Record<string, string>): void {
    this.remember(workflowId, envs);
  }

  /** Workflows whose envs are held now. */
  get size(): number {
    return this.cache.size;
  }

  private remember(workflowId: string, envs: Record<string, string>): void {
    // Removed first so that it goes in last: entries then stay in expiry order, and `sweep` can
    // stop at the first one that has not expired.
    setBounded(this.cache, workflowId, { envs, expiresAt: this.now() + ENVS_CACHE_TTL_MS }, CACHE_MAX_ENTRIES);
    this.scheduleSweep();
  }

  /** Drops the entries that have expired (the oldest first). */
  private sweep(): void {
    const now = this.now();
    for (const [workflowId, entry] of this.cache) {
      if (entry.expiresAt > now) break;
      this.cache.delete(workflowId);
    }
  }

  /**
   * While anything is held, a sweep every ENVS_CACHE_TTL_MS, so that an idle host lets go of envs
   * too (within twice the TTL) instead of keeping them until its next activity. Unref'd: it keeps
   * no process alive.
   */
  private scheduleSweep(): void {
    if (this.sweepTimer || this.cache.size === 0) return;
    this.sweepTimer = setTimeout(() => {
      this.sweepTimer = undefined;
      this.sweep();
      this.scheduleSweep();
    }, ENVS_CACHE_TTL_MS);
    this.sweepTimer.unref();
  }
}
