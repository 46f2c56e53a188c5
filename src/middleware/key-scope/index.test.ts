/**
 * requireKeyScope() on its own, in a minimal app: what each kind of credential may reach. The
 * walk over every real route is test/edge/key-scopes.test.ts.
 */
import { Hono } from "hono";
import { createMiddleware } from "hono/factory";
import { describe, expect, it } from "vitest";
import type { AppEnv, AuthContext } from "../../app-env.ts";
import { handleError } from "../../errors.ts";
import { streamTokenAuthContext } from "../../stream-tokens.ts";
import { requireKeyScope } from "./index.ts";

/** An app whose requests carry `auth`, with one read route, one stream route, one start route and one unlisted route. */
function appWith(auth: AuthContext) {
  const app = new Hono<AppEnv>();
  app.onError(handleError);
  app.use(
    "/workflow/*",
    createMiddleware<AppEnv>(async (c, next) => {
      c.set("auth", auth);
      await next();
    }),
  );
  app.use("/workflow/*", requireKeyScope());
  app.get("/workflow/:id/status", (c) => c.text("status"));
  app.get("/workflow/:id/history/stream", (c) => c.text("stream"));
  app.post("/workflow/start", (c) => c.text("started"));
  app.post("/workflow/:id/unlisted", (c) => c.text("unlisted"));
  return app;
}

const statuses = async (auth: AuthContext) => {
  const app = appWith(auth);
  const status = async (method: string, path: string) => (await app.request(path, { method })).status;
  return {
    read: await status("GET", "/workflow/w/status"),
    stream: await status("GET", "/workflow/w/history/stream"),
    start: await status("POST", "/workflow/start"),
    unlisted: await status("POST", "/workflow/w/unlisted"),
  };
};

const key = (scopes: string[]): AuthContext => ({ organizationId: "org_test", apiKeyId: "k", scopes });

describe("requireKeyScope", () => {
  it("lets a `*` key reach everything, unlisted routes included", async () => {
    expect(await statuses(key(["*"]))).toEqual({ read: 200, stream: 200, start: 200, unlisted: 200 });
  });

  it("lets a scoped key reach its scope's routes only, and no unlisted route", async () => {
    expect(await statuses(key(["runs:read"]))).toEqual({ read: 200, stream: 200, start: 403, unlisted: 403 });
    expect(await statuses(key(["runs:start"]))).toEqual({ read: 403, stream: 403, start: 200, unlisted: 403 });
  });

  it("lets a stream token reach the history streams and nothing else (the second fence after stream-token auth)", async () => {
    const token = streamTokenAuthContext({ organizationId: "org_test", workflowId: "w", apiKeyId: "k" });
    expect(await statuses(token)).toEqual({ read: 403, stream: 200, start: 403, unlisted: 403 });
  });
});
