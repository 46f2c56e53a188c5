/**
 * Output's probes. GET /ready (no auth, as Output): 200 when the host answers and Temporal answers
 * the host, else 503 with Retry-After. POST /heartbeat (API key): 204, a cheap authenticated
 * round trip.
 */
import { z } from "zod";
import type { App } from "../app-env.ts";
import { ApiError } from "../errors.ts";
import { HOST_RETRY_AFTER_SECONDS, HostClient } from "../host-client.ts";
import { apiKeyAuth } from "../middleware/api-key-auth/index.ts";
import { rateLimit } from "../middleware/rate-limit/index.ts";
import { documentRoute } from "../openapi/document.ts";

/**
 * Each answer, ready or not, is reused for this long per isolate, so unauthenticated probes cannot
 * load the host: least of all while it struggles, when every check costs it a call to Temporal.
 * Only a settled answer is kept (a check in flight is not shared between requests).
 */
const READY_CACHE_MS = 2_000;

/** What the last check found: ready, or why not (the error kind, without the host's words). */
type Readiness = "ready" | "host_unavailable" | "internal_error";
let lastCheck: { readiness: Readiness; until: number } | null = null;

/** For tests: forget the last check (as a new isolate). */
export function forgetReadiness(): void {
  lastCheck = null;
}

async function checkReadiness(env: Env): Promise<Readiness> {
  try {
    await new HostClient(env).ready();
    return "ready";
  } catch (err) {
    // Anyone may ask: the reason (addresses, gRPC errors) goes to the log, not to the caller.
    console.warn(JSON.stringify({ level: "warn", message: "not ready", reason: (err as Error).message }));
    // Anything else is not an outage a retry outlasts (a configuration problem, a host the edge does not understand).
    return err instanceof ApiError && err.code === "host_unavailable" ? "host_unavailable" : "internal_error";
  }
}

export function registerProbes(app: App) {
  app.get("/ready", async (c) => {
    if (!lastCheck || Date.now() >= lastCheck.until) {
      const readiness = await checkReadiness(c.env);
      lastCheck = { readiness, until: Date.now() + READY_CACHE_MS };
    }
    if (lastCheck.readiness === "host_unavailable") {
      throw new ApiError("host_unavailable", "the workflow host or Temporal is not ready", undefined, {
        "retry-after": String(HOST_RETRY_AFTER_SECONDS),
      });
    }
    if (lastCheck.readiness === "internal_error") {
      throw new ApiError("internal_error", "the edge cannot check readiness; quote the request id when reporting it");
    }
    return c.json({ ok: true, host: "ok", temporal: "ok" });
  });
  app.use("/heartbeat", apiKeyAuth({ allowBasic: true }));
  app.use("/heartbeat", rateLimit());
  app.post("/heartbeat", (c) => c.body(null, 204));

  documentRoute(app, {
    method: "get",
    path: "/ready",
    tag: "Health",
    auth: "none",
    summary: "Readiness: the host and Temporal answer (503 otherwise)",
    responses: {
      200: { description: "Ready", schema: z.object({ ok: z.literal(true), host: z.literal("ok"), temporal: z.literal("ok") }) },
    },
    errors: ["host_unavailable"],
  });
  documentRoute(app, {
    method: "post",
    path: "/heartbeat",
    tag: "Health",
    auth: "apiKey",
    summary: "An authenticated no-op (Output's heartbeat)",
    responses: { 204: { description: "Alive" } },
  });
}
