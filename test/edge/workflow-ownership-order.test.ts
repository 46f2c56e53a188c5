/**
 * Where the Workflow API mounts ownedRun() (src/middleware/owned-run): after each route's own
 * checks, so a malformed `:rid`, query, body or cursor is its 400 without the ownership read (a
 * read-replica session: nothing else under /workflow reads through one before it), and only on
 * the routes that name a run: the fixed paths never read a run row.
 */
import { createExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { beforeAll, describe, expect, it } from "vitest";
import app from "../../src/index.ts";
import { UNPINNED_SUNSET } from "../../src/routes/workflow/stop.ts";
import { interceptD1 } from "../support/d1-intercept.ts";
import { errorCodeOf, seedCatalog, seedOrganization } from "./helpers.ts";

let key: string;
/** Reads through a read-replica session: ownedRun's first read. */
let replicaReads: number;

beforeAll(async () => {
  await seedCatalog();
  key = (await seedOrganization()).key;
});

async function send(method: string, path: string, init: { body?: string; headers?: Record<string, string> } = {}) {
  replicaReads = 0;
  const db = interceptD1(env.DB, () => undefined, {
    session: (session) =>
      interceptD1(session, () => {
        replicaReads++;
      }),
  });
  const headers = {
    authorization: `Bearer ${key}`,
    ...(init.body !== undefined ? { "content-type": "application/json" } : {}),
    ...init.headers,
  };
  const request = new Request(new URL(path, "http://edge.test"), { method, headers, body: init.body });
  const res = await app.fetch(request, { ...env, DB: db }, createExecutionContext());
  return { res, code: errorCodeOf(await res.json().catch(() => ({}))), replicaReads };
}

/** A well-formed id no run has: the ownership read would answer 404. */
const unknown = () => `two_steps-${crypto.randomUUID()}`;

describe("a route's own 400s come before the ownership read", () => {
  it("a malformed pinned run id, on every pinned route", async () => {
    const routes: Array<[string, string, string?]> = [
      ["GET", "status"],
      ["GET", "result"],
      ["GET", "input"],
      ["PATCH", "stop"],
      ["POST", "terminate", "{}"],
      ["GET", "history"],
      ["GET", "history/stream"],
      ["GET", "trace-log"],
      ["POST", "reset", '{"stepName":"a"}'],
    ];
    for (const [method, suffix, body] of routes) {
      const answer = await send(method, `/workflow/${unknown()}/runs/not-a-uuid/${suffix}`, { body });
      expect([answer.res.status, answer.code, answer.replicaReads], suffix).toEqual([400, "invalid_request", 0]);
    }
  });

  it("a bad history query, stream cursor, reset or terminate body", async () => {
    const cases = [
      await send("GET", `/workflow/${unknown()}/history?pageSize=0`),
      await send("GET", `/workflow/${unknown()}/runs/${crypto.randomUUID()}/history?pageSize=0`),
      await send("GET", `/workflow/${unknown()}/history/stream`, { headers: { "last-event-id": "x" } }),
      await send("POST", `/workflow/${unknown()}/reset`, { body: '{"stepName":5}' }),
      await send("POST", `/workflow/${unknown()}/runs/${crypto.randomUUID()}/terminate`, { body: '{"reason":5}' }),
    ];
    for (const answer of cases) expect([answer.res.status, answer.code, answer.replicaReads]).toEqual([400, "invalid_request", 0]);
    const notJson = await send("POST", `/workflow/${unknown()}/terminate`, { body: "{bad" });
    expect([notJson.res.status, notJson.code, notJson.replicaReads]).toEqual([400, "invalid_json", 0]);
  });

  it("past those checks the ownership read answers 404, and an unpinned stop keeps its deprecation headers on it", async () => {
    const stop = await send("PATCH", `/workflow/${unknown()}/stop`);
    expect([stop.res.status, stop.code, stop.replicaReads]).toEqual([404, "run_not_found", 1]);
    expect(stop.res.headers.get("deprecation")).toBe("true");
    expect(stop.res.headers.get("sunset")).toBe(UNPINNED_SUNSET);
    const pinned = await send("GET", `/workflow/${unknown()}/runs/${crypto.randomUUID().toUpperCase()}/history`);
    expect([pinned.res.status, pinned.code, pinned.replicaReads]).toEqual([404, "run_not_found", 1]);
  });
});

describe("routes that name no run make no ownership read", () => {
  it("catalog, the runs list, start and run, and a path no route has", async () => {
    const answers = [
      await send("GET", "/workflow/catalog"),
      await send("GET", "/workflow/catalog/outrider"),
      await send("GET", "/workflow/runs"),
      await send("POST", "/workflow/start", { body: "{}" }),
      await send("POST", "/workflow/run", { body: "{}" }),
      await send("GET", `/workflow/${unknown()}/nothing-here`),
      await send("POST", `/workflow/${unknown()}/status`),
    ];
    expect(answers.map((a) => a.replicaReads)).toEqual([0, 0, 0, 0, 0, 0, 0]);
    expect(answers.map((a) => a.res.status)).toEqual([200, 200, 200, 400, 400, 404, 404]);
  });
});
