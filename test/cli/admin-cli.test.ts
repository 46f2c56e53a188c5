/**
 * The admin CLI (`npm run admin`, scripts/admin.ts) run as a child process against the whole
 * stack: the admin API commands, `run` with live progress from the Workflow Runs API, and the
 * way it reports API errors, bad credentials and unreachable servers.
 */
import { execFileSync, spawn } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { createServer as createHttpServer, type IncomingMessage } from "node:http";
import { createServer as createHttpsServer } from "node:https";
import { createServer, type Server as NetServer } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { Client, Connection } from "@temporalio/client";
import { afterAll, beforeAll, describe, expect, inject, it, onTestFinished } from "vitest";
import { collectHistoryStream } from "../support/sse.ts";
import { until } from "../support/until.ts";

const root = resolve(import.meta.dirname, "../..");

interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Starts `node scripts/admin.ts ...args` (as `npm run admin` does) with the stack's credentials in its environment. */
function spawnCli(args: string[], env: Record<string, string | undefined> = {}) {
  const base: Record<string, string | undefined> = { ...process.env };
  for (const name of Object.keys(base)) if (name.startsWith("OUTRIDER_")) delete base[name];
  return spawn(process.execPath, ["scripts/admin.ts", ...args], {
    cwd: root,
    env: {
      ...base,
      OUTRIDER_URL: inject("baseUrl"),
      OUTRIDER_ADMIN_KEY: inject("adminKey"),
      OUTRIDER_INTERNAL_SECRET: inject("internalSecret"),
      OUTRIDER_API_KEY: inject("apiKey"),
      ...env,
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
}

/** Runs the CLI to its end; killed if it has not ended within `killAfterMs` (then `code` is null), for a CLI that may hang. */
function runCli(args: string[], env: Record<string, string | undefined>, killAfterMs?: number): Promise<CliResult> {
  const child = spawnCli(args, env);
  const timer = killAfterMs === undefined ? undefined : setTimeout(() => child.kill("SIGKILL"), killAfterMs);
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
  return new Promise((done, fail) => {
    child.once("error", fail);
    child.once("close", (code) => {
      clearTimeout(timer);
      done({ code, stdout, stderr });
    });
  });
}

/** Runs the CLI to its end. */
const cli = (args: string[], env: Record<string, string | undefined> = {}) => runCli(args, env);

/** Like cli(), but the CLI is killed if it has not ended within `ms`. */
const cliWithin = (ms: number, args: string[], env: Record<string, string | undefined> = {}) => runCli(args, env, ms);

/** Like cli(), but the command must succeed; with --json the parsed output is returned. */
async function ok(args: string[]): Promise<CliResult> {
  const result = await cli(args);
  expect(result.code, `${args.join(" ")}\n${result.stdout}\n${result.stderr}`).toBe(0);
  return result;
}

async function okJson<T = Record<string, any>>(args: string[]): Promise<T> {
  return JSON.parse((await ok([...args, "--json"])).stdout) as T;
}

const unique = () => Math.random().toString(36).slice(2, 10);

function catalog(key: string): Promise<Response> {
  return fetch(new URL("/workflow/catalog", inject("baseUrl")), { headers: { authorization: `Bearer ${key}` } });
}

/** A port nothing listens on. */
function freePort(): Promise<number> {
  return new Promise((done) => {
    const server = createServer().listen(0, "127.0.0.1", () => {
      const { port } = server.address() as { port: number };
      server.close(() => done(port));
    });
  });
}

/**
 * Puts `value` in .outrider/<name> (the dev-only credential files the CLI reads for a local URL)
 * with `mode`, for this test only: whatever was there (a developer's own key) is put back when it ends.
 */
function devCredentialFile(name: string, value: string, mode: number): string {
  const path = join(root, ".outrider", name);
  const before = existsSync(path) ? { text: readFileSync(path), mode: statSync(path).mode & 0o777 } : undefined;
  mkdirSync(join(root, ".outrider"), { recursive: true });
  writeFileSync(path, `${value}\n`);
  chmodSync(path, mode);
  onTestFinished(() => {
    if (!before) return rmSync(path, { force: true });
    writeFileSync(path, before.text);
    chmodSync(path, before.mode);
  });
  return path;
}

/** A stack trace's frame line, which the CLI must never print. */
const STACK_FRAME = /^\s+at .+[(:]\d+/m;

interface FakeAnswer {
  status: number;
  body: string;
  contentType?: string;
  headers?: Record<string, string>;
}

/**
 * What may answer at --url instead of the edge (a login page, a proxy, another service): every
 * request gets `answer(req)`. `requests` lists what was asked; it stops when the test ends.
 */
async function fakeEdge(answer: (req: IncomingMessage) => FakeAnswer) {
  const requests: Array<{ method: string; url: string; authorization: string | undefined; body: string }> = [];
  const server = createHttpServer((req, res) => {
    const request = { method: req.method ?? "", url: req.url ?? "", authorization: req.headers.authorization, body: "" };
    requests.push(request);
    req.on("data", (chunk: Buffer) => (request.body += chunk.toString()));
    req.once("end", () => {
      const { status, body, contentType, headers } = answer(req);
      res.writeHead(status, { ...headers, "content-type": contentType ?? "application/json" }).end(body);
    });
  });
  return { url: await listenUntilTestEnds(server), requests };
}

/** Listens on a free port of 127.0.0.1 and closes when the test ends, whichever way it ends; the server's URL. */
async function listenUntilTestEnds(server: NetServer & { closeAllConnections(): void }): Promise<string> {
  await new Promise<void>((done) => server.listen(0, "127.0.0.1", done));
  onTestFinished(
    () =>
      new Promise<void>((done) => {
        server.closeAllConnections();
        server.close(() => done());
      }),
  );
  return `http://127.0.0.1:${(server.address() as { port: number }).port}`;
}

describe("help", () => {
  it("lists every command, with no arguments, `help` and --help", async () => {
    for (const args of [[], ["help"], ["--help"]]) {
      const { code, stdout } = await cli(args);
      expect(code).toBe(0);
      for (const command of [
        "orgs create",
        "orgs list",
        "orgs show",
        "orgs suspend",
        "orgs resume",
        "orgs terminate-runs",
        "runs terminate",
        "keys create",
        "keys list",
        "keys revoke",
        "credits grant",
        "credits show",
        "workflows create",
        "workflows update",
        "workflows publish",
        "workflows unpublish",
        "run <workflow>",
      ]) {
        expect(stdout).toContain(command);
      }
    }
  });

  it("says how to give credentials without putting them on the command line, where ps shows them to every user", async () => {
    const { code, stdout } = await cli(["--help"]);
    expect(code).toBe(0);
    expect(stdout).toContain("visible to every user of the machine in `ps`");
    for (const variable of ["OUTRIDER_ADMIN_KEY", "OUTRIDER_INTERNAL_SECRET", "OUTRIDER_API_KEY"]) expect(stdout).toContain(variable);
    expect(stdout).toContain("--env NAME");
  });

  it("an unknown command, a missing argument and a foreign option are usage errors", async () => {
    const unknown = await cli(["frobnicate"]);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toContain('unknown command "frobnicate"');
    const missing = await cli(["keys", "list"]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain("missing <orgId>");
    const foreign = await cli(["orgs", "list", "--note", "x"]);
    expect(foreign.code).toBe(1);
    expect(foreign.stderr).toContain("--note does not apply to `orgs list`");
  });
});

describe("organizations and API keys", () => {
  const orgId = `org_cli_${unique()}`;

  it("orgs create, list and show", async () => {
    const created = await ok(["orgs", "create", "--name", "CLI Org", "--id", orgId]);
    expect(created.stdout).toContain(`created organization ${orgId}`);
    const list = await ok(["orgs", "list"]);
    expect(list.stdout).toMatch(new RegExp(`${orgId}\\s+CLI Org\\s+active\\s+unmetered`));
    const shown = await okJson(["orgs", "show", orgId]);
    expect(shown).toMatchObject({ id: orgId, name: "CLI Org", credits: { metered: false } });
    // A generated id.
    expect((await okJson(["orgs", "create", "--name", "Generated"])).id).toMatch(/^org_[a-z0-9]{12}$/);
    // A page at a time, newest first: the text output says how to go on.
    type Page = { organizations: Array<{ id: string; createdAt: string }>; next: string };
    const newest = await okJson<Page>(["orgs", "list", "--limit", "1"]);
    expect(newest.organizations).toHaveLength(1);
    expect((await ok(["orgs", "list", "--limit", "1"])).stdout).toContain("older organizations: --before ");
    const older = await okJson<Page>(["orgs", "list", "--limit", "1", "--before", newest.next]);
    expect(older.organizations).toHaveLength(1);
    expect(older.organizations[0]!.id).not.toBe(newest.organizations[0]!.id);
    expect(older.organizations[0]!.createdAt <= newest.organizations[0]!.createdAt).toBe(true);
    const bad = await cli(["orgs", "list", "--before", "not_a_cursor"]);
    expect([bad.code, bad.stderr.includes("invalid_request")]).toEqual([1, true]);
  });

  it("a taken id is the API's error code on stderr and exit 1", async () => {
    const again = await cli(["orgs", "create", "--name", "CLI Org", "--id", orgId]);
    expect(again.code).toBe(1);
    expect(again.stderr).toContain("organization_exists");
    const bad = await cli(["orgs", "create", "--name", "x", "--id", "BAD"]);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain("invalid_request");
    expect(bad.stderr).toContain("- id:");
  });

  it("keys create prints a working key once, with a warning; keys revoke turns one off", async () => {
    const created = await ok(["keys", "create", orgId, "--name", "backend", "--rate-limit", "500"]);
    const key = created.stdout.match(/otr_[a-z0-9]+_[A-Za-z0-9]+/)?.[0];
    expect(key).toBeDefined();
    expect(created.stderr).toContain("will not be shown again");
    expect((await catalog(key!)).status).toBe(200);

    // A second key, revoked before it is ever used (so no edge isolate has it cached).
    const second = await okJson<{ id: string; key: string }>(["keys", "create", orgId, "--name", "temporary"]);
    const revoked = await ok(["keys", "revoke", orgId, second.id]);
    expect(revoked.stdout).toContain(`revoked API key ${second.id}`);
    expect((await catalog(second.key)).status).toBe(401);

    const list = await ok(["keys", "list", orgId]);
    expect(list.stdout).toMatch(/backend\s+otr_[a-z0-9]+_…\s+500/);
    expect(list.stdout).not.toContain(key!.split("_")[2]);
    const keys = (await okJson<{ apiKeys: Array<{ id: string; revokedAt: string | null }> }>(["keys", "list", orgId])).apiKeys;
    expect(keys.find((k) => k.id === second.id)?.revokedAt).toBeTruthy();
    // A page at a time, newest first: --limit 1 names the next page, --before reads it.
    type KeyPage = { apiKeys: Array<{ id: string }>; next: string };
    const newest = await okJson<KeyPage>(["keys", "list", orgId, "--limit", "1"]);
    expect(newest.apiKeys.map((k) => k.id)).toEqual([second.id]);
    expect((await ok(["keys", "list", orgId, "--limit", "1"])).stdout).toContain(`older API keys: --before ${newest.next}`);
    const older = await okJson<KeyPage>(["keys", "list", orgId, "--limit", "1", "--before", newest.next]);
    expect(older.apiKeys).toHaveLength(1);
    expect(older.apiKeys[0]!.id).not.toBe(second.id);

    const unknown = await cli(["keys", "revoke", orgId, "nosuchkey"]);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toContain("api_key_not_found");
  });

  it("keys create --scopes makes a key that may do only that, and says so; an unknown scope is the API's 400", async () => {
    const created = await ok(["keys", "create", orgId, "--name", "dashboard", "--scopes", "runs:read, runs:read"]);
    expect(created.stdout).toContain("scopes: runs:read)");
    const key = created.stdout.match(/otr_[a-z0-9]+_[A-Za-z0-9]+/)![0];
    expect((await catalog(key)).status).toBe(200);
    const start = await fetch(new URL("/workflow/start", inject("baseUrl")), {
      method: "POST",
      headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
      body: JSON.stringify({ workflowName: "hello", input: { name: "Ada" } }),
    });
    expect(start.status).toBe(403);
    expect(start.headers.get("www-authenticate")).toContain('scope="runs:start"');
    expect((await ok(["keys", "list", orgId])).stdout).toMatch(/dashboard\s+otr_[a-z0-9]+_…\s+default\s+runs:read\s/);
    const bad = await cli(["keys", "create", orgId, "--name", "x", "--scopes", "runs:admin"]);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain("invalid_request");
    expect(bad.stderr).toContain("scopes");
  });
});

describe("orgs suspend and resume", () => {
  it("suspend refuses the organization's key (403 organization_suspended) and shows why; again changes nothing; resume makes it active", async () => {
    const orgId = `org_cli_${unique()}`;
    await ok(["orgs", "create", "--name", "To suspend", "--id", orgId]);
    // Never used before the suspension, so no edge isolate has the organization's status cached.
    const { key } = await okJson<{ key: string }>(["keys", "create", orgId, "--name", "backend"]);

    const suspended = await ok(["orgs", "suspend", orgId, "--reason", "unpaid invoice 42"]);
    expect(suspended.stdout).toContain(`suspended organization ${orgId}`);
    expect(suspended.stdout).toMatch(/status\s+suspended since \S+ \(unpaid invoice 42\)/);
    expect(suspended.stdout).toContain("within 30 s");
    const refused = await catalog(key);
    expect([refused.status, ((await refused.json()) as { code: string }).code]).toEqual([403, "organization_suspended"]);

    const shown = await okJson(["orgs", "show", orgId]);
    expect(shown).toMatchObject({ status: "suspended", suspensionReason: "unpaid invoice 42" });
    const again = await okJson(["orgs", "suspend", orgId, "--reason", "another reason"]);
    expect(again).toMatchObject({ status: "suspended", suspendedAt: shown.suspendedAt, suspensionReason: "unpaid invoice 42" });
    expect((await ok(["orgs", "list", "--limit", "500"])).stdout).toMatch(new RegExp(`${orgId}\\s+To suspend\\s+suspended\\s`));

    const resumed = await ok(["orgs", "resume", orgId]);
    expect(resumed.stdout).toContain(`resumed organization ${orgId}`);
    expect(resumed.stdout).toMatch(/status\s+active/);
    expect(await okJson(["orgs", "show", orgId])).toMatchObject({ status: "active", suspendedAt: null, suspensionReason: null });
    expect((await ok(["orgs", "resume", orgId])).stdout).toContain(`resumed organization ${orgId}`);
  });

  it("suspend without --reason is a usage error (nothing sent); an unknown organization is the API's 404; an empty reason the API's 400", async () => {
    const missing = await cli(["orgs", "suspend", "org_whatever"]);
    expect([missing.code, missing.stderr.includes("--reason is required")]).toEqual([1, true]);
    const unknown = await cli(["orgs", "suspend", `org_nope_${unique()}`, "--reason", "x"]);
    expect([unknown.code, unknown.stderr.includes("organization_not_found")]).toEqual([1, true]);
    const resumeUnknown = await cli(["orgs", "resume", `org_nope_${unique()}`]);
    expect([resumeUnknown.code, resumeUnknown.stderr.includes("organization_not_found")]).toEqual([1, true]);
    const orgId = (await okJson(["orgs", "create", "--name", "Blank reason"])).id as string;
    const blank = await cli(["orgs", "suspend", orgId, "--reason", "   "]);
    expect([blank.code, blank.stderr.includes("invalid_request"), blank.stderr.includes("reason")]).toEqual([1, true, true]);
  });
});

describe("runs terminate and orgs terminate-runs: an operator stops a suspended organization's runs", () => {
  let temporal: Client;
  beforeAll(async () => {
    temporal = new Client({ connection: await Connection.connect({ address: inject("temporalAddress") }) });
  });
  afterAll(async () => {
    await temporal?.connection.close();
  });

  const REASON = "abuse report 42";
  const RECORDED = `terminated by the operator: ${REASON}`;
  const api = (key: string, path: string, init: RequestInit = {}) =>
    fetch(new URL(path, inject("baseUrl")), {
      ...init,
      headers: { authorization: `Bearer ${key}`, "content-type": "application/json", ...(init.headers as Record<string, string>) },
    });
  /** An `approval` run of the organization (it waits for a human: it runs until stopped), once Temporal runs it. */
  async function waitingRun(key: string): Promise<string> {
    const res = await api(key, "/workflow/start", {
      method: "POST",
      body: JSON.stringify({ workflowName: "approval", input: { request: "spam" } }),
    });
    expect(res.status).toBe(200);
    const { workflowId } = (await res.json()) as { workflowId: string };
    const running = await until(async () => {
      const status = (await (await api(key, `/workflow/${workflowId}/status`)).json()) as { status: string };
      return status.status === "running";
    }, 30_000);
    expect(running).toBe(true);
    return workflowId;
  }
  const temporalStatus = async (workflowId: string) => (await temporal.workflow.getHandle(workflowId).describe()).status.name;
  async function terminateReason(workflowId: string) {
    const history = await temporal.workflow.getHandle(workflowId).fetchHistory();
    return history.events?.find((e) => e.workflowExecutionTerminatedEventAttributes)?.workflowExecutionTerminatedEventAttributes?.reason;
  }

  it("terminate one run, then the rest: Temporal has them terminated with the operator's reason, their streams end, their holds are released, their rows end terminated", async () => {
    const orgId = `org_cli_${unique()}`;
    await ok(["orgs", "create", "--name", "Abuser", "--id", orgId]);
    await ok(["credits", "grant", orgId, "100000", "--note", "trial"]);
    const { key } = await okJson<{ key: string }>(["keys", "create", orgId, "--name", "backend"]);
    const first = await waitingRun(key);
    const others = [await waitingRun(key), await waitingRun(key)];
    // A stream the tenant opened before the suspension: it ends with the run.
    const stream = await api(key, `/workflow/${first}/history/stream`);
    expect(stream.status).toBe(200);
    const streamed = collectHistoryStream(stream.body!);
    expect((await okJson(["orgs", "show", orgId])).credits.reserved).toBeGreaterThan(0);
    await ok(["orgs", "suspend", orgId, "--reason", "abuse"]);
    // The tenant cannot stop them itself.
    const refused = await api(key, `/workflow/${first}/terminate`, { method: "POST", body: "{}" });
    expect(refused.status).toBe(403);

    const one = await ok(["runs", "terminate", first, "--org", orgId, "--reason", REASON]);
    expect(one.stdout).toContain(`terminated run ${first} of ${orgId}`);
    expect(one.stdout).toContain(RECORDED);
    expect(await temporalStatus(first)).toBe("TERMINATED");
    expect(await terminateReason(first)).toBe(RECORDED);
    const seen = await streamed;
    expect(seen.done).toHaveLength(1);

    const all = await ok(["orgs", "terminate-runs", orgId, "--reason", REASON, "--limit", "1"]);
    for (const workflowId of others) expect(all.stdout).toMatch(new RegExp(`${workflowId}\\s+\\S+\\s+terminated`));
    for (const workflowId of others) {
      expect(await temporalStatus(workflowId)).toBe("TERMINATED");
      expect(await terminateReason(workflowId)).toBe(RECORDED);
    }
    // The ends reach D1: the holds are released, and asked again there is nothing left to terminate.
    expect(await until(async () => (await okJson(["orgs", "show", orgId])).credits.reserved === 0, 30_000)).toBe(true);
    const again = await okJson<{ results: unknown[]; remaining: number }>(["orgs", "terminate-runs", orgId, "--reason", REASON]);
    expect(again).toMatchObject({ results: [], remaining: 0 });
    await ok(["orgs", "resume", orgId]);
    for (const workflowId of [first, ...others]) {
      const status = (await (await api(key, `/workflow/${workflowId}/status`)).json()) as { status: string };
      expect(status.status).toBe("terminated");
    }
    // What the tenant sees: the operator's reason, as the run's error.
    expect(JSON.stringify(await (await api(key, `/workflow/${first}/result`)).json())).toContain(RECORDED);
  });

  it("usage errors without --reason or --org (nothing sent); the API's 404s for an unknown organization or run, and run_ended for a finished run; exit 1", async () => {
    const missingReason = await cli(["runs", "terminate", "hello-x", "--org", "org_whatever"]);
    expect([missingReason.code, missingReason.stderr.includes("--reason is required")]).toEqual([1, true]);
    const missingOrg = await cli(["runs", "terminate", "hello-x", "--reason", REASON]);
    expect([missingOrg.code, missingOrg.stderr.includes("--org is required")]).toEqual([1, true]);
    const missingAll = await cli(["orgs", "terminate-runs", "org_whatever"]);
    expect([missingAll.code, missingAll.stderr.includes("--reason is required")]).toEqual([1, true]);
    const unknownOrg = await cli(["orgs", "terminate-runs", `org_nope_${unique()}`, "--reason", REASON]);
    expect([unknownOrg.code, unknownOrg.stderr.includes("organization_not_found")]).toEqual([1, true]);

    const orgId = (await okJson(["orgs", "create", "--name", "Finished runs"])).id as string;
    const unknownRun = await cli(["runs", "terminate", `hello-${crypto.randomUUID()}`, "--org", orgId, "--reason", REASON]);
    expect([unknownRun.code, unknownRun.stderr.includes("run_not_found")]).toEqual([1, true]);
    const { key } = await okJson<{ key: string }>(["keys", "create", orgId, "--name", "backend"]);
    const res = await api(key, "/workflow/run", {
      method: "POST",
      body: JSON.stringify({ workflowName: "hello", input: { name: "Ada" } }),
    });
    const { workflowId } = (await res.json()) as { workflowId: string };
    const finished = await cli(["runs", "terminate", workflowId, "--org", orgId, "--reason", REASON]);
    expect([finished.code, finished.stderr.includes("run_ended")]).toEqual([1, true]);
  });
});

describe("credits", () => {
  it("grant (also negative amounts) and show with the ledger", async () => {
    const orgId = (await okJson(["orgs", "create", "--name", "CLI credits"])).id as string;
    const granted = await ok(["credits", "grant", orgId, "5000", "--note", "trial grant"]);
    expect(granted.stdout).toContain("granted 5000 credits (trial grant)");
    await ok(["credits", "grant", orgId, "-200", "--note", "correction"]);

    const shown = await ok(["credits", "show", orgId]);
    expect(shown.stdout).toMatch(/balance\s+4800/);
    expect(shown.stdout).toMatch(/reserved\s+0/);
    expect(shown.stdout).toMatch(/available\s+4800/);
    expect(shown.stdout).toMatch(/grant\s+-200\s+4800\s+-\s+correction/);
    expect(shown.stdout).toMatch(/grant\s+\+5000\s+5000\s+-\s+trial grant/);
    expect(shown.stdout.indexOf("correction")).toBeLessThan(shown.stdout.indexOf("trial grant"));

    const limited = await okJson<{ balance: number; ledger: Array<{ note: string }>; next: string }>([
      "credits",
      "show",
      orgId,
      "--limit",
      "1",
    ]);
    expect(limited.balance).toBe(4800);
    expect(limited.ledger.map((e) => e.note)).toEqual(["correction"]);
    // Older entries, a page at a time: the text output says how to go on.
    expect((await ok(["credits", "show", orgId, "--limit", "1"])).stdout).toContain(`older entries: --before ${limited.next}`);
    const older = await okJson<{ ledger: Array<{ note: string }>; next: string | null }>([
      "credits",
      "show",
      orgId,
      "--limit",
      "1",
      "--before",
      limited.next,
    ]);
    expect([older.ledger.map((e) => e.note), older.next]).toEqual([["trial grant"], null]);

    const zero = await cli(["credits", "grant", orgId, "0"]);
    expect(zero.code).toBe(1);
    expect(zero.stderr).toContain("invalid_request");
    const notNumber = await cli(["credits", "grant", orgId, "lots"]);
    expect(notNumber.code).toBe(1);
    expect(notNumber.stderr).toContain("<amount> must be an integer");
  });

  it("grant with --idempotency-key: running it again with the key applies it once; the key with another amount fails", async () => {
    const orgId = (await okJson(["orgs", "create", "--name", "CLI idempotent credits"])).id as string;
    const key = `invoice-${crypto.randomUUID()}`;
    for (let i = 0; i < 2; i++) await ok(["credits", "grant", orgId, "700", "--note", "invoice", "--idempotency-key", key]);
    const shown = await okJson<{ balance: number; ledger: unknown[] }>(["credits", "show", orgId]);
    expect([shown.balance, shown.ledger.length]).toEqual([700, 1]);
    const reused = await cli(["credits", "grant", orgId, "900", "--note", "invoice", "--idempotency-key", key]);
    expect(reused.code).toBe(1);
    expect(reused.stderr).toContain("idempotency_key_reused");
  });

  it("grant run again with its --idempotency-key says the grant was applied before and nothing changed, never 'granted' again", async () => {
    const orgId = (await okJson(["orgs", "create", "--name", "CLI replayed credits"])).id as string;
    const key = `invoice-${crypto.randomUUID()}`;
    const grant = ["credits", "grant", orgId, "700", "--note", "invoice", "--idempotency-key", key];
    expect((await ok(grant)).stdout).toContain("granted 700 credits (invoice)");
    const again = await ok(grant);
    expect(again.stdout).not.toMatch(/^granted/m);
    expect(again.stdout).toContain("already granted 700 credits (invoice) with this idempotency key");
    expect(again.stdout).toContain("nothing changed");
    expect(again.stdout).toMatch(/balance\s+700/);
    // --json: the replay's body is the first answer's; `replayed: true` tells it apart.
    const replayed = await okJson(grant);
    expect(replayed).toMatchObject({ replayed: true, entry: { amount: 700, note: "invoice" }, credits: { balance: 700 } });
    expect(await okJson(["credits", "grant", orgId, "5", "--idempotency-key", `${key}-new`])).not.toHaveProperty("replayed");
    const removal = ["credits", "grant", orgId, "-200", "--idempotency-key", `${key}-removal`];
    await ok(removal);
    expect((await ok(removal)).stdout).toContain("already removed 200 credits with this idempotency key");
  });
});

describe("prompt workflows", () => {
  it("create, update, publish, then POST /api/v1/run/<id> works with a key made by the CLI; unpublish stops it", async () => {
    const orgId = (await okJson(["orgs", "create", "--name", "CLI workflows"])).id as string;
    const key = (await okJson<{ key: string }>(["keys", "create", orgId, "--name", "runner"])).key;
    const created = await ok([
      "workflows",
      "create",
      orgId,
      "--name",
      "Explain",
      "--template",
      "Explain {{topic}} in one sentence.",
      "--model",
      "local/writer",
      "--max-output-tokens",
      "64",
      "--description",
      "from the CLI",
    ]);
    const workflowId = created.stdout.match(/wf_[a-z0-9]+/)![0];
    expect(created.stdout).toMatch(/variables\s+topic/);
    expect(created.stdout).toMatch(/published\s+no/);

    const runIt = () =>
      fetch(new URL(`/api/v1/run/${workflowId}`, inject("baseUrl")), {
        method: "POST",
        headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
        body: JSON.stringify({ topic: "durable execution" }),
      });
    expect((await runIt()).status).toBe(404);

    const updated = await okJson(["workflows", "update", workflowId, "--web-search", "--description", "changed"]);
    expect(updated).toMatchObject({ webSearch: true, description: "changed", maxOutputTokens: 64 });
    expect(await okJson(["workflows", "update", workflowId, "--no-web-search"])).toMatchObject({ webSearch: false });

    expect((await ok(["workflows", "publish", workflowId])).stdout).toContain(`published prompt workflow ${workflowId}`);
    const res = await runIt();
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ success: true, result: expect.any(String) });

    expect((await ok(["workflows", "list", orgId])).stdout).toMatch(new RegExp(`${workflowId}\\s+Explain\\s+local/writer\\s+yes\\s+topic`));
    expect((await ok(["workflows", "show", workflowId])).stdout).toContain("Explain {{topic}} in one sentence.");

    await ok(["workflows", "unpublish", workflowId]);
    expect((await runIt()).status).toBe(404);

    const badModel = await cli(["workflows", "create", orgId, "--name", "Bad", "--template", "{{x}}", "--model", "nope"]);
    expect(badModel.code).toBe(1);
    expect(badModel.stderr).toContain("invalid_request");
    expect(badModel.stderr).toContain("- model:");
    const missing = await cli(["workflows", "create", orgId, "--name", "No template"]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain("--template is required");
  });
});

describe("run", () => {
  let orgId = "";
  beforeAll(async () => {
    orgId = (await okJson(["orgs", "create", "--name", "CLI runs"])).id as string;
  });

  it("shows progress as it happens, then the outputs", async () => {
    const { code, stdout } = await cli(["run", "hello", "--org", orgId, "--input", '{"name":"Ada"}']);
    expect(code, stdout).toBe(0);
    expect(stdout).toMatch(/workflow run [0-9a-f-]{36} running/);
    expect(stdout).toMatch(/activity composeGreeting\s+attempt 1\s+running/);
    expect(stdout).toMatch(/activity composeGreeting\s+attempt 1\s+completed/);
    expect(stdout).toMatch(/workflow run [0-9a-f-]{36} completed/);
    expect(stdout).toContain('"greeting": "Hello, Ada!"');
    // Progress lines come before the outputs, in the order they happened, each with its elapsed time.
    const lines = stdout.split("\n");
    const at = (pattern: RegExp) => lines.findIndex((line) => pattern.test(line));
    expect(at(/composeGreeting\s+attempt 1\s+running/)).toBeLessThan(at(/composeGreeting\s+attempt 1\s+completed/));
    expect(at(/composeGreeting\s+attempt 1\s+completed/)).toBeLessThan(at(/^outputs:/));
    expect(lines[at(/composeGreeting\s+attempt 1\s+completed/)]).toMatch(/^\+\s*\d+\.\d\ds .*\(\d+\.\d\ds\)$/);
  });

  it("prints each step while the run is still going, not at the end", async () => {
    const child = spawnCli(["run", "two_steps", "--org", orgId, "--input", '{"text":"slow and steady","pauseMs":4000}']);
    let stdout = "";
    const exited = new Promise<number | null>((done) => child.once("close", done));
    const firstStep = await new Promise<string>((done, fail) => {
      child.stdout.on("data", (chunk: Buffer) => {
        stdout += chunk.toString();
        const line = stdout.split("\n").find((l) => /activity \S+\s+attempt 1\s+completed/.test(l));
        if (line) done(line);
      });
      child.once("close", () => fail(new Error(`exited before any step was shown:\n${stdout}`)));
    });
    expect(firstStep).toBeTruthy();
    // The run pauses 4 s after its first step: the CLI has shown it and is still following.
    expect(child.exitCode).toBeNull();
    expect(stdout).not.toContain("outputs:");
    expect(await exited).toBe(0);
    expect(stdout).toContain("outputs:");
  });

  it("--env reaches the workflow's activities", async () => {
    const { code, stdout } = await cli(["run", "hello", "--org", orgId, "--input", '{"name":"Ada"}', "--env", "GREETING=Bonjour"]);
    expect(code).toBe(0);
    expect(stdout).toContain('"greeting": "Bonjour, Ada!"');
  });

  it("a retried step shows attempts 1 and 2", async () => {
    const { code, stdout } = await cli(["run", "flaky_step", "--org", orgId, "--input", '{"failures":1}']);
    expect(code, stdout).toBe(0);
    expect(stdout).toMatch(/activity unreliableStep\s+attempt 1\s+failed/);
    expect(stdout).toMatch(/activity unreliableStep\s+attempt 2\s+running/);
    expect(stdout).toMatch(/activity unreliableStep\s+attempt 2\s+completed/);
    expect(stdout).toContain('"attempts": 2');
  });

  it("shows the thinking of LLM steps", async () => {
    const { code, stdout } = await cli(["run", "company_research", "--org", orgId, "--input", '{"domain":"example.org"}']);
    expect(code, stdout).toBe(0);
    expect(stdout).toMatch(/thinking: Reading the request/);
    expect(stdout).toMatch(/\d+ tokens/);
  });

  it("a failed run: its error on stderr, exit 1", async () => {
    const { code, stdout, stderr } = await cli(["run", "always_fails", "--org", orgId]);
    expect(code).toBe(1);
    expect(stdout).toMatch(/workflow run [0-9a-f-]{36} failed/);
    expect(stderr).toContain("workflow run failed");
    expect(stderr).toContain("gave up on purpose");
  });

  it("bad input: the API's error code and issues, exit 1", async () => {
    const invalid = await cli(["run", "hello", "--org", orgId, "--input", '{"name":5}']);
    expect(invalid.code).toBe(1);
    expect(invalid.stderr).toContain("invalid_input");
    expect(invalid.stderr).toContain("- input.name:");
    const notJson = await cli(["run", "hello", "--org", orgId, "--input", "{name"]);
    expect(notJson.code).toBe(1);
    expect(notJson.stderr).toContain("--input is not valid JSON");
    const unknown = await cli(["run", "no_such_workflow", "--org", orgId]);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toContain('no workflow named "no_such_workflow"');
    expect(unknown.stderr).toContain("hello");
  });

  it("--json prints one JSON line per event, ending with the result", async () => {
    const { code, stdout } = await cli(["run", "hello", "--org", orgId, "--input", '{"name":"Bo"}', "--json"]);
    expect(code).toBe(0);
    const events = stdout
      .trim()
      .split("\n")
      .map((line) => JSON.parse(line) as { event: string; data: Record<string, any> });
    expect(events.map((e) => e.event)).toEqual(["workflow-run", "activity-run", "activity-run", "workflow-run", "result"]);
    expect(events.at(-1)!.data.workflowRun.outputs).toEqual({ greeting: "Hello, Bo!" });
  });

  it("an organization that does not exist: the hint names it, not the secret", async () => {
    const { code, stderr } = await cli(["run", "hello", "--org", "org_no_such_org", "--input", '{"name":"Ada"}']);
    expect(code).toBe(1);
    expect(stderr).toContain('organization "org_no_such_org" does not exist');
    expect(stderr).not.toContain("OUTRIDER_INTERNAL_SECRET");
  });

  it("a wrong internal secret is unauthorized, with a hint", async () => {
    const { code, stderr } = await cli(["run", "hello", "--org", orgId, "--input", '{"name":"Ada"}'], {
      OUTRIDER_INTERNAL_SECRET: "not-the-secret",
    });
    expect(code).toBe(1);
    expect(stderr).toContain("unauthorized");
    expect(stderr).toContain("OUTRIDER_INTERNAL_SECRET");
  });
});

describe("run: a start not yet confirmed, a resume after the end", () => {
  const RUN_ID = "0b6c7d2e-8f90-4a1b-9c2d-3e4f5a6b7c8d";
  const WORKFLOW_ID = "5f0e4c1a-2b3d-4e5f-8a9b-0c1d2e3f4a5b";
  const sse = (frames: string[]): FakeAnswer => ({ status: 200, body: frames.join(""), contentType: "text/event-stream" });
  const frame = (event: string, id: string, data: unknown) => `event: ${event}\nid: ${id}\ndata: ${JSON.stringify(data)}\n\n`;
  const runningFrame = frame("workflow-run", "1", { content: { workflowRunId: RUN_ID, status: "running" } });

  it("a 202 (accepted, Temporal has not confirmed the start yet) is followed by the run's id, waiting out 503 Retry-After until it starts: never 'the stream ended'", async () => {
    let streamCalls = 0;
    const edge = await fakeEdge((req) => {
      if (req.method === "POST")
        return { status: 202, body: JSON.stringify({ success: true, workflowRun: { id: RUN_ID, status: "scheduled" } }) };
      if (req.url === `/api/v1/workflow-runs/${RUN_ID}/stream` && ++streamCalls === 1) {
        return {
          status: 503,
          headers: { "retry-after": "1" },
          body: JSON.stringify({ error: { code: "host_unavailable", message: "the run has not started yet" } }),
        };
      }
      return sse([runningFrame, frame("result", "2.end", { success: true, workflowRun: { id: RUN_ID, outputs: { answer: 42 } } })]);
    });
    const { code, stdout, stderr } = await cliWithin(30_000, ["run", WORKFLOW_ID, "--org", "org_x"], { OUTRIDER_URL: edge.url });
    expect(code, `${stdout}\n${stderr}`).toBe(0);
    expect(stdout).toContain(RUN_ID);
    expect(stdout).toContain('"answer": 42');
    expect(edge.requests.filter((r) => r.url === `/api/v1/workflow-runs/${RUN_ID}/stream`)).toHaveLength(2);
  });

  it("a resume answered 204 (nothing after the last event: the run has ended) reads the run's outcome, not 'connection lost' five times", async () => {
    for (const [status, exit, shown] of [
      ["completed", 0, '"answer": 42'],
      ["failed", 1, "the model refused"],
    ] as const) {
      const edge = await fakeEdge((req) => {
        if (req.method === "POST") return sse([runningFrame]); // the stream ends before the run's result
        if (req.url === `/api/v1/workflow-runs/${RUN_ID}/stream`) return { status: 204, body: "" };
        return {
          status: 200,
          body: JSON.stringify({
            id: RUN_ID,
            status,
            outputs: status === "completed" ? { answer: 42 } : null,
            error: status === "failed" ? "the model refused" : null,
          }),
        };
      });
      const { code, stdout, stderr } = await cliWithin(30_000, ["run", WORKFLOW_ID, "--org", "org_x"], { OUTRIDER_URL: edge.url });
      expect([status, code], `${stdout}\n${stderr}`).toEqual([status, exit]);
      expect(`${stdout}${stderr}`).toContain(shown);
      expect(`${stdout}${stderr}`).not.toContain("connection lost");
      const resumes = edge.requests.filter((r) => r.url === `/api/v1/workflow-runs/${RUN_ID}/stream`);
      expect(resumes).toHaveLength(1);
    }
  });
});

describe("credentials and connections", () => {
  it("a wrong admin key: unauthorized, exit 1", async () => {
    const { code, stderr } = await cli(["orgs", "list"], { OUTRIDER_ADMIN_KEY: "wrong-admin-key" });
    expect(code).toBe(1);
    expect(stderr).toContain("unauthorized");
    expect(stderr).toContain("OUTRIDER_ADMIN_KEY");
  });

  it("a credential a header cannot carry (two keys on two lines) is refused before sending, and never printed", async () => {
    const secret = `${inject("adminKey")}\nsecond-key-value`;
    const { code, stderr } = await cli(["orgs", "list"], { OUTRIDER_ADMIN_KEY: secret });
    expect(code).toBe(1);
    expect(stderr).toContain("characters a header cannot carry");
    expect(stderr).not.toContain("second-key-value");
    expect(stderr).not.toContain(inject("adminKey"));
  });

  it("an unreachable URL: a message naming it", async () => {
    const port = await freePort();
    const { code, stderr } = await cli(["orgs", "list"], { OUTRIDER_URL: `http://127.0.0.1:${port}` });
    expect(code).toBe(1);
    expect(stderr).toContain(`cannot reach Outrider at http://127.0.0.1:${port} (connection refused)`);
  });

  it.skipIf(process.platform === "win32")(
    "a .outrider credential file other users can read is refused (like ssh's private keys), naming it and the fix; at 0600 it is used",
    async () => {
      const edge = await fakeEdge(() => ({ status: 200, body: '{"organizations":[],"next":null}' }));
      const path = devCredentialFile("dev-admin-key", "dev-admin-key-of-the-test", 0o644);
      for (const mode of [0o644, 0o640, 0o604, 0o660]) {
        chmodSync(path, mode);
        const { code, stderr } = await cli(["orgs", "list"], { OUTRIDER_URL: edge.url, OUTRIDER_ADMIN_KEY: undefined });
        expect([mode.toString(8), code]).toEqual([mode.toString(8), 1]);
        expect(stderr).toContain(`.outrider/dev-admin-key can be read by other users (mode ${mode.toString(8)})`);
        expect(stderr).toContain(`chmod 600 ${path}`);
        expect(stderr).not.toContain("dev-admin-key-of-the-test");
      }
      expect(edge.requests).toEqual([]);
      chmodSync(path, 0o600);
      const { code, stdout } = await cli(["orgs", "list"], { OUTRIDER_URL: edge.url, OUTRIDER_ADMIN_KEY: undefined });
      expect(code).toBe(0);
      expect(stdout).toContain("no organizations");
      expect(edge.requests.map((r) => r.authorization)).toEqual(["Bearer dev-admin-key-of-the-test"]);
    },
  );

  it("a --url / OUTRIDER_URL that is refused never echoes the credentials in it", async () => {
    for (const url of [
      "http://admin:hunter2-secret@outrider.invalid:bad",
      "ftp://admin:hunter2-secret@outrider.invalid/",
      "admin:hunter2-secret@outrider.invalid",
    ]) {
      for (const given of [
        { args: ["--url", url], env: {} },
        { args: [], env: { OUTRIDER_URL: url } },
      ]) {
        const { code, stderr } = await cli(["orgs", "list", ...given.args], given.env);
        expect([url, code]).toEqual([url, 1]);
        expect(stderr).toMatch(/--url.*(is not a URL|must be http\(s\))/);
        expect(stderr).toContain("[redacted]@outrider.invalid");
        expect(stderr).not.toContain("hunter2-secret");
        expect(stderr).not.toContain("admin:");
      }
    }
    // A URL that parses drops its credentials: what reaches a message is the origin alone.
    const port = await freePort();
    const { code, stderr } = await cli(["orgs", "list", "--url", `http://admin:hunter2-secret@127.0.0.1:${port}`]);
    expect([code, stderr.includes(`cannot reach Outrider at http://127.0.0.1:${port}`), stderr.includes("hunter2-secret")]).toEqual([
      1,
      true,
      false,
    ]);
  });

  it("no admin key for a deployed URL: says how to set one (dev files are for local URLs only)", async () => {
    const { code, stderr } = await cli(["orgs", "list", "--url", "https://outrider.invalid"], { OUTRIDER_ADMIN_KEY: undefined });
    expect(code).toBe(1);
    expect(stderr).toContain("no admin API key");
    expect(stderr).toContain("OUTRIDER_ADMIN_KEY");
  });
});

describe("wrong arguments: a clear message and exit 1, nothing sent", () => {
  it("a number past what a JSON number holds exactly is refused, not rounded into another amount", async () => {
    const edge = await fakeEdge(() => ({ status: 200, body: "{}" }));
    for (const args of [
      ["credits", "grant", "org_x", "9007199254740993"],
      ["credits", "grant", "org_x", "-99999999999999999999"],
      ["keys", "create", "org_x", "--name", "k", "--rate-limit", "18446744073709551616"],
    ]) {
      const { code, stderr } = await cli(args, { OUTRIDER_URL: edge.url });
      expect([args.join(" "), code]).toEqual([args.join(" "), 1]);
      expect(stderr).toMatch(/must be an integer from -9007199254740991 to 9007199254740991/);
      expect(stderr).not.toMatch(STACK_FRAME);
    }
    expect(edge.requests).toEqual([]);
  });

  it("--env without NAME= is refused without echoing the value: --env values are the run's secrets", async () => {
    const { code, stderr } = await cli(["run", "hello", "--org", "org_x", "--env", "sk-live-abc123secret"]);
    expect(code).toBe(1);
    expect(stderr).toContain("--env takes NAME=value");
    expect(stderr).not.toContain("sk-live-abc123secret");
    const empty = await cli(["run", "hello", "--org", "org_x", "--env", "=sk-live-abc123secret"]);
    expect([empty.code, empty.stderr.includes("--env takes NAME=value"), empty.stderr.includes("sk-live-abc123secret")]).toEqual([
      1,
      true,
      false,
    ]);
  });

  it("--env NAME sends this shell's $NAME, so a run's secret need not be on the command line (where ps shows it)", async () => {
    const edge = await fakeEdge(() => ({ status: 400, body: JSON.stringify({ error: { code: "stop_here", message: "seen" } }) }));
    const { code, stderr } = await cli(
      ["run", "11111111-1111-4111-8111-111111111111", "--org", "org_x", "--env", "RUN_SECRET_OF_THE_TEST", "--env", "GREETING=Hi"],
      { OUTRIDER_URL: edge.url, RUN_SECRET_OF_THE_TEST: "sk-from-the-environment" },
    );
    expect([code, stderr.includes("stop_here")]).toEqual([1, true]);
    const sent = edge.requests.find((r) => r.url === "/api/v1/workflow-runs/execute/stream");
    expect(sent?.body).toContain(JSON.stringify({ RUN_SECRET_OF_THE_TEST: "sk-from-the-environment", GREETING: "Hi" }));
    // A name that no variable has is refused before anything is sent, without quoting it (it may be a value given alone).
    const unset = await cli(["run", "11111111-1111-4111-8111-111111111111", "--org", "org_x", "--env", "sk_live_abc123secret"], {
      OUTRIDER_URL: edge.url,
    });
    expect(unset.code).toBe(1);
    expect(unset.stderr).toContain("--env number 1 names no variable set in this environment");
    expect(unset.stderr).not.toContain("sk_live_abc123secret");
    expect(edge.requests).toHaveLength(1);
  });

  it("an --org or --idempotency-key a header cannot carry (a line break) is a usage error, not 'cannot reach Outrider'", async () => {
    const edge = await fakeEdge(() => ({ status: 200, body: "{}" }));
    const org = await cli(["run", "11111111-1111-4111-8111-111111111111", "--org", "org_a\norg_b"], { OUTRIDER_URL: edge.url });
    expect(org.code).toBe(1);
    expect(org.stderr).toContain("--org has characters an HTTP header cannot carry");
    expect(org.stderr).not.toContain("cannot reach");
    const key = await cli(["credits", "grant", "org_x", "5", "--idempotency-key", "k\ny"], { OUTRIDER_URL: edge.url });
    expect(key.code).toBe(1);
    expect(key.stderr).toContain("--idempotency-key has characters an HTTP header cannot carry");
    expect(edge.requests).toEqual([]);
  });
});

describe("ids that are no path segment: a usage error, nothing sent", () => {
  it('an empty, `.` or `..` id is refused naming its operand: sent, it would be another route (`keys list .` asked for organization "api-keys")', async () => {
    const edge = await fakeEdge(() => ({ status: 200, body: "{}" }));
    for (const [args, operand] of [
      [["orgs", "show", ""], "<orgId>"],
      [["keys", "list", "."], "<orgId>"],
      [["keys", "revoke", "org_x", ".."], "<keyId>"],
      [["credits", "grant", "..", "5"], "<orgId>"],
      [["webhooks", "delete", "org_x", "."], "<webhookId>"],
      [["workflows", "publish", ".."], "<workflowId>"],
    ] as const) {
      const { code, stderr } = await cli([...args], { OUTRIDER_URL: edge.url });
      expect([args.join(" "), code]).toEqual([args.join(" "), 1]);
      expect(stderr).toContain(`${operand} must be`);
      expect(stderr).not.toMatch(STACK_FRAME);
    }
    expect(edge.requests).toEqual([]);
  });
});

/** An edge that records each request (`METHOD path`), reads it, and does `then` with it instead of answering. */
async function unansweringEdge(then: (req: IncomingMessage) => void) {
  const requests: string[] = [];
  const server = createHttpServer((req) => {
    requests.push(`${req.method} ${req.url}`);
    req.resume();
    then(req);
  });
  return { url: await listenUntilTestEnds(server), requests };
}

describe("a write whose answer is lost", () => {
  /** An edge that reads each request, then drops the connection without answering. */
  const droppingEdge = () => unansweringEdge((req) => req.once("end", () => req.socket.destroy()));

  it("says it may have been applied, and how to send a grant again safely; not 'is npm run dev running?'", async () => {
    const edge = await droppingEdge();
    const plain = await cli(["credits", "grant", "org_x", "5"], { OUTRIDER_URL: edge.url });
    expect(plain.code).toBe(1);
    expect(plain.stderr).toContain("may have been applied");
    expect(plain.stderr).toContain("credits show org_x");
    expect(plain.stderr).toContain("--idempotency-key");
    expect(plain.stderr).not.toContain("is `npm run dev` running?");
    const keyed = await cli(["credits", "grant", "org_x", "5", "--idempotency-key", "invoice-7"], { OUTRIDER_URL: edge.url });
    expect(keyed.code).toBe(1);
    expect(keyed.stderr).toContain("may have been applied");
    expect(keyed.stderr).toContain("run it again with the same --idempotency-key: the grant applies once");
    const created = await cli(["keys", "create", "org_x", "--name", "k"], { OUTRIDER_URL: edge.url });
    expect([created.code, created.stderr.includes("may have been applied")]).toEqual([1, true]);
    // A read changes nothing: no such warning.
    const read = await cli(["orgs", "list"], { OUTRIDER_URL: edge.url });
    expect([read.code, read.stderr.includes("cannot reach Outrider"), read.stderr.includes("may have been applied")]).toEqual([
      1,
      true,
      false,
    ]);
    expect(edge.requests).toHaveLength(4);
    for (const text of [plain.stderr, keyed.stderr, created.stderr, read.stderr]) expect(text).not.toMatch(STACK_FRAME);
  });
});

describe("a write that never left: not sent, never 'may have been applied'", () => {
  /** The CLI's words for a write that failed before a byte of it was sent. */
  function expectNotSent(result: CliResult, origin: string) {
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(`cannot reach Outrider at ${origin}`);
    expect(result.stderr).not.toContain("may have been applied");
    expect(result.stderr).toContain("the POST was not sent (no connection was made): nothing was applied");
    expect(result.stderr).toContain("--url");
    expect(result.stderr).not.toMatch(STACK_FRAME);
  }

  it("an https URL to a plain-HTTP server (a TLS handshake that failed), and a refused connection", async () => {
    const edge = await fakeEdge(() => ({ status: 200, body: "{}" }));
    const https = edge.url.replace("http:", "https:");
    const handshake = await cli(["credits", "grant", "org_x", "5"], { OUTRIDER_URL: https });
    expectNotSent(handshake, https);
    // OpenSSL's reason, not its line of internals.
    expect(handshake.stderr).toContain(`cannot reach Outrider at ${https} (TLS: wrong version number)`);
    expect(edge.requests).toEqual([]);
    const port = await freePort();
    expectNotSent(await cli(["credits", "grant", "org_x", "5"], { OUTRIDER_URL: `http://127.0.0.1:${port}` }), `http://127.0.0.1:${port}`);
  });

  // Its certificate is made with openssl (a Debian base package; not skipped without it: it fails).
  it("a certificate the CLI does not trust (self-signed): the handshake fails before the request is written", async () => {
    const dir = mkdtempSync(join(tmpdir(), "outrider-cli-tls-"));
    onTestFinished(() => rmSync(dir, { recursive: true, force: true }));
    const [key, cert] = [join(dir, "key.pem"), join(dir, "cert.pem")];
    const subject = ["-subj", "/CN=127.0.0.1", "-days", "1", "-nodes", "-keyout", key, "-out", cert];
    execFileSync("openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", ...subject], {
      stdio: "ignore",
    });
    const requests: string[] = [];
    const server = createHttpsServer({ key: readFileSync(key), cert: readFileSync(cert) }, (req, res) => {
      requests.push(`${req.method} ${req.url}`);
      res.writeHead(200, { "content-type": "application/json" }).end("{}");
    });
    const url = (await listenUntilTestEnds(server)).replace("http:", "https:");
    const result = await cli(["credits", "grant", "org_x", "5"], { OUTRIDER_URL: url });
    expectNotSent(result, url);
    expect(result.stderr).toContain("self-signed certificate");
    expect(requests).toEqual([]);
  });
});

describe("a server that takes the request and never answers: the CLI gives up after --timeout / OUTRIDER_TIMEOUT", () => {
  /** An edge that reads each request and never answers. */
  const silentEdge = () => unansweringEdge(() => undefined);

  it("a write: exit 1, and it may have been applied (with how to send a grant again safely); a read: exit 1", async () => {
    const edge = await silentEdge();
    // Killed after 20 s: without a timeout of its own, the CLI waited for undici's 300 s.
    const started = Date.now();
    const write = await cliWithin(20_000, ["credits", "grant", "org_x", "5", "--idempotency-key", "inv-9"], {
      OUTRIDER_URL: edge.url,
      OUTRIDER_TIMEOUT: "1",
    });
    expect(write.code).toBe(1);
    expect(Date.now() - started).toBeLessThan(15_000);
    expect(write.stderr).toContain(`no answer from Outrider at ${edge.url} within 1 s`);
    expect(write.stderr).toContain("the POST may have been applied");
    expect(write.stderr).toContain("run it again with the same --idempotency-key: the grant applies once");
    expect(write.stderr).toContain("--timeout");
    expect(write.stderr).not.toMatch(STACK_FRAME);
    // The flag wins over the variable.
    const read = await cliWithin(20_000, ["orgs", "list", "--timeout", "0.5"], { OUTRIDER_URL: edge.url, OUTRIDER_TIMEOUT: "600" });
    expect(read.code).toBe(1);
    expect(read.stderr).toContain(`no answer from Outrider at ${edge.url} within 0.5 s`);
    expect(read.stderr).not.toContain("may have been applied");
    expect(edge.requests).toEqual(["POST /admin/v1/organizations/org_x/credits", "GET /admin/v1/organizations"]);
  });

  it("a --timeout that is not a number of seconds above 0 is a usage error, nothing sent", async () => {
    const edge = await silentEdge();
    for (const timeout of ["0", "-1", "abc", "1e3", "99999999"]) {
      const { code, stderr } = await cliWithin(20_000, ["orgs", "list", `--timeout=${timeout}`], { OUTRIDER_URL: edge.url });
      expect([timeout, code]).toEqual([timeout, 1]);
      expect(stderr).toContain("--timeout / OUTRIDER_TIMEOUT must be a number of seconds");
    }
    expect(edge.requests).toEqual([]);
  });
});

describe("credits grant --json", () => {
  const grant = { entry: { id: "led_1", kind: "grant", amount: 5, balanceAfter: 5, runId: null, note: "x", createdAt: "t" } };
  const body = JSON.stringify({ ...grant, credits: { metered: true, balance: 5, reserved: 0, available: 5 } });

  it("a replayed grant (Idempotent-Replayed: true) says `replayed: true`; a new grant's JSON is the API's body, unchanged", async () => {
    const replaying = await fakeEdge(() => ({ status: 200, body, headers: { "idempotent-replayed": "true" } }));
    const args = ["credits", "grant", "org_x", "5", "--idempotency-key", "inv-1"];
    const replayed = await cli([...args, "--json"], { OUTRIDER_URL: replaying.url });
    expect(replayed.code).toBe(0);
    expect(JSON.parse(replayed.stdout)).toEqual({ ...JSON.parse(body), replayed: true });
    expect((await cli(args, { OUTRIDER_URL: replaying.url })).stdout).toContain("already granted 5 credits (x)");
    const fresh = await fakeEdge(() => ({ status: 200, body }));
    const created = await cli([...args, "--json"], { OUTRIDER_URL: fresh.url });
    expect(created.code).toBe(0);
    expect(JSON.parse(created.stdout)).toEqual(JSON.parse(body));
  });
});

describe("answers that are not the API's: a message with the HTTP status, exit 1, never a stack trace", () => {
  it("a 2xx whose body is not JSON (a login page, another service at --url)", async () => {
    const edge = await fakeEdge(() => ({ status: 200, body: "<html><body>Sign in</body></html>", contentType: "text/html" }));
    const { code, stderr } = await cli(["orgs", "list"], { OUTRIDER_URL: edge.url });
    expect(code).toBe(1);
    expect(stderr).toContain(`${edge.url} answered HTTP 200 with a body that is not JSON (text/html)`);
    expect(stderr).not.toMatch(STACK_FRAME);
  });

  it("a 2xx JSON answer of another shape", async () => {
    const edge = await fakeEdge(() => ({ status: 200, body: '{"hello":"world"}' }));
    for (const args of [
      ["orgs", "list"],
      ["keys", "create", "org_x", "--name", "k"],
      ["webhooks", "seal-secrets"],
    ]) {
      const { code, stderr } = await cli(args, { OUTRIDER_URL: edge.url });
      expect([args.join(" "), code]).toEqual([args.join(" "), 1]);
      expect(stderr).toContain("error:");
      expect(stderr).not.toMatch(STACK_FRAME);
    }
  });

  it("--json: an error body that is not the API's envelope (a proxy's 502) is shown with its HTTP status", async () => {
    const edge = await fakeEdge(() => ({ status: 502, body: '{"message":"bad gateway"}' }));
    const { code, stderr } = await cli(["orgs", "list", "--json"], { OUTRIDER_URL: edge.url });
    expect(code).toBe(1);
    expect(stderr).toContain("HTTP 502");
    expect(stderr).toContain("bad gateway");
  });

  it("an answer that quotes the request's credential (an echoing proxy) never prints it", async () => {
    const edge = await fakeEdge((req) => ({
      status: 400,
      body: JSON.stringify({ error: { code: "bad", message: `you sent ${req.headers.authorization}`, issues: [] }, echo: req.headers }),
    }));
    const adminKey = "admin-key-that-must-stay-hidden";
    for (const json of [[], ["--json"]]) {
      const { code, stderr } = await cli(["orgs", "list", ...json], { OUTRIDER_URL: edge.url, OUTRIDER_ADMIN_KEY: adminKey });
      expect(code).toBe(1);
      expect(stderr).toContain("bad");
      expect(stderr).not.toContain(adminKey);
    }
    const text = await fakeEdge((req) => ({ status: 401, body: `denied: ${req.headers.authorization}`, contentType: "text/plain" }));
    const { code, stderr } = await cli(["orgs", "list"], { OUTRIDER_URL: text.url, OUTRIDER_ADMIN_KEY: adminKey });
    expect([code, stderr.includes("HTTP 401"), stderr.includes(adminKey)]).toEqual([1, true, false]);
  });

  it("control characters from the server (terminal escape sequences) reach the terminal as visible text, never as escapes", async () => {
    const escapes = "\u001b]52;c;cHduZWQ=\u0007\u001b[2J";
    const edge = await fakeEdge((req) =>
      req.url?.startsWith("/admin/v1/organizations/org_bad")
        ? {
            status: 400,
            body: JSON.stringify({ error: { code: "bad", message: `no ${escapes}`, issues: [{ path: "x", message: escapes }] } }),
          }
        : {
            status: 200,
            body: JSON.stringify({
              organizations: [{ id: "org_x", name: `evil${escapes}`, credits: { metered: false }, createdAt: "now" }],
              next: null,
            }),
          },
    );
    const listed = await cli(["orgs", "list"], { OUTRIDER_URL: edge.url });
    expect(listed.code).toBe(0);
    expect(listed.stdout).toContain("evil");
    expect(listed.stdout).not.toContain("\u001b");
    expect(listed.stdout).not.toContain("\u0007");
    const refused = await cli(["orgs", "show", "org_bad"], { OUTRIDER_URL: edge.url });
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain("bad");
    expect(refused.stderr).not.toContain("\u001b");
    expect(refused.stderr).not.toContain("\u0007");
  });
});
