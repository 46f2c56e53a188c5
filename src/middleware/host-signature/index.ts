import { createMiddleware } from "hono/factory";
import type { AppEnv } from "../../app-env.ts";
import { ApiError, misconfigured } from "../../errors.ts";
import { BodyTooLargeError, readSignedBody } from "../../shared/capped-body.ts";
import { parseSecrets, secretsProblem, verifyRequest } from "../../shared/signing.ts";

const RUN_EVENTS_PATH = /^\/internal\/(runs\/[^/]+\/events|run-events)$/;
/** One request in this many also deletes expired nonces. */
const NONCE_CLEANUP_PROBABILITY = 0.01;

/**
 * Guards /internal/*: only requests signed by the Node host with the shared secret get through,
 * each once (a replayed request is refused).
 */
export const hostSignature = () =>
  createMiddleware<AppEnv>(async (c, next) => {
    const url = new URL(c.req.url);
    const secrets = parseSecrets(c.env.HOST_SHARED_SECRET);
    // No secret, or one short enough to be guessed offline from a captured request: the edge's
    // configuration is wrong, not the host's request. Nothing passes, and the host's pushes are
    // retried (a 5xx), not given up as refused (a 4xx), while the operator fixes it.
    const problem = secretsProblem("HOST_SHARED_SECRET", secrets);
    if (problem) {
      throw misconfigured(
        c.get("requestId"),
        `internal route: ${problem}`,
        "the edge cannot check the host's signature (a configuration problem)",
      );
    }
    // The body is read (to check its hash) only once the signature over the headers checks out,
    // and only up to MAX_SIGNED_BODY_BYTES (the host splits its pushes well below it).
    const verdict = await verifyRequest(secrets, c.req.method, url.pathname + url.search, c.req.raw.headers, () =>
      readSignedBody(c.req).catch((err: unknown) => {
        if (err instanceof BodyTooLargeError) throw new ApiError("payload_too_large", `internal route: ${err.message}`);
        throw err;
      }),
    );
    if (!verdict.ok) throw new ApiError("unauthorized", `internal route: ${verdict.reason.replaceAll("_", " ")}`);
    // Run-event pushes are the hot path: their nonce is claimed by the run's RunStream, in the
    // same call that records the events (no extra D1 write). Every other route claims it here.
    if (RUN_EVENTS_PATH.test(url.pathname)) {
      c.set("hostNonce", { nonce: verdict.nonce, expiresAt: verdict.expiresAt });
      return next();
    }
    // One use per signed request, across every isolate: D1 remembers accepted nonces.
    const claimed = await c.env.DB.prepare(
      "INSERT INTO host_request_nonces (nonce, expires_at) VALUES (?, ?) ON CONFLICT (nonce) DO NOTHING RETURNING nonce",
    )
      .bind(verdict.nonce, verdict.expiresAt)
      .first();
    if (!claimed) throw new ApiError("unauthorized", "internal route: replayed signature (this signed request was already used)");
    if (Math.random() < NONCE_CLEANUP_PROBABILITY) {
      c.executionCtx.waitUntil(c.env.DB.prepare("DELETE FROM host_request_nonces WHERE expires_at < ?").bind(Date.now()).run());
    }
    await next();
  });
