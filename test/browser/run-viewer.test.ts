/**
 * The live run viewer (GET /runs/:workflowId?token=) in a real headless Chromium, against the
 * whole stack. The stack's LLM calls are paced (llm-pacer.ts) so that company_research takes a
 * few seconds and the page can be seen following it.
 */
import { existsSync, mkdirSync } from "node:fs";
import { resolve } from "node:path";
import { chromium, type Browser, type BrowserContext, type Page } from "playwright-core";
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from "vitest";
import { SCALAR_SCRIPT_PATH } from "../../src/routes/docs-assets.ts";
import { readSse, type SseMessage } from "../support/sse.ts";
import { startCuttableProxy } from "./cuttable-proxy.ts";

const root = resolve(import.meta.dirname, "../..");
const resultsDir = resolve(root, "test-results");
const CHROMIUM_PATH = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];
const TERMINAL = new Set(["completed", "failed", "cancelled", "terminated", "timed_out", "continued_as_new"]);
/** What the local LLM server puts at the end of every reasoning text. */
const THINKING_ENDS_WITH = "Deciding what matters most.";

const baseUrl = () => inject("baseUrl");

// ---------------------------------------------------------------- the API

interface StartedRun {
  workflowId: string;
  runId: string;
  streamToken: string;
}

async function startRun(workflowName: string, input: unknown): Promise<StartedRun> {
  const res = await fetch(`${baseUrl()}/workflow/start`, {
    method: "POST",
    headers: { authorization: `Bearer ${inject("apiKey")}`, "content-type": "application/json" },
    body: JSON.stringify({ workflowName, input }),
  });
  expect(res.status).toBe(200);
  const body = (await res.json()) as StartedRun;
  expect(body.streamToken).toEqual(expect.any(String));
  return body;
}

interface ResultPayload {
  status: string;
  output: unknown;
  error: string | null;
  aggregations: { cost: { total: number }; tokens: { total: number } };
}

async function finalResult(workflowId: string): Promise<ResultPayload> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    const res = await fetch(`${baseUrl()}/workflow/${workflowId}/result`, { headers: { authorization: `Bearer ${inject("apiKey")}` } });
    // 424 WorkflowNotCompletedError until the run has ended (Output's contract).
    if (res.status !== 424) {
      expect(res.status).toBe(200);
      const body = (await res.json()) as ResultPayload;
      if (TERMINAL.has(body.status)) return body;
    }
    if (Date.now() > deadline) throw new Error(`run ${workflowId} did not end within 60 s`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

const eventsUrl = (run: StartedRun, token = run.streamToken) =>
  `${baseUrl()}/runs/${run.workflowId}/events?token=${encodeURIComponent(token)}`;

/** Reads the viewer's event stream of a run to its end (`done`). */
async function readViewerStream(
  run: StartedRun,
  headers: Record<string, string> = {},
): Promise<{ status: number; messages: SseMessage[] }> {
  const res = await fetch(eventsUrl(run), { headers, signal: AbortSignal.timeout(60_000) });
  if (res.status !== 200 || !res.body) return { status: res.status, messages: [] };
  const messages: SseMessage[] = [];
  for await (const message of readSse(res.body)) {
    messages.push(message);
    if (message.event === "done") break;
  }
  return { status: res.status, messages };
}

/** The reasoning text the log holds for each step (activityId → text). */
function thinkingByStep(messages: SseMessage[]): Map<string, string> {
  const out = new Map<string, string>();
  for (const m of messages.filter((m) => m.event === "thinking")) {
    const d = JSON.parse(m.data) as { activityId: string; text: string };
    out.set(d.activityId, (out.get(d.activityId) ?? "") + d.text);
  }
  return out;
}

// ---------------------------------------------------------------- the page

interface ViewerDebug {
  events: Array<{ type: string; id: string | null; receivedAt: number }>;
  /** Times the stream opened. */
  opens: number;
  /** Times the page had to reconnect itself (EventSource gave up: an HTTP error, or a refused reconnect). */
  recoveries: number;
}
declare global {
  interface Window {
    runViewer?: ViewerDebug;
  }
}

interface PageView {
  status: string;
  connection: string;
  costUsd: number;
  costText: string;
  tokens: number;
  output: string | null;
  error: string | null;
  message: string;
  steps: Array<{
    activityId: string;
    stepName: string;
    status: string;
    attempts: Array<{ attempt: number; status: string; start: string; duration: string; error: string }>;
    thinking: string[];
  }>;
  received: ViewerDebug["events"];
  opens: number;
  recoveries: number;
}

/** What the page shows, read from its DOM (and the events it says it received). */
function view(page: Page): Promise<PageView> {
  return page.evaluate(() => {
    const text = (selector: string, scope: ParentNode = document) => scope.querySelector(selector)?.textContent ?? "";
    const shown = (id: string) => !(document.getElementById(id) as HTMLElement).hidden;
    return {
      status: (document.getElementById("status") as HTMLElement).dataset.status ?? "",
      connection: (document.getElementById("connection") as HTMLElement).dataset.state ?? "",
      costUsd: Number((document.getElementById("cost") as HTMLElement).dataset.usd),
      costText: text("#cost"),
      tokens: Number((document.getElementById("tokens") as HTMLElement).dataset.tokens),
      output: shown("result") ? text("#output") : null,
      error: shown("failure") ? text("#error") : null,
      message: text("#message"),
      steps: Array.from(document.querySelectorAll<HTMLElement>(".step")).map((step) => ({
        activityId: step.dataset.activityId ?? "",
        stepName: step.dataset.stepName ?? "",
        status: step.dataset.status ?? "",
        attempts: Array.from(step.querySelectorAll<HTMLElement>("tr.attempt")).map((row) => ({
          attempt: Number(row.dataset.attempt),
          status: row.dataset.status ?? "",
          start: text(".attempt-start", row),
          duration: text(".attempt-duration", row),
          error: text(".error", row),
        })),
        thinking: Array.from(step.querySelectorAll("pre.thinking")).map((p) => p.textContent ?? ""),
      })),
      received: window.runViewer?.events ?? [],
      opens: window.runViewer?.opens ?? 0,
      recoveries: window.runViewer?.recoveries ?? 0,
    };
  });
}

const completedSteps = (v: PageView) => v.steps.filter((s) => s.status === "completed").length;

/** Polls the page until the run's status is terminal and the stream is closed; returns every distinct state seen. */
async function followToEnd(page: Page, timeoutMs = 60_000): Promise<{ timeline: PageView[]; final: PageView }> {
  const timeline: PageView[] = [];
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await view(page);
    const last = timeline[timeline.length - 1];
    if (
      !last ||
      last.status !== v.status ||
      last.steps.length !== v.steps.length ||
      completedSteps(last) !== completedSteps(v) ||
      last.connection !== v.connection
    ) {
      timeline.push(v);
    }
    if (TERMINAL.has(v.status) && (v.connection === "closed" || v.connection === "error")) return { timeline, final: v };
    if (Date.now() > deadline) throw new Error(`the page did not show the end of the run within ${timeoutMs} ms: ${JSON.stringify(v)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * Every SSE id the page received, in order (ids are log sequence numbers). `done`, `server_error`
 * and `token` carry no id of their own (EventSource repeats the last one on them).
 */
const UNNUMBERED = new Set(["done", "server_error", "token"]);
const receivedIds = (v: PageView) => v.received.filter((e) => e.id !== null && !UNNUMBERED.has(e.type)).map((e) => Number(e.id));

function expectStrictlyIncreasing(ids: number[]) {
  for (let i = 1; i < ids.length; i++) expect(ids[i], `event id ${ids[i]} after ${ids[i - 1]}`).toBeGreaterThan(ids[i - 1]!);
}

// ---------------------------------------------------------------- tests

let browser: Browser;
let context: BrowserContext | undefined;

beforeAll(async () => {
  if (!existsSync(CHROMIUM_PATH))
    throw new Error(`no Chromium at ${CHROMIUM_PATH}: run \`bash scripts/install-chromium.sh\` (or set CHROMIUM_PATH)`);
  browser = await chromium.launch({ executablePath: CHROMIUM_PATH, args: CHROMIUM_ARGS, headless: true });
  mkdirSync(resultsDir, { recursive: true });
});

afterEach(async () => {
  await context?.close();
  context = undefined;
});

afterAll(async () => {
  await browser?.close();
});

/** Script and console errors of each page. */
const pageErrors = new WeakMap<Page, string[]>();

async function openViewer(run: StartedRun, origin = baseUrl()): Promise<Page> {
  context = await browser.newContext({ viewport: { width: 1200, height: 900 } });
  const page = await context.newPage();
  const errors: string[] = [];
  page.on("pageerror", (err) => errors.push(String(err)));
  page.on("console", (msg) => {
    if (msg.type() === "error") errors.push(msg.text());
  });
  pageErrors.set(page, errors);
  const res = await page.goto(`${origin}/runs/${run.workflowId}?token=${encodeURIComponent(run.streamToken)}`);
  expect(res?.status()).toBe(200);
  return page;
}
/** Script errors and console errors of the page, but for failed loads (expected while the connection is cut). */
const scriptErrors = (page: Page) => (pageErrors.get(page) ?? []).filter((e) => !/Failed to load resource|net::ERR_/.test(e));

describe("run viewer in Chromium", () => {
  it("follows company_research live: steps as they happen, thinking, cost, output", async () => {
    const run = await startRun("company_research", { domain: "example.com" });
    const page = await openViewer(run);

    // Live: a step finished while the run is still going (each LLM call takes 1.5 s here).
    await page.waitForFunction(
      () => {
        const status = document.getElementById("status")?.dataset.status;
        const done = document.querySelectorAll('.step[data-status="completed"]').length;
        return status === "running" && done >= 1 && done < 3;
      },
      undefined,
      { timeout: 30_000 },
    );
    const midRun = await view(page);
    expect(midRun.status).toBe("running");
    expect(midRun.connection).toBe("connected");
    expect(midRun.output).toBeNull();
    expect(midRun.steps.length).toBeGreaterThanOrEqual(1);
    expect(midRun.steps.length).toBeLessThanOrEqual(3);
    expect(midRun.costUsd).toBeGreaterThan(0);
    await page.screenshot({ path: resolve(resultsDir, "run-viewer-company-research-running.png"), fullPage: true });

    const { timeline, final } = await followToEnd(page);
    await page.screenshot({ path: resolve(resultsDir, "run-viewer-company-research.png"), fullPage: true });

    // Steps appeared one after another while the run was running, not all at once at the end.
    const whileRunning = timeline.filter((v) => v.status === "running").map(completedSteps);
    expect(whileRunning).toContain(1);
    expect(whileRunning).toContain(2);
    expect(whileRunning).toEqual([...whileRunning].sort((a, b) => a - b));

    const result = await finalResult(run.workflowId);
    expect(result.status).toBe("completed");
    expect(final.status).toBe("completed");
    expect(final.connection).toBe("closed");
    expect(final.error).toBeNull();
    expect(JSON.parse(final.output!)).toEqual(result.output);
    expect(result.output).toMatchObject({ domain: "example.com" });

    // Three LLM steps, one attempt each, with a start time and a duration.
    expect(final.steps.map((s) => s.stepName)).toEqual(["askModel", "askModel", "askModel"]);
    expect(new Set(final.steps.map((s) => s.activityId)).size).toBe(3);
    for (const step of final.steps) {
      expect(step.status).toBe("completed");
      expect(step.attempts).toHaveLength(1);
      expect(step.attempts[0]).toMatchObject({ attempt: 1, status: "completed", error: "" });
      expect(step.attempts[0]!.start).toMatch(/\d{2}:\d{2}:\d{2}\.\d{3}/);
      expect(step.attempts[0]!.duration).toMatch(/^\d+(\.\d+)? (ms|s)$/);
      // Paced LLM calls: every step took at least the pacer's delay.
      const seconds = step.attempts[0]!.duration.endsWith(" ms")
        ? parseFloat(step.attempts[0]!.duration) / 1000
        : parseFloat(step.attempts[0]!.duration);
      expect(seconds).toBeGreaterThanOrEqual(inject("llmDelayMs") / 1000 - 0.05);
    }

    // Thinking text per step: exactly what the run's log holds.
    const stream = await readViewerStream(run);
    const thinking = thinkingByStep(stream.messages);
    expect(thinking.size).toBe(3);
    for (const step of final.steps) {
      expect(step.thinking).toHaveLength(1);
      expect(step.thinking[0]!.trim()).toBe(thinking.get(step.activityId)!.trim());
      expect(step.thinking[0]!.trim().endsWith(THINKING_ENDS_WITH)).toBe(true);
    }

    // Cost and tokens: the sum of the run's llm:usage attributes, as the result API derives it.
    expect(final.costUsd).toBeGreaterThan(0);
    expect(final.costUsd).toBeCloseTo(result.aggregations.cost.total, 9);
    expect(final.costText).toMatch(/^\$\d+\.\d+$/);
    expect(final.tokens).toBe(result.aggregations.tokens.total);
    expect(final.tokens).toBeGreaterThan(0);

    // The page got every event exactly once, in log order.
    expect(receivedIds(final)).toEqual(stream.messages.filter((m) => m.id !== undefined).map((m) => Number(m.id)));
    expect(final.received.filter((e) => e.type === "done")).toHaveLength(1);
    expect(scriptErrors(page)).toEqual([]);

    // The stream sent a fresh token as it opened; the page keeps it (in its URL too, for a reload), and it opens the stream.
    expect(final.received.some((e) => e.type === "token")).toBe(true);
    const pageToken = new URL(page.url()).searchParams.get("token")!;
    const renewed = await fetch(`${baseUrl()}/runs/${run.workflowId}/events?token=${encodeURIComponent(pageToken)}`);
    expect(renewed.status).toBe(200);
    await renewed.body?.cancel();
  });

  it("recovers from a dropped connection mid-run: complete, nothing twice, nothing lost", async () => {
    // The page talks to the edge through a proxy the test can cut.
    const proxy = await startCuttableProxy(Number(new URL(baseUrl()).port));
    try {
      await recoveryCase(proxy);
    } finally {
      await proxy.close();
    }
  });

  async function recoveryCase(proxy: Awaited<ReturnType<typeof startCuttableProxy>>) {
    const run = await startRun("company_research", { domain: "example.net" });
    const page = await openViewer(run, proxy.origin);
    await page.waitForFunction(
      () =>
        document.getElementById("status")?.dataset.status === "running" &&
        document.querySelectorAll('.step[data-status="completed"]').length === 1,
      undefined,
      { timeout: 30_000 },
    );
    const before = await view(page);
    expect(before.opens).toBe(1);
    const seenBefore = receivedIds(before);

    // Drop the page's connection while the second step runs, and keep the edge unreachable for
    // 2 s: the step's events happen meanwhile, and EventSource's first reconnect fails.
    const outage = proxy.cut(2_000);
    await page.waitForFunction(() => document.getElementById("connection")?.dataset.state === "reconnecting", undefined, {
      timeout: 1_500,
    });
    const offline = await view(page);
    expect(offline.connection).toBe("reconnecting");
    expect(offline.status).toBe("running");
    // Events may still have arrived between the first look and the cut; none arrives while the
    // page is cut off (a second look later in the outage sees the same ones).
    expect(receivedIds(offline).slice(0, seenBefore.length)).toEqual(seenBefore);
    await new Promise((r) => setTimeout(r, 250));
    const stillOffline = await view(page);
    expect(stillOffline.connection).toBe("reconnecting");
    expect(receivedIds(stillOffline)).toEqual(receivedIds(offline));
    await outage;
    expect(proxy.stats.dropped).toBeGreaterThanOrEqual(1);

    const { final } = await followToEnd(page);
    await page.screenshot({ path: resolve(resultsDir, "run-viewer-recovered.png"), fullPage: true });
    expect(final.opens).toBeGreaterThanOrEqual(2);

    const result = await finalResult(run.workflowId);
    expect(result.status).toBe("completed");
    expect(final.status).toBe("completed");
    expect(final.connection).toBe("closed");
    expect(JSON.parse(final.output!)).toEqual(result.output);

    // Nothing shown twice: three steps, one attempt row each, one thinking block each.
    expect(final.steps.map((s) => s.stepName)).toEqual(["askModel", "askModel", "askModel"]);
    expect(new Set(final.steps.map((s) => s.activityId)).size).toBe(3);
    const stream = await readViewerStream(run);
    const thinking = thinkingByStep(stream.messages);
    for (const step of final.steps) {
      expect(step.status).toBe("completed");
      expect(step.attempts.map((a) => [a.attempt, a.status])).toEqual([[1, "completed"]]);
      expect(step.thinking).toHaveLength(1);
      expect(step.thinking[0]!.trim()).toBe(thinking.get(step.activityId)!.trim());
    }
    expect(final.costUsd).toBeCloseTo(result.aggregations.cost.total, 9);
    expect(final.tokens).toBe(result.aggregations.tokens.total);

    // The server resumed after Last-Event-ID: the page received every event of the log once, in order,
    // some of them after the reconnect.
    const ids = receivedIds(final);
    expectStrictlyIncreasing(ids);
    expect(ids).toEqual(stream.messages.filter((m) => m.id !== undefined).map((m) => Number(m.id)));
    expect(ids.length).toBeGreaterThan(seenBefore.length);
    expect(scriptErrors(page)).toEqual([]);
  }

  it("shows retried attempts of a flaky step", async () => {
    const run = await startRun("flaky_step", { failures: 1 });
    const page = await openViewer(run);
    const { final } = await followToEnd(page);
    expect(final.status).toBe("completed");
    expect(final.steps).toHaveLength(1);
    const [step] = final.steps;
    expect(step!.stepName).toBe("unreliableStep");
    expect(step!.status).toBe("completed");
    expect(step!.attempts.map((a) => [a.attempt, a.status])).toEqual([
      [1, "failed"],
      [2, "completed"],
    ]);
    expect(step!.attempts[0]!.error).toContain("attempt 1 failed on purpose");
    expect(JSON.parse(final.output!)).toEqual({ attempts: 2 });
    expect(final.costUsd).toBe(0);
  });

  it("shows a failed run's error", async () => {
    const run = await startRun("always_fails", { reason: "viewer test" });
    const page = await openViewer(run);
    const { final } = await followToEnd(page);
    expect(final.status).toBe("failed");
    expect(final.output).toBeNull();
    expect(final.error).toContain("always_fails gave up on purpose");
    expect(final.steps.map((s) => [s.stepName, s.status])).toEqual([["prepareDoomedWork", "completed"]]);
  });

  it("a run whose start was refused for good shows failed with the reason, not 'connecting' (its stream is its `done` alone)", async () => {
    const run = await startRun("hello", { name: "Ada" });
    context = await browser.newContext();
    // The stream as the edge answers such a run (test/edge/run-never-started.test.ts pins it): a
    // run accepted while the host was unreachable, then refused, has no events, only its end.
    const reason = "the run could not be started: the workflow left the host's catalog";
    const done = { status: "failed", output: null, error: reason, newRunId: null };
    let served = 0;
    await context.route(`**/runs/${run.workflowId}/events*`, (route) => {
      served++;
      return route.fulfill({
        status: 200,
        headers: { "content-type": "text/event-stream; charset=utf-8", "cache-control": "no-store" },
        body: `retry: 1000\n\nid: 0.end\nevent: done\ndata: ${JSON.stringify(done)}\n\n`,
      });
    });
    const page = await context.newPage();
    await page.goto(`${baseUrl()}/runs/${run.workflowId}?token=${encodeURIComponent(run.streamToken)}`);
    // The end shows once both have happened: the connection closed and the status drawn (on the next frame).
    const { final: v } = await followToEnd(page, 15_000);
    expect(v.status).toBe("failed");
    expect(v.error).toContain(reason);
    expect(v.steps).toEqual([]);
    // The end stops EventSource: no reconnect to a stream that has nothing more to say.
    await new Promise((r) => setTimeout(r, 2_500));
    expect(served).toBe(1);
  });

  it("security: hostile run data (step names, thinking, errors, output, ids) is shown as text, runs nothing and loads nothing from elsewhere", async () => {
    // Run data is untrusted (thinking and output can carry a third-party page's text): every field
    // the page shows gets markup that would run script, fetch another origin or restyle the page
    // if it were ever parsed as HTML.
    const hostile =
      '<img src="https://attacker.example/i.png" onerror="window.__pwned=1"><script>window.__pwned=2</script>' +
      '<a href="javascript:window.__pwned=3">x</a><style>body{background:url(https://attacker.example/s.png)}</style>';
    const workflowId = '<svg onload="window.__pwned=4">';
    const at = new Date().toISOString();
    const step = { activityId: `1"><img src=x onerror="window.__pwned=5">`, stepName: hostile, attempt: 1 };
    const frames: Array<[string, number | null, unknown]> = [
      ["run", 1, { state: "started", runId: hostile, status: "running", at }],
      ["step", 2, { ...step, state: "started", at }],
      ["thinking", 3, { ...step, text: hostile, at }],
      ["attribute", 4, { ...step, attribute: { type: "llm:usage", total: 0.001, tokensUsed: 7, model: hostile }, at }],
      ["step", 5, { ...step, state: "failed", error: hostile, at }],
      ["run", 6, { state: "finished", runId: hostile, status: "failed", output: { text: hostile }, error: hostile, at }],
      ["done", null, { status: "failed", output: { text: hostile }, error: hostile, newRunId: null }],
    ];
    const body = frames
      .map(([event, id, data]) => `${id === null ? "" : `id: ${id}\n`}event: ${event}\ndata: ${JSON.stringify(data)}\n\n`)
      .join("");
    context = await browser.newContext();
    await context.route("**/runs/*/events*", (route) =>
      route.fulfill({ status: 200, headers: { "content-type": "text/event-stream; charset=utf-8", "cache-control": "no-store" }, body }),
    );
    const page = await context.newPage();
    const requested: string[] = [];
    page.on("request", (req) => requested.push(req.url()));
    // A CSP refusal (an injected inline script or a foreign image) is logged as a console error.
    const errors: string[] = [];
    page.on("pageerror", (err) => errors.push(String(err)));
    page.on("console", (msg) => {
      if (msg.type() === "error") errors.push(msg.text());
    });
    await page.goto(`${baseUrl()}/runs/${encodeURIComponent(workflowId)}?token=t`);
    await page.waitForFunction(
      () =>
        document.getElementById("connection")?.dataset.state === "closed" && !(document.getElementById("failure") as HTMLElement).hidden,
      undefined,
      { timeout: 15_000 },
    );
    const v = await view(page);
    const dom = await page.evaluate(() => ({
      pwned: (window as unknown as { __pwned?: number }).__pwned ?? null,
      injected: document.querySelectorAll("body img, body script, body style, body a, body svg, body iframe, body object, body embed")
        .length,
      scripts: document.scripts.length,
      styled: document.querySelectorAll("[style]").length,
      workflowId: document.getElementById("workflow-id")?.textContent,
      runId: document.getElementById("run-id")?.textContent,
      stepName: document.querySelector(".step-name")?.textContent,
    }));
    expect(dom).toEqual({
      pwned: null,
      injected: 0,
      scripts: 1,
      styled: 0,
      workflowId,
      runId: `run ${hostile}`,
      stepName: hostile,
    });
    expect(v.steps).toHaveLength(1);
    expect(v.steps[0]).toMatchObject({ activityId: step.activityId, stepName: hostile, status: "failed", thinking: [hostile] });
    expect(v.steps[0]!.attempts[0]!.error).toBe(hostile);
    expect(v.error).toBe(hostile);
    expect(JSON.parse(v.output!)).toEqual({ text: hostile });
    // Nothing went to another origin (the token in the page's URL stays on ours).
    expect(requested.filter((url) => new URL(url).origin !== new URL(baseUrl()).origin)).toEqual([]);
    expect(errors.filter((e) => !/Failed to load resource/.test(e))).toEqual([]);
    // Trusted Types: should any code of the page ever pass a string to an HTML or script sink, the
    // browser refuses it instead of parsing it.
    const sinks = await page.evaluate(() =>
      [
        () => document.body.insertAdjacentHTML("beforeend", "<b>x</b>"),
        () => {
          document.getElementById("message")!.innerHTML = "<b>x</b>";
        },
        () => {
          document.createElement("script").src = "/viewer/run-viewer.js";
        },
      ].map((sink) => {
        try {
          sink();
          return "accepted";
        } catch (err) {
          return (err as Error).name;
        }
      }),
    );
    expect(sinks).toEqual(["TypeError", "TypeError", "TypeError"]);
  });

  it("says so when the token is not valid for the run", async () => {
    const run = await startRun("hello", { name: "Ada" });
    context = await browser.newContext();
    const page = await context.newPage();
    await page.goto(`${baseUrl()}/runs/${run.workflowId}?token=not-a-token`);
    await page.waitForFunction(() => document.getElementById("connection")?.dataset.state === "error", undefined, { timeout: 15_000 });
    const v = await view(page);
    expect(v.message).toContain("invalid or has expired");
    expect(v.steps).toEqual([]);
  });

  it("a path whose percent-encoding is malformed says so, instead of connecting forever", async () => {
    context = await browser.newContext();
    const page = await context.newPage();
    await page.goto(`${baseUrl()}/runs/%E0%A4?token=not-a-token`);
    await page.waitForFunction(() => document.getElementById("connection")?.dataset.state === "error", undefined, { timeout: 15_000 });
    expect((await view(page)).steps).toEqual([]);
  });
});

describe("GET /runs/:workflowId/events", () => {
  it("needs the stream token of exactly that run: 401 with the JSON error shape otherwise", async () => {
    const run = await startRun("hello", { name: "Grace" });
    const other = await startRun("hello", { name: "Alan" });
    const cases: Array<[string, string]> = [
      ["no token", `${baseUrl()}/runs/${run.workflowId}/events`],
      ["forged token", eventsUrl(run, "eyJhbGciOiJIUzI1NiJ9.e30.c2lnbmF0dXJl")],
      ["another run's token", eventsUrl(run, other.streamToken)],
    ];
    for (const [what, url] of cases) {
      const res = await fetch(url, { headers: { authorization: `Bearer ${inject("apiKey")}` } });
      expect(res.status, what).toBe(401);
      expect(res.headers.get("content-type"), what).toContain("application/json");
      const body = (await res.json()) as { error: { code: string; message: string; requestId: string } };
      expect(body.error.code, what).toBe("unauthorized");
      expect(body.error.requestId, what).toEqual(expect.any(String));
    }
  });

  it("resumes after Last-Event-ID exactly, and answers 204 once a finished run has nothing more", async () => {
    const run = await startRun("two_steps", { text: "a b c" });
    await finalResult(run.workflowId);
    const full = await readViewerStream(run);
    expect(full.status).toBe(200);
    const ids = full.messages.filter((m) => m.id !== undefined).map((m) => Number(m.id));
    expectStrictlyIncreasing(ids);
    const events = full.messages.map((m) => m.event);
    // A fresh stream token first (the page keeps it for its reconnects), then the run.
    expect(events.slice(0, 2)).toEqual(["token", "run"]);
    expect(events[events.length - 1]).toBe("done");
    const steps = full.messages
      .filter((m) => m.event === "step")
      .map((m) => JSON.parse(m.data) as { stepName: string; state: string; attempt: number; at: string });
    expect(steps.map((s) => [s.stepName, s.state]).sort()).toEqual([
      ["countWords", "completed"],
      ["countWords", "started"],
      ["shout", "completed"],
      ["shout", "started"],
    ]);
    expect(JSON.parse(full.messages[full.messages.length - 1]!.data)).toMatchObject({
      status: "completed",
      output: { words: 3, shouted: "A B C" },
    });

    const middle = ids[Math.floor(ids.length / 2)]!;
    const resumed = await readViewerStream(run, { "last-event-id": String(middle) });
    expect(resumed.messages.filter((m) => m.id !== undefined).map((m) => Number(m.id))).toEqual(ids.filter((id) => id > middle));
    expect(resumed.messages[resumed.messages.length - 1]!.event).toBe("done");

    const atEnd = await fetch(eventsUrl(run), { headers: { "last-event-id": String(ids[ids.length - 1]) } });
    expect(atEnd.status).toBe(204);
  });

  it("serves the page with a strict CSP and no referrer; its script and stylesheet are same-origin static files", async () => {
    const res = await fetch(`${baseUrl()}/runs/some-run?token=x`);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toContain("text/html");
    expect(res.headers.get("referrer-policy")).toBe("no-referrer");
    const csp = res.headers.get("content-security-policy") ?? "";
    expect(csp).toContain("default-src 'none'");
    expect(csp).toContain("script-src 'self'");
    expect(csp).toContain("style-src 'self'");
    expect(csp).not.toContain("unsafe-inline");
    expect(csp).toContain("require-trusted-types-for 'script'");
    expect(csp).toContain("trusted-types 'none'");
    const html = await res.text();
    // No inline script or style: one module script and one stylesheet, both from the page's origin.
    expect(html.match(/<script[^>]*>/g)).toEqual(['<script type="module" src="/viewer/run-viewer.js">']);
    expect(html).not.toContain("<style");
    expect(html).toContain('<link rel="stylesheet" href="/viewer/run-viewer.css">');
    const script = await fetch(`${baseUrl()}/viewer/run-viewer.js`);
    expect(script.status).toBe(200);
    expect(script.headers.get("content-type")).toMatch(/javascript/);
    expect(script.headers.get("x-content-type-options")).toBe("nosniff");
    expect(await script.text()).toContain("window.runViewer");
    const style = await fetch(`${baseUrl()}/viewer/run-viewer.css`);
    expect(style.status).toBe(200);
    expect(style.headers.get("content-type")).toMatch(/text\/css/);
  });

  it("serves the static files first and the API's paths from the Worker (wrangler.toml's run_worker_first); a missing file is the Worker's 404", async () => {
    // Served as static files: the headers come from build/assets/_headers, which only static files get.
    const script = await fetch(`${baseUrl()}/viewer/run-viewer.js`);
    expect(script.status).toBe(200);
    expect(script.headers.get("cache-control")).toBe("no-cache");
    await script.arrayBuffer();
    const scalar = await fetch(`${baseUrl()}${SCALAR_SCRIPT_PATH}`);
    expect(scalar.status).toBe(200);
    expect(scalar.headers.get("cache-control")).toContain("immutable");
    await scalar.arrayBuffer();
    // No such file: the lookup falls through to the Worker, which answers with the API's own 404.
    const missing = await fetch(`${baseUrl()}/viewer/no-such-file.js`);
    expect(missing.status).toBe(404);
    expect(missing.headers.get("x-request-id")).toBeTruthy();
    expect(((await missing.json()) as { error: { code: string } }).error.code).toBe("route_not_found");
    // An API path is the Worker's, and gets the Worker's headers.
    const health = await fetch(`${baseUrl()}/health`);
    expect(health.status).toBe(200);
    expect(health.headers.get("x-request-id")).toBeTruthy();
    expect(await health.json()).toMatchObject({ ok: true });
  });
});
