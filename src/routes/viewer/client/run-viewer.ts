/**
 * The run viewer's script, in the browser: follows a run live with EventSource over
 * GET /runs/:workflowId/events and renders it (status, steps with attempts and timing, thinking,
 * cost, output or error). Bundled by esbuild (scripts/build-viewer.ts) into the Worker's static
 * assets as /viewer/run-viewer.js; type-checked with the DOM library (tsconfig.viewer.json).
 *
 * The page (page.ts) carries nothing request-specific: the workflowId comes from its path and the
 * stream token from `?token=`. Run data is only ever written with textContent, never parsed as HTML.
 *
 * For tests and debugging the page keeps `window.runViewer`: every SSE event it received (before
 * de-duplication), how many times the stream opened, and the state it renders.
 */

type RunStatus = string;

interface Attempt {
  attempt: number;
  status: "running" | "completed" | "failed";
  startedAt: string | null;
  endedAt: string | null;
  error: string | null;
  thinking: string;
}

interface Step {
  activityId: string;
  stepName: string;
  attempts: Attempt[];
  costUsd: number;
  tokens: number;
  node: HTMLElement | null;
  dirty: boolean;
}

interface ViewerState {
  status: RunStatus;
  runId: string | null;
  startedAt: string | null;
  finishedAt: string | null;
  output: unknown;
  error: string | null;
  costUsd: number;
  tokens: number;
  steps: Step[];
  lastSeq: number;
  finished: boolean;
}

interface ViewerDebug {
  events: Array<{ type: string; id: string | null; receivedAt: number }>;
  opens: number;
  recoveries: number;
  state: ViewerState;
}

declare global {
  interface Window {
    runViewer?: ViewerDebug;
  }
}

/** The data of the stream's events (see events.ts). */
interface StepData {
  activityId?: unknown;
  stepName?: string;
  attempt?: unknown;
  at?: string;
}
interface RunEvent extends StepData {
  state?: "started" | "finished";
  runId?: string | null;
  status?: string | null;
  output?: unknown;
  error?: string | null;
}
interface StepEvent extends StepData {
  state?: "started" | "completed" | "failed";
  error?: string;
}
interface ThinkingEvent extends StepData {
  text?: string;
}
interface AttributeEvent extends StepData {
  attribute?: { type?: string; total?: unknown; tokensUsed?: unknown } | null;
}
interface DoneEvent {
  status?: string | null;
  output?: unknown;
  error?: string | null;
}
interface ServerErrorEvent {
  message?: string;
}

/** A fresh stream token for this run, sent as the stream opens and every few minutes after. */
interface TokenEvent {
  token?: string;
  expiresAt?: string;
}

type ConnectionState = "connecting" | "connected" | "reconnecting" | "closed" | "error";

const TERMINAL = new Set(["completed", "failed", "cancelled", "terminated", "timed_out", "continued_as_new"]);

function byId(id: string): HTMLElement {
  const node = document.getElementById(id);
  if (!node) throw new Error(`the page has no #${id}`);
  return node;
}

function el(tag: string, cls?: string | null, text?: unknown): HTMLElement {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

const round = (n: number) => Math.round(n * 1e9) / 1e9;

function clock(iso: string | null): string {
  if (!iso) return "";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return "";
  return `${d.toLocaleTimeString(undefined, { hour12: false })}.${String(d.getMilliseconds()).padStart(3, "0")}`;
}

function duration(fromIso: string | null, toIso?: string | null): string {
  if (!fromIso) return "";
  let ms = (toIso ? Date.parse(toIso) : Date.now()) - Date.parse(fromIso);
  if (!(ms >= 0)) ms = 0;
  return ms < 1000 ? `${ms} ms` : `${(ms / 1000).toFixed(ms < 10000 ? 2 : 1)} s`;
}

const usd = (n: number) => `$${n.toFixed(n !== 0 && n < 0.01 ? 6 : 4)}`;

function start(): void {
  const parts = location.pathname.split("/");
  // A malformed escape (`/runs/%E0`) is no workflow id: asked for as it is, the stream answers
  // with its error, which the page shows (decodeURIComponent would throw and the page never connect).
  let workflowId = parts[2] ?? "";
  try {
    workflowId = decodeURIComponent(workflowId);
  } catch {
    /* kept as sent */
  }
  // Replaced by the fresh ones the stream sends (`token` events), so reconnects after the first token expired still work.
  let token = new URLSearchParams(location.search).get("token") ?? "";
  const eventsPath = `/runs/${encodeURIComponent(workflowId)}/events`;

  const state: ViewerState = {
    status: "connecting",
    runId: null,
    startedAt: null,
    finishedAt: null,
    output: undefined,
    error: null,
    costUsd: 0,
    tokens: 0,
    steps: [],
    lastSeq: 0,
    finished: false,
  };
  const debug: ViewerDebug = { events: [], opens: 0, recoveries: 0, state };
  window.runViewer = debug;

  byId("workflow-id").textContent = workflowId;
  document.title = `Run ${workflowId}`;

  // ---------------------------------------------------------------- state

  function stepOf(d: StepData): Step {
    const id = String(d.activityId);
    const known = state.steps.find((s) => s.activityId === id);
    if (known) return known;
    const step: Step = { activityId: id, stepName: d.stepName || "step", attempts: [], costUsd: 0, tokens: 0, node: null, dirty: true };
    state.steps.push(step);
    return step;
  }

  function attemptOf(step: Step, n: number): Attempt {
    const known = step.attempts.find((a) => a.attempt === n);
    if (known) return known;
    const attempt: Attempt = { attempt: n, status: "running", startedAt: null, endedAt: null, error: null, thinking: "" };
    step.attempts.push(attempt);
    step.attempts.sort((a, b) => a.attempt - b.attempt);
    return attempt;
  }

  const handlers = {
    run(d: RunEvent) {
      if (d.runId) state.runId = d.runId;
      if (d.state === "started") {
        state.startedAt = state.startedAt || d.at || null;
        if (!TERMINAL.has(state.status)) state.status = "running";
      } else {
        state.status = d.status || state.status;
        state.finishedAt = d.at ?? null;
        state.output = d.output;
        state.error = d.error || null;
      }
    },
    step(d: StepEvent) {
      const step = stepOf(d);
      const attempt = attemptOf(step, Number(d.attempt) || 1);
      step.dirty = true;
      if (d.state === "started") {
        // The start of an attempt may be delivered after its end: it only fills in the time.
        attempt.startedAt = d.at ?? null;
      } else {
        attempt.status = d.state === "failed" ? "failed" : "completed";
        attempt.endedAt = d.at ?? null;
        if (d.error) attempt.error = d.error;
      }
    },
    thinking(d: ThinkingEvent) {
      const step = stepOf(d);
      attemptOf(step, Number(d.attempt) || 1).thinking += d.text || "";
      step.dirty = true;
    },
    attribute(d: AttributeEvent) {
      const a = d.attribute;
      if (a?.type !== "llm:usage") return;
      const step = stepOf(d);
      attemptOf(step, Number(d.attempt) || 1);
      const total = typeof a.total === "number" ? a.total : 0;
      const tokens = typeof a.tokensUsed === "number" ? a.tokensUsed : 0;
      state.costUsd = round(state.costUsd + total);
      state.tokens += tokens;
      step.costUsd = round(step.costUsd + total);
      step.tokens += tokens;
      step.dirty = true;
    },
    done(d: DoneEvent) {
      state.finished = true;
      if (d.status) state.status = d.status;
      if (state.output === undefined) state.output = d.output;
      if (!state.error && d.error) state.error = d.error;
      es?.close();
      setConnection("closed", "stream closed: the run is over");
    },
    server_error(d: ServerErrorEvent | null) {
      setConnection("reconnecting", d?.message || "the stream was interrupted");
    },
    token(d: TokenEvent | null) {
      if (typeof d?.token !== "string" || d.token === "") return;
      token = d.token;
      // A reload opens the stream with the fresh token too.
      const url = new URL(location.href);
      url.searchParams.set("token", token);
      history.replaceState(history.state, "", url);
    },
  };
  type EventType = keyof typeof handlers;
  const eventTypes = Object.keys(handlers) as EventType[];

  // ---------------------------------------------------------------- rendering

  const isTicking = (step: Step) => step.attempts.some((a) => a.status === "running" && a.startedAt);

  function renderStep(step: Step): void {
    // Rebuilt only when it changed, or when a running attempt's duration moves on.
    if (step.node && !step.dirty && !isTicking(step)) return;
    step.dirty = false;
    if (!step.node) {
      step.node = el("article", "step");
      step.node.dataset.activityId = step.activityId;
      step.node.dataset.stepName = step.stepName;
      byId("steps").appendChild(step.node);
      document.getElementById("no-steps")?.remove();
    }
    const node = step.node;
    const latest = step.attempts[step.attempts.length - 1];
    const status = latest ? latest.status : "running";
    node.dataset.status = status;
    node.textContent = "";
    const h = el("h3");
    h.appendChild(el("span", "step-name", step.stepName));
    h.appendChild(el("span", "step-id", `#${step.activityId}`));
    const badge = el("span", "badge", status);
    badge.dataset.status = status;
    h.appendChild(badge);
    if (step.tokens > 0) h.appendChild(el("span", "step-cost", `${usd(step.costUsd)} · ${step.tokens} tokens`));
    node.appendChild(h);

    const table = el("table", "attempts");
    const head = el("tr");
    for (const t of ["attempt", "status", "started", "duration", "error"]) head.appendChild(el("th", null, t));
    table.appendChild(el("thead")).appendChild(head);
    const body = el("tbody");
    for (const a of step.attempts) {
      const row = el("tr", "attempt");
      row.dataset.attempt = String(a.attempt);
      row.dataset.status = a.status;
      row.appendChild(el("td", "attempt-number", a.attempt));
      const cell = el("td", "attempt-status");
      const b = el("span", "badge", a.status);
      b.dataset.status = a.status;
      cell.appendChild(b);
      row.appendChild(cell);
      row.appendChild(el("td", "attempt-start", clock(a.startedAt)));
      const took = a.status === "running" ? (a.startedAt ? `${duration(a.startedAt)} so far` : "") : duration(a.startedAt, a.endedAt);
      row.appendChild(el("td", "attempt-duration", took));
      row.appendChild(el("td", "error", a.error || ""));
      body.appendChild(row);
    }
    table.appendChild(body);
    node.appendChild(table);

    for (const a of step.attempts) {
      if (!a.thinking) continue;
      node.appendChild(el("div", "thinking-label", step.attempts.length > 1 ? `thinking (attempt ${a.attempt})` : "thinking"));
      const pre = el("pre", "thinking", a.thinking);
      pre.dataset.attempt = String(a.attempt);
      node.appendChild(pre);
    }
  }

  let dirty = false;
  function render(): void {
    dirty = false;
    const status = byId("status");
    status.textContent = state.status;
    status.dataset.status = state.status;
    const cost = byId("cost");
    cost.textContent = usd(state.costUsd);
    cost.dataset.usd = String(state.costUsd);
    const tokens = byId("tokens");
    tokens.textContent = String(state.tokens);
    tokens.dataset.tokens = String(state.tokens);
    byId("step-count").textContent = String(state.steps.length);
    byId("elapsed").textContent = state.startedAt ? duration(state.startedAt, state.finishedAt) : "";
    byId("run-id").textContent = state.runId ? `run ${state.runId}` : "";
    state.steps.forEach(renderStep);
    if (state.output !== undefined && state.output !== null) {
      byId("output").textContent = JSON.stringify(state.output, null, 2);
      byId("result").hidden = false;
    }
    if (state.error) {
      byId("error").textContent = state.error;
      byId("failure").hidden = false;
    }
  }
  function scheduleRender(): void {
    if (dirty) return;
    dirty = true;
    requestAnimationFrame(render);
  }

  // ---------------------------------------------------------------- the stream

  let connection: ConnectionState = "connecting";
  function setConnection(value: ConnectionState, message?: string): void {
    connection = value;
    const node = byId("connection");
    node.dataset.state = value;
    node.textContent = value;
    node.title = message || "";
    if (value === "error") byId("message").textContent = message || "";
    else if (value === "connected") byId("message").textContent = "";
  }

  // Durations of running attempts tick while nothing else happens.
  const ticker = setInterval(() => {
    if (state.finished || connection === "error") {
      clearInterval(ticker);
      render();
      return;
    }
    if (!document.hidden) scheduleRender();
  }, 500);

  function onEvent(type: EventType) {
    return (e: MessageEvent<string>) => {
      debug.events.push({ type, id: e.lastEventId || null, receivedAt: Date.now() });
      // Ids are log sequence numbers; an event at or before the last one seen is a replay.
      if (e.lastEventId && type !== "done" && type !== "server_error" && type !== "token") {
        const seq = Number(e.lastEventId);
        if (seq <= state.lastSeq) return;
        state.lastSeq = seq;
      }
      let data: unknown;
      try {
        data = JSON.parse(e.data);
      } catch {
        return;
      }
      (handlers[type] as (d: unknown) => void)(data);
      scheduleRender();
    };
  }

  let es: EventSource | null = null;
  let failures = 0;
  const streamUrl = () => `${eventsPath}?token=${encodeURIComponent(token)}${state.lastSeq > 0 ? `&lastEventId=${state.lastSeq}` : ""}`;

  function connect(): void {
    if (state.finished) return;
    const source = new EventSource(streamUrl());
    es = source;
    for (const type of eventTypes) source.addEventListener(type, onEvent(type) as EventListener);
    source.onopen = () => {
      debug.opens++;
      failures = 0;
      setConnection("connected");
    };
    source.onerror = () => {
      if (state.finished || source !== es) return;
      // CONNECTING: EventSource reconnects by itself, sending Last-Event-ID.
      if (source.readyState === EventSource.CONNECTING) {
        setConnection("reconnecting", "connection lost; reconnecting");
        return;
      }
      // CLOSED: the server answered with something other than a stream; find out what.
      source.close();
      void recover();
    };
  }

  function retryLater(): void {
    failures++;
    const delay = Math.min(15000, 1000 * 2 ** Math.min(failures - 1, 4));
    setConnection("reconnecting", `reconnecting in ${Math.round(delay / 1000)} s`);
    setTimeout(connect, delay);
  }

  async function recover(): Promise<void> {
    debug.recoveries++;
    setConnection("reconnecting", "checking the stream");
    const ctrl = new AbortController();
    let res: Response;
    try {
      res = await fetch(streamUrl(), { headers: { accept: "text/event-stream" }, signal: ctrl.signal, cache: "no-store" });
    } catch {
      retryLater();
      return;
    }
    if (res.status === 200) {
      ctrl.abort();
      failures++;
      setTimeout(connect, failures > 1 ? 1000 : 0);
      return;
    }
    if (res.status === 204) {
      // Nothing after the last event this page has: the run is over and everything was shown.
      state.finished = true;
      setConnection("closed", "stream closed: the run is over");
      scheduleRender();
      return;
    }
    if (res.status === 400 || res.status === 401 || res.status === 403 || res.status === 404) {
      try {
        const body = (await res.json()) as { error?: { message?: string } } | null;
        setConnection("error", body?.error?.message || `the stream answered ${res.status}`);
      } catch {
        setConnection("error", `the stream answered ${res.status}`);
      }
      return;
    }
    retryLater();
  }

  if (!workflowId || !token) {
    setConnection("error", "this page needs a run in its path and a stream token: /runs/<workflowId>?token=<streamToken>");
    render();
    return;
  }
  render();
  connect();
}

start();

export {};
