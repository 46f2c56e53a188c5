/**
 * A run's `envs` across a HOST_SHARED_SECRET rotation (docs/deploy.md): the host seals them into
 * the workflow's memo under every secret it lists and opens them with any secret it lists, so a run
 * started during a rotation still opens them once the old secret is dropped. Over a real Temporal
 * dev server and a real host worker whose activities read the envs.
 */
import { createCipheriv, createHash, randomBytes } from "node:crypto";
import { Client, Connection } from "@temporalio/client";
import type { Worker } from "@temporalio/worker";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { loadConfig } from "../../host/config.ts";
import { createControlApi } from "../../host/control-api.ts";
import { EdgeClient } from "../../host/edge-client.ts";
import { HistoryRelay } from "../../host/history-relay.ts";
import { serializeHistoryEvent } from "../../host/history-serialization.ts";
import { ENVS_CACHE_TTL_MS, ENVS_MEMO_KEY, openEnvs, RunEnvs, sealEnvs, secretId } from "../../host/run-envs.ts";
import { createWorker } from "../../host/worker.ts";
import { HOST_PATHS } from "../../src/shared/host-api.ts";
import { signRequest } from "../../src/shared/signing.ts";

// Test-only values.
const OLD = "run-envs-test-old-secret-long-enough-for-hmac";
const NEW = "run-envs-test-new-secret-long-enough-for-hmac";
const TASK_QUEUE = `host-run-envs-${process.pid}`;
const ENVS = { GREETING: "Bonjour", API_TOKEN: "tok_run_envs_test_do_not_log" };

let client: Client;
let worker: Worker;
let running: Promise<void>;

/** The host after rotation step 3: it lists only the new secret. */
beforeAll(async () => {
  const config = loadConfig({
    HOST_SHARED_SECRET: NEW,
    TEMPORAL_ADDRESS: inject("temporalAddress"),
    TEMPORAL_TASK_QUEUE: TASK_QUEUE,
    HOST_LOG_LEVEL: "WARN",
  });
  client = new Client({ connection: await Connection.connect({ address: config.temporalAddress }) });
  const edge = new EdgeClient("http://127.0.0.1:9", NEW, () => undefined, 1);
  worker = await createWorker(config, edge, new RunEnvs(client, config.sharedSecrets));
  running = worker.run();
});

afterAll(async () => {
  worker?.shutdown();
  await running;
  await client?.connection.close();
});

/** How the host sealed envs before sealed values named their secrets (bare base64, one secret). */
function sealLikeBefore(envs: Record<string, string>, secret: string): string {
  const key = createHash("sha256").update(`outrider-run-envs:${secret}`).digest();
  const iv = randomBytes(12);
  const cipher = createCipheriv("aes-256-gcm", key, iv);
  const sealed = Buffer.concat([cipher.update(JSON.stringify(envs), "utf8"), cipher.final()]);
  return Buffer.concat([iv, cipher.getAuthTag(), sealed]).toString("base64");
}

/** Starts `hello` with the memo a host listing `secrets` would give it (another host instance: no shared cache). */
async function startHello(secrets: string[]) {
  const workflowId = `run-envs-${crypto.randomUUID()}`;
  const memo = new RunEnvs(client, secrets).memoFor(ENVS);
  return client.workflow.start("hello", { workflowId, taskQueue: TASK_QUEUE, args: [{ name: "Ada" }], memo });
}

describe("run envs across a shared-secret rotation (happy)", () => {
  it("a run started while the host listed old,new (steps 1-2) reads its envs once the host lists new alone", async () => {
    const handle = await startHello([OLD, NEW]);
    expect(await handle.result()).toEqual({ greeting: "Bonjour, Ada!" });
  });

  it("a run started while the host listed new,old opens too", async () => {
    const handle = await startHello([NEW, OLD]);
    expect(await handle.result()).toEqual({ greeting: "Bonjour, Ada!" });
  });

  it("a run sealed under old alone opens with new,old and with old,new", async () => {
    const workflowId = `run-envs-${crypto.randomUUID()}`;
    await client.workflow.start("hello", {
      workflowId,
      taskQueue: TASK_QUEUE,
      args: [{ name: "Ada" }],
      memo: new RunEnvs(client, [OLD]).memoFor(ENVS),
    });
    expect(await new RunEnvs(client, [NEW, OLD]).forWorkflow(workflowId)).toEqual(ENVS);
    expect(await new RunEnvs(client, [OLD, NEW]).forWorkflow(workflowId)).toEqual(ENVS);
    await client.workflow.getHandle(workflowId).terminate("test done");
  });

  it("a value sealed by the previous format (one secret, no id) still opens with any listed secret", () => {
    const before = sealLikeBefore(ENVS, OLD);
    expect(openEnvs(before, [NEW, OLD])).toEqual(ENVS);
    expect(openEnvs(before, [OLD])).toEqual(ENVS);
  });

  it("a sealed value names its secrets by id only, and every seal is fresh", () => {
    const sealed = sealEnvs(ENVS, [OLD, NEW]);
    expect(
      sealed
        .split(".")[1]!
        .split(",")
        .map((r) => r.split(":")[0]),
    ).toEqual([secretId(OLD), secretId(NEW)]);
    expect(sealed).not.toContain(OLD);
    expect(sealed).not.toContain(ENVS.API_TOKEN);
    expect(sealed).not.toContain(Buffer.from(ENVS.API_TOKEN).toString("base64").slice(0, 12));
    expect(sealEnvs(ENVS, [OLD, NEW])).not.toBe(sealed);
  });
});

describe("run envs (security)", () => {
  it("the history the host relays to the edge leaves the memo out: no sealed value reaches the tenant's history", async () => {
    const handle = await startHello([NEW]);
    await handle.result();
    const history = await handle.fetchHistory();
    const started = history.events![0]!;
    const sealed = (await handle.describe()).memo?.[ENVS_MEMO_KEY];
    expect(typeof sealed).toBe("string");
    expect(started.workflowExecutionStartedEventAttributes?.memo?.fields?.[ENVS_MEMO_KEY]).toBeTruthy();
    const relayed = JSON.stringify(history.events!.map(serializeHistoryEvent));
    expect(relayed).not.toContain("memo");
    expect(relayed).not.toContain(ENVS_MEMO_KEY);
    expect(relayed).not.toContain(Buffer.from(JSON.stringify(sealed)).toString("base64").slice(0, 24));
  });
});

describe("run envs (security, the host's cache)", () => {
  it("a start refused because its id is taken leaves no envs behind for the run that holds the id", async () => {
    const workflowId = `run-envs-${crypto.randomUUID()}`;
    // The id's holder: a run started without overrides (directly in Temporal, so no host knows it).
    await client.workflow.start("approval", { workflowId, taskQueue: TASK_QUEUE, args: [{ request: "holder" }] });
    const envs = new RunEnvs(client, [NEW]);
    const edge = new EdgeClient("http://127.0.0.1:9", NEW, () => undefined, 1);
    const api = createControlApi({
      client,
      taskQueue: TASK_QUEUE,
      sharedSecrets: [NEW],
      relay: new HistoryRelay(client, edge, TASK_QUEUE),
      edge,
      envs,
      defaultExecutionTimeoutMs: 60_000,
    });
    const body = JSON.stringify({ workflowId, workflowName: "hello", input: { name: "x" }, envs: ENVS });
    const headers = await signRequest(NEW, "POST", HOST_PATHS.start, body);
    const res = await api.request(HOST_PATHS.start, { method: "POST", headers: { ...headers, "content-type": "application/json" }, body });
    expect(res.status).toBe(409);
    // What the holder's activities would read: its own (none), not the refused start's.
    expect(await envs.forWorkflow(workflowId)).toEqual({});
    await client.workflow.getHandle(workflowId).terminate("test done");
  });
});

describe("run envs (security, the host's cache lets go of them)", () => {
  /** A client whose runs all have ENVS sealed under NEW in their memo and `status`; `describes` lists what was asked. */
  function fakeClient(status = "RUNNING") {
    const describes: string[] = [];
    const memo = { [ENVS_MEMO_KEY]: sealEnvs(ENVS, [NEW]) };
    const fake = {
      workflow: {
        getHandle: (workflowId: string) => ({
          describe: async () => {
            describes.push(workflowId);
            return { memo, status: { name: status } };
          },
        }),
      },
    };
    return { client: fake as unknown as Client, describes };
  }

  it("opened envs are dropped ENVS_CACHE_TTL_MS after they were opened, and opened again from the memo on next use", async () => {
    const { client: fake, describes } = fakeClient();
    let now = 1_000_000;
    const envs = new RunEnvs(fake, [NEW], { now: () => now });
    expect(await envs.forWorkflow("wf-a")).toEqual(ENVS);
    envs.started("wf-b", ENVS);
    now += ENVS_CACHE_TTL_MS - 1;
    expect(await envs.forWorkflow("wf-a")).toEqual(ENVS);
    expect(describes).toEqual(["wf-a"]);
    expect(envs.size).toBe(2);
    now += 1;
    // Both have expired: the next use of either drops them all, and opens its own again.
    expect(await envs.forWorkflow("wf-a")).toEqual(ENVS);
    expect(describes).toEqual(["wf-a", "wf-a"]);
    expect(envs.size).toBe(1);
    expect(await envs.forWorkflow("wf-b")).toEqual(ENVS);
    expect(describes).toEqual(["wf-a", "wf-a", "wf-b"]);
  });

  it("the envs of a run that has closed are not kept", async () => {
    const { client: fake, describes } = fakeClient("COMPLETED");
    const envs = new RunEnvs(fake, [NEW]);
    expect(await envs.forWorkflow("wf-done")).toEqual(ENVS);
    expect(envs.size).toBe(0);
    expect(await envs.forWorkflow("wf-done")).toEqual(ENVS);
    expect(describes).toEqual(["wf-done", "wf-done"]);
  });
});

describe("run envs across a shared-secret rotation (error)", () => {
  it("a run sealed under old alone fails its activity attempt on a host that lists new alone, naming the secret by id", async () => {
    const workflowId = `run-envs-${crypto.randomUUID()}`;
    const handle = await client.workflow.start("hello", {
      workflowId,
      taskQueue: TASK_QUEUE,
      args: [{ name: "Ada" }],
      memo: new RunEnvs(client, [OLD]).memoFor(ENVS),
    });
    await expect(new RunEnvs(client, [NEW]).forWorkflow(workflowId)).rejects.toThrow(
      `sealed under shared secret id ${secretId(OLD)}, which HOST_SHARED_SECRET does not list (it lists id ${secretId(NEW)})`,
    );
    // The worker (new alone) gets the same refusal as its attempt's failure.
    let failure: string | undefined;
    for (let i = 0; i < 100 && !failure; i++) {
      const pending = (await handle.describe()).raw.pendingActivities ?? [];
      failure = pending[0]?.lastFailure?.message ?? undefined;
      if (!failure) await new Promise((r) => setTimeout(r, 100));
    }
    expect(failure).toContain(`sealed under shared secret id ${secretId(OLD)}`);
    await handle.terminate("test done");
  });

  it("a value in the previous format under old alone is refused with new alone", () => {
    expect(() => openEnvs(sealLikeBefore(ENVS, OLD), [NEW])).toThrow("cannot be opened with any configured shared secret");
  });

  it("a value that is not a sealed value is refused", () => {
    expect(() => openEnvs("e2.nonsense", [NEW])).toThrow("damaged (not a sealed value)");
    expect(() => openEnvs(`e2.${secretId(NEW)}:AAAA`, [NEW])).toThrow("damaged (not a sealed value)");
  });
});

describe("run envs across a shared-secret rotation (security)", () => {
  const flip = (b64: string, at: number) => {
    const raw = Buffer.from(b64, "base64");
    raw[at] = raw[at]! ^ 1;
    return raw.toString("base64");
  };

  it("a changed byte in the sealed envs is refused", () => {
    const [format, recipients, payload] = sealEnvs(ENVS, [OLD, NEW]).split(".");
    expect(() => openEnvs(`${format}.${recipients}.${flip(payload!, 40)}`, [NEW])).toThrow("damaged");
  });

  it("a changed byte in a wrapped key is refused", () => {
    const [format, recipients, payload] = sealEnvs(ENVS, [NEW]).split(".");
    const [id, wrapped] = recipients!.split(":");
    expect(() => openEnvs(`${format}.${id}:${flip(wrapped!, 30)}.${payload}`, [NEW])).toThrow("damaged");
  });

  it("a wrapped key relabelled with another secret's id does not open", () => {
    const [format, recipients, payload] = sealEnvs(ENVS, [OLD]).split(".");
    const wrapped = recipients!.split(":")[1];
    expect(() => openEnvs(`${format}.${secretId(NEW)}:${wrapped}.${payload}`, [NEW])).toThrow("damaged");
  });

  it("dropping a recipient from the list breaks the envs' seal for the others", () => {
    const [format, recipients, payload] = sealEnvs(ENVS, [OLD, NEW]).split(".");
    const onlyNew = recipients!.split(",")[1];
    expect(() => openEnvs(`${format}.${onlyNew}.${payload}`, [NEW])).toThrow("damaged");
  });

  it("a changed byte in a value of the previous format is refused", () => {
    expect(() => openEnvs(flip(sealLikeBefore(ENVS, OLD), 40), [NEW, OLD])).toThrow("cannot be opened");
  });

  it("opened envs have no prototype (names are only names)", () => {
    const opened = openEnvs(sealEnvs({ toString: "x" }, [NEW]), [NEW]);
    expect(Object.getPrototypeOf(opened)).toBeNull();
    expect(opened.toString).toBe("x");
  });

  it("the memo Temporal keeps holds the envs sealed only", async () => {
    const handle = await startHello([OLD, NEW]);
    await handle.result();
    const memo = (await handle.describe()).memo?.[ENVS_MEMO_KEY];
    expect(typeof memo).toBe("string");
    expect(memo).not.toContain(ENVS.API_TOKEN);
    expect(memo).not.toContain(NEW);
  });
});
