import type { OpenAPIHono } from "@hono/zod-openapi";

export interface AuthContext {
  organizationId: string;
  /** The API key used, or null for a stream token. */
  apiKeyId: string | null;
  scopes: string[];
  /** The key's own requests per minute, when it has one. */
  rateLimitPerMinute?: number | null;
  /** What the rate limiter counts against: the API key, or the JWT subject / internal caller. */
  rateLimitKey?: string;
  /** Set for a run-scoped stream token: the only workflowId it may read. */
  runScope?: string;
  /** Set for a run-scoped stream token: its claims, from which a stream sends its client fresh tokens. */
  streamToken?: import("./stream-tokens.ts").StreamTokenClaims;
}

/** Hono generics shared by every route and middleware of the edge Worker. */
export interface AppEnv {
  Bindings: Env;
  Variables: {
    requestId: string;
    auth: AuthContext;
    /** The verified nonce of a signed host request, for the route that claims it (run events). */
    hostNonce?: { nonce: string; expiresAt: number };
    /** The route's GET opens a capped stream (sse/stream-lease.ts `opensStream`), marked before rateLimit(). */
    opensStream?: true;
    /** The stream's place, taken by rateLimit() in the same call as its hit, for the route to claim. */
    earlyStreamLease?: import("./sse/stream-lease.ts").EarlyStreamLease;
    /** `Idempotency-Key` of a start request, checked and fingerprinted (middleware/idempotency). */
    idempotency?: import("./services/idempotency.ts").IdempotencyRequest;
  };
}

/** OpenAPIHono is Hono plus the registry GET /openapi.json is generated from. */
export type App = OpenAPIHono<AppEnv>;
