/**
 * ownedRun() on its own, in a minimal app on the edge's real D1 (workerd, migrations applied):
 * the run it sets, the 404 that stops the chain, and a read replica without the row.
 */
import { env } from "cloudflare:workers";
import { Hono } from "hono";
import { createMiddleware } from "hono/factory";
import { beforeAll, beforeEach, describe, expect, it } from "vitest";
import type { AppEnv } from "../../app-env.ts";
import { handleError } from "../../errors.ts";
import { interceptD1 } from "../../../test/support/d1-intercept.ts";
import { errorCodeOf, seedCatalog, seedOrganization } from "../../../test/edge/helpers.ts";
import { createRunningRun } from "../../../test/edge/stream-helpers.ts";
import { type OwnedRun, ownedRun } from "./index.ts";

/** Reads through the primary and through read-replica sessions, counted. */
let reads: { primary: number; replica: number };
/** Calls of the handler behind the middleware. */
let handled: number;

/** `DB` counting its reads; a replica without the row answers "no row" to every statement. */
function countingDb(replicaHasRows: boolean): D1Database {
  return interceptD1(
    env.DB,
    () => {
      reads.primary++;
    },
    {
      session: (session) =>
        interceptD1(session, (call) => {
          reads.replica++;
          if (call.kind === "statement" && !replicaHasRows)
            return { answer: call.method === "first" ? null : call.method === "raw" ? [] : { results: [] } };
        }),
    },
  );
}

/** The caller's organization as auth sets it, then ownedRun(), then a handler that shows the run. */
function probeApp(organizationId: string) {
  const app = new Hono<AppEnv>();
  const auth = createMiddleware<AppEnv>(async (c, next) => {
    c.set("auth", { organizationId, apiKeyId: "key_test", scopes: [] });
    await next();
  });
  app.get("/workflow/:id/probe", auth, ownedRun(), (c) => {
    handled++;
    return c.json(c.get("ownedRun"));
  });
  app.onError(handleError);
  return app;
}

async function probe(organizationId: string, workflowId: string, replicaHasRows = true) {
  const res = await probeApp(organizationId).request(
    `/workflow/${encodeURIComponent(workflowId)}/probe`,
    {},
    { ...env, DB: countingDb(replicaHasRows) },
  );
  return { res, body: (await res.json()) as unknown };
}

let org: { organizationId: string };
let other: { organizationId: string };

beforeAll(async () => {
  await seedCatalog();
  org = await seedOrganization();
  other = await seedOrganization();
});

beforeEach(() => {
  reads = { primary: 0, replica: 0 };
  handled = 0;
});

describe("ownedRun", () => {
  it("sets the caller's run, read through a replica session only, as the ownedRun variable", async () => {
    const { workflowId } = await createRunningRun(org.organizationId);
    const { res, body } = await probe(org.organizationId, workflowId);
    expect(res.status).toBe(200);
    const owned = body as OwnedRun;
    expect(owned.workflowId).toBe(workflowId);
    expect(owned.fresh).toBe(false);
    expect(owned.run.temporalWorkflowId).toBe(workflowId);
    expect(owned.run.organizationId).toBe(org.organizationId);
    expect(handled).toBe(1);
    expect(reads).toEqual({ primary: 0, replica: 1 });
  });

  it("a replica without the row yet: the primary answers, and the run is marked fresh", async () => {
    const { workflowId } = await createRunningRun(org.organizationId);
    const { res, body } = await probe(org.organizationId, workflowId, false);
    expect(res.status).toBe(200);
    const owned = body as OwnedRun;
    expect(owned.fresh).toBe(true);
    expect(owned.run.temporalWorkflowId).toBe(workflowId);
    expect(handled).toBe(1);
    expect(reads).toEqual({ primary: 1, replica: 1 });
  });
});

describe("ownedRun refusals", () => {
  it("an unknown workflow id is 404 run_not_found and the handler never runs", async () => {
    const { res, body } = await probe(org.organizationId, `two_steps-${crypto.randomUUID()}`);
    expect(res.status).toBe(404);
    expect(errorCodeOf(body)).toBe("run_not_found");
    expect(handled).toBe(0);
    expect(reads).toEqual({ primary: 1, replica: 1 });
  });

  it("another organization's run is answered exactly like an unknown one", async () => {
    const foreign = await createRunningRun(other.organizationId);
    const { res, body } = await probe(org.organizationId, foreign.workflowId);
    expect(res.status).toBe(404);
    expect(errorCodeOf(body)).toBe("run_not_found");
    expect((body as { message: string }).message).toBe(`no run with workflowId "${foreign.workflowId}"`);
    expect(handled).toBe(0);
    // Its owner still gets it: the refusal is about the caller, not the row.
    expect((await probe(other.organizationId, foreign.workflowId)).res.status).toBe(200);
  });

  it("a malformed workflow id is 400 invalid_request before any read", async () => {
    const { res, body } = await probe(org.organizationId, "no spaces allowed");
    expect(res.status).toBe(400);
    expect(errorCodeOf(body)).toBe("invalid_request");
    expect(handled).toBe(0);
    expect(reads).toEqual({ primary: 0, replica: 0 });
  });
});
