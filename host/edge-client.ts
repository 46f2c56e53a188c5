/**
 * Signed calls from the host to the edge: run events and the workflow catalog. Delivery is
 * at-least-once: a failed push is retried with backoff, and the edge drops duplicates by sourceKey.
 */
import { EDGE_PATHS, type CatalogEntry, type RunEvent } from "../src/shared/host-api.ts";
import { signRequest } from "../src/shared/signing.ts";

const RETRY_BASE_MS = 250;
const RETRY_MAX_MS = 5_000;
/** After this many failed tries a push is given up (the edge's watchdog reconciles later). */
const MAX_ATTEMPTS = 30;

export class EdgeClient {
  constructor(
    private readonly edgeUrl: string,
    private readonly secret: string,
    private readonly log: (msg: string) => void = (msg) => console.warn(msg),
    /** Tries per push before it is given up (the edge's watchdog reconciles what was lost). */
    private readonly maxAttempts = MAX_ATTEMPTS,
  ) {}

  async pushRunEvents(workflowId: string, events: RunEvent[]): Promise<void> {
    await this.postWithRetry(EDGE_PATHS.runEvents(workflowId), { events });
  }

  async publishCatalog(workflows: CatalogEntry[]): Promise<void> {
    await this.postWithRetry(EDGE_PATHS.catalog, { workflows });
  }

  private async postWithRetry(path: string, payload: unknown): Promise<void> {
    const body = JSON.stringify(payload);
    for (let attempt = 1; ; attempt++) {
      try {
        const headers = await signRequest(this.secret, "POST", path, body);
        const res = await fetch(new URL(path, this.edgeUrl), {
          method: "POST",
          headers: { ...headers, "content-type": "application/json" },
          body,
        });
        if (res.ok) return;
        const text = await res.text();
        // A 4xx other than 429 will not get better by retrying: the push is wrong.
        if (res.status >= 400 && res.status < 500 && res.status !== 429) {
          throw new PermanentPushError(`edge refused ${path}: ${res.status} ${text.slice(0, 300)}`);
        }
        this.log(`edge answered ${res.status} to ${path}, retrying`);
      } catch (err) {
        if (err instanceof PermanentPushError || attempt >= this.maxAttempts) throw err;
        if (attempt === 1 || attempt % 10 === 0) this.log(`push to edge ${path} failed (${String(err)}), retrying`);
      }
      await new Promise((r) => setTimeout(r, Math.min(RETRY_MAX_MS, RETRY_BASE_MS * 2 ** (attempt - 1))));
    }
  }
}

export class PermanentPushError extends Error {}
