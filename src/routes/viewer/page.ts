/**
 * The run viewer: one self-contained HTML page (inline CSS and JS, nothing fetched but its own
 * event stream) that follows a run live with EventSource over GET /runs/:workflowId/events.
 *
 * The page reads the workflowId from its path and the stream token from `?token=`; the server
 * puts nothing request-specific in it but the CSP nonce, so no run data is ever parsed as HTML
 * (the script builds the DOM with textContent only).
 *
 * For tests and debugging the page keeps `window.runViewer`: every SSE event it received (before
 * de-duplication), how many times the stream opened, and the state it renders.
 */

const STYLE = `
:root { color-scheme: light; --fg: #1d232b; --muted: #5d6875; --line: #d9dee4; --bg: #f6f7f9; --card: #fff;
  --ok: #1a7f37; --bad: #c62828; --run: #0b62c4; --warn: #a05a00; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 "Liberation Sans", system-ui, sans-serif; color: var(--fg); background: var(--bg); }
header { display: flex; align-items: center; gap: 12px; padding: 14px 20px; background: var(--card); border-bottom: 1px solid var(--line); }
header h1 { font-size: 16px; margin: 0; font-weight: 600; }
header code { font: 13px "Liberation Mono", ui-monospace, monospace; color: var(--muted); }
main { max-width: 1100px; margin: 0 auto; padding: 16px 20px 40px; }
.conn { margin-left: auto; display: inline-flex; align-items: center; gap: 6px; font-size: 12px; color: var(--muted); }
.conn::before { content: ""; width: 9px; height: 9px; border-radius: 50%; background: var(--muted); }
.conn[data-state="connected"]::before { background: var(--ok); }
.conn[data-state="reconnecting"]::before, .conn[data-state="connecting"]::before { background: var(--warn); }
.conn[data-state="error"]::before { background: var(--bad); }
.summary { display: grid; grid-template-columns: repeat(auto-fit, minmax(160px, 1fr)); gap: 10px; margin-bottom: 16px; }
.summary > div { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 10px 12px; }
.summary .label { display: block; font-size: 11px; text-transform: uppercase; letter-spacing: .04em; color: var(--muted); }
.summary .value { font-size: 18px; font-weight: 600; }
.badge { display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 12px; font-weight: 600; background: #e8ebef; color: var(--muted); }
[data-status="running"] > .badge, .badge[data-status="running"], .badge[data-status="started"] { background: #e3eefc; color: var(--run); }
.badge[data-status="completed"] { background: #dcf3e2; color: var(--ok); }
.badge[data-status="failed"], .badge[data-status="timed_out"], .badge[data-status="terminated"], .badge[data-status="cancelled"] { background: #fbe3e3; color: var(--bad); }
.step { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 12px 14px; margin-bottom: 12px; }
.step h3 { margin: 0 0 8px; font-size: 15px; display: flex; gap: 8px; align-items: center; }
.step .step-id { color: var(--muted); font-weight: 400; font-size: 12px; }
.step .step-cost { margin-left: auto; color: var(--muted); font-weight: 400; font-size: 12px; }
table { border-collapse: collapse; width: 100%; font-size: 13px; }
th, td { text-align: left; padding: 4px 8px; border-top: 1px solid var(--line); vertical-align: top; }
th { font-weight: 600; color: var(--muted); font-size: 12px; border-top: 0; }
td.error { color: var(--bad); }
pre { margin: 6px 0 0; padding: 8px 10px; background: #f2f4f7; border-radius: 6px; white-space: pre-wrap; word-break: break-word; font: 12.5px/1.5 "Liberation Mono", ui-monospace, monospace; }
.thinking { color: #4a5361; font-style: italic; }
.thinking-label { font-size: 12px; color: var(--muted); margin-top: 8px; }
h2 { font-size: 14px; margin: 18px 0 6px; }
#failure pre { color: var(--bad); background: #fdf0f0; }
#message { color: var(--bad); }
.empty { color: var(--muted); }
`;

// Plain ES2019 in a string: no bundler touches it, and it uses no template literals of its own.
const SCRIPT = `
(function () {
  "use strict";
  var TERMINAL = { completed: 1, failed: 1, cancelled: 1, terminated: 1, timed_out: 1, continued_as_new: 1 };
  var $ = function (id) { return document.getElementById(id); };
  var parts = location.pathname.split("/");
  var workflowId = decodeURIComponent(parts[2] || "");
  var token = new URLSearchParams(location.search).get("token") || "";
  var eventsPath = "/runs/" + encodeURIComponent(workflowId) + "/events";

  var state = { status: "connecting", runId: null, startedAt: null, finishedAt: null, output: undefined, error: null,
    costUsd: 0, tokens: 0, steps: [], lastSeq: 0, finished: false };
  var debug = { events: [], opens: 0, recoveries: 0, state: state };
  window.runViewer = debug;

  $("workflow-id").textContent = workflowId;
  document.title = "Run " + workflowId;

  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }
  function round(n) { return Math.round(n * 1e9) / 1e9; }
  function clock(iso) {
    if (!iso) return "";
    var d = new Date(iso);
    if (isNaN(d.getTime())) return "";
    return d.toLocaleTimeString(undefined, { hour12: false }) + "." + String(d.getMilliseconds()).padStart(3, "0");
  }
  function duration(fromIso, toIso) {
    if (!fromIso) return "";
    var ms = (toIso ? Date.parse(toIso) : Date.now()) - Date.parse(fromIso);
    if (!(ms >= 0)) ms = 0;
    return ms < 1000 ? ms + " ms" : (ms / 1000).toFixed(ms < 10000 ? 2 : 1) + " s";
  }
  function usd(n) { return "$" + n.toFixed(n !== 0 && n < 0.01 ? 6 : 4); }

  // ---------------------------------------------------------------- state

  function stepOf(d) {
    var id = String(d.activityId);
    for (var i = 0; i < state.steps.length; i++) if (state.steps[i].activityId === id) return state.steps[i];
    var step = { activityId: id, stepName: d.stepName || "step", attempts: [], costUsd: 0, tokens: 0, node: null, dirty: true };
    state.steps.push(step);
    return step;
  }
  function attemptOf(step, n) {
    for (var i = 0; i < step.attempts.length; i++) if (step.attempts[i].attempt === n) return step.attempts[i];
    var attempt = { attempt: n, status: "running", startedAt: null, endedAt: null, error: null, thinking: "" };
    step.attempts.push(attempt);
    step.attempts.sort(function (a, b) { return a.attempt - b.attempt; });
    return attempt;
  }

  var handlers = {
    run: function (d) {
      if (d.runId) state.runId = d.runId;
      if (d.state === "started") {
        state.startedAt = state.startedAt || d.at;
        if (!TERMINAL[state.status]) state.status = "running";
      } else {
        state.status = d.status || state.status;
        state.finishedAt = d.at;
        state.output = d.output;
        state.error = d.error || null;
      }
    },
    step: function (d) {
      var step = stepOf(d);
      var attempt = attemptOf(step, Number(d.attempt) || 1);
      step.dirty = true;
      if (d.state === "started") {
        // The start of an attempt may be delivered after its end: it only fills in the time.
        attempt.startedAt = d.at;
      } else {
        attempt.status = d.state;
        attempt.endedAt = d.at;
        if (d.error) attempt.error = d.error;
      }
    },
    thinking: function (d) {
      var step = stepOf(d);
      attemptOf(step, Number(d.attempt) || 1).thinking += d.text || "";
      step.dirty = true;
    },
    attribute: function (d) {
      var a = d.attribute;
      if (!a || a.type !== "llm:usage") return;
      var step = stepOf(d);
      attemptOf(step, Number(d.attempt) || 1);
      var total = typeof a.total === "number" ? a.total : 0;
      var tokens = typeof a.tokensUsed === "number" ? a.tokensUsed : 0;
      state.costUsd = round(state.costUsd + total);
      state.tokens += tokens;
      step.costUsd = round(step.costUsd + total);
      step.tokens += tokens;
      step.dirty = true;
    },
    done: function (d) {
      state.finished = true;
      if (d.status) state.status = d.status;
      if (state.output === undefined) state.output = d.output;
      if (!state.error && d.error) state.error = d.error;
      if (es) es.close();
      setConnection("closed", "stream closed: the run is over");
    },
    server_error: function (d) {
      setConnection("reconnecting", (d && d.message) || "the stream was interrupted");
    }
  };

  // ---------------------------------------------------------------- rendering

  function isTicking(step) {
    return step.attempts.some(function (a) { return a.status === "running" && a.startedAt; });
  }
  function renderStep(step) {
    // Rebuilt only when it changed, or when a running attempt's duration moves on.
    if (step.node && !step.dirty && !isTicking(step)) return;
    step.dirty = false;
    if (!step.node) {
      step.node = el("article", "step");
      step.node.dataset.activityId = step.activityId;
      step.node.dataset.stepName = step.stepName;
      $("steps").appendChild(step.node);
      var empty = $("no-steps");
      if (empty) empty.remove();
    }
    var node = step.node;
    var latest = step.attempts[step.attempts.length - 1];
    node.dataset.status = latest ? latest.status : "running";
    node.textContent = "";
    var h = el("h3");
    h.appendChild(el("span", "step-name", step.stepName));
    h.appendChild(el("span", "step-id", "#" + step.activityId));
    var badge = el("span", "badge", node.dataset.status);
    badge.dataset.status = node.dataset.status;
    h.appendChild(badge);
    if (step.tokens > 0) h.appendChild(el("span", "step-cost", usd(step.costUsd) + " · " + step.tokens + " tokens"));
    node.appendChild(h);

    var table = el("table", "attempts");
    var head = el("tr");
    ["attempt", "status", "started", "duration", "error"].forEach(function (t) { head.appendChild(el("th", null, t)); });
    table.appendChild(el("thead")).appendChild(head);
    var body = el("tbody");
    step.attempts.forEach(function (a) {
      var row = el("tr", "attempt");
      row.dataset.attempt = String(a.attempt);
      row.dataset.status = a.status;
      row.appendChild(el("td", "attempt-number", a.attempt));
      var cell = el("td", "attempt-status");
      var b = el("span", "badge", a.status);
      b.dataset.status = a.status;
      cell.appendChild(b);
      row.appendChild(cell);
      row.appendChild(el("td", "attempt-start", clock(a.startedAt)));
      var dur = el("td", "attempt-duration", a.status === "running" ? (a.startedAt ? duration(a.startedAt) + " so far" : "") : duration(a.startedAt, a.endedAt));
      row.appendChild(dur);
      row.appendChild(el("td", "error", a.error || ""));
      body.appendChild(row);
    });
    table.appendChild(body);
    node.appendChild(table);

    step.attempts.forEach(function (a) {
      if (!a.thinking) return;
      node.appendChild(el("div", "thinking-label", step.attempts.length > 1 ? "thinking (attempt " + a.attempt + ")" : "thinking"));
      var pre = el("pre", "thinking", a.thinking);
      pre.dataset.attempt = String(a.attempt);
      node.appendChild(pre);
    });
  }

  var dirty = false;
  function render() {
    dirty = false;
    var status = $("status");
    status.textContent = state.status;
    status.dataset.status = state.status;
    var cost = $("cost");
    cost.textContent = usd(state.costUsd);
    cost.dataset.usd = String(state.costUsd);
    var tokens = $("tokens");
    tokens.textContent = String(state.tokens);
    tokens.dataset.tokens = String(state.tokens);
    $("step-count").textContent = String(state.steps.length);
    $("elapsed").textContent = state.startedAt ? duration(state.startedAt, state.finishedAt) : "";
    $("run-id").textContent = state.runId ? "run " + state.runId : "";
    state.steps.forEach(renderStep);
    if (state.output !== undefined && state.output !== null) {
      $("output").textContent = JSON.stringify(state.output, null, 2);
      $("result").hidden = false;
    }
    if (state.error) {
      $("error").textContent = state.error;
      $("failure").hidden = false;
    }
  }
  function scheduleRender() {
    if (dirty) return;
    dirty = true;
    requestAnimationFrame(render);
  }
  // Durations of running attempts tick while nothing else happens.
  var ticker = setInterval(function () {
    if (state.finished || connection === "error") { clearInterval(ticker); render(); return; }
    if (!document.hidden) scheduleRender();
  }, 500);

  // ---------------------------------------------------------------- the stream

  var connection = "connecting";
  function setConnection(value, message) {
    connection = value;
    var node = $("connection");
    node.dataset.state = value;
    node.textContent = value;
    node.title = message || "";
    if (value === "error") $("message").textContent = message || "";
    else if (value === "connected") $("message").textContent = "";
  }

  function onEvent(type) {
    return function (e) {
      debug.events.push({ type: type, id: e.lastEventId || null, receivedAt: Date.now() });
      // Ids are log sequence numbers; an event at or before the last one seen is a replay.
      if (e.lastEventId && type !== "done" && type !== "server_error") {
        var seq = Number(e.lastEventId);
        if (seq <= state.lastSeq) return;
        state.lastSeq = seq;
      }
      var data;
      try { data = JSON.parse(e.data); } catch (err) { return; }
      handlers[type](data);
      scheduleRender();
    };
  }

  var es = null;
  var failures = 0;
  function streamUrl() {
    return eventsPath + "?token=" + encodeURIComponent(token) + (state.lastSeq > 0 ? "&lastEventId=" + state.lastSeq : "");
  }
  function connect() {
    if (state.finished) return;
    es = new EventSource(streamUrl());
    var source = es;
    Object.keys(handlers).forEach(function (type) { source.addEventListener(type, onEvent(type)); });
    source.onopen = function () {
      debug.opens++;
      failures = 0;
      setConnection("connected");
    };
    source.onerror = function () {
      if (state.finished || source !== es) return;
      // CONNECTING: EventSource reconnects by itself, sending Last-Event-ID.
      if (source.readyState === EventSource.CONNECTING) { setConnection("reconnecting", "connection lost; reconnecting"); return; }
      // CLOSED: the server answered with something other than a stream; find out what.
      source.close();
      recover();
    };
  }
  function retryLater() {
    failures++;
    var delay = Math.min(15000, 1000 * Math.pow(2, Math.min(failures - 1, 4)));
    setConnection("reconnecting", "reconnecting in " + Math.round(delay / 1000) + " s");
    setTimeout(connect, delay);
  }
  function recover() {
    debug.recoveries++;
    setConnection("reconnecting", "checking the stream");
    var ctrl = new AbortController();
    fetch(streamUrl(), { headers: { accept: "text/event-stream" }, signal: ctrl.signal, cache: "no-store" }).then(function (res) {
      if (res.status === 200) { ctrl.abort(); failures++; setTimeout(connect, failures > 1 ? 1000 : 0); return; }
      if (res.status === 204) {
        // Nothing after the last event this page has: the run is over and everything was shown.
        state.finished = true;
        setConnection("closed", "stream closed: the run is over");
        scheduleRender();
        return;
      }
      if (res.status === 400 || res.status === 401 || res.status === 403 || res.status === 404) {
        return res.json().then(function (body) {
          setConnection("error", (body && body.error && body.error.message) || ("the stream answered " + res.status));
        }, function () { setConnection("error", "the stream answered " + res.status); });
      }
      retryLater();
    }, function () { retryLater(); });
  }

  if (!workflowId || !token) {
    setConnection("error", "this page needs a run in its path and a stream token: /runs/<workflowId>?token=<streamToken>");
    render();
    return;
  }
  render();
  connect();
})();
`;

/** The page, with the response's CSP nonce on its style and script. */
export function viewerPage(nonce: string): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>Run viewer</title>
<style nonce="${nonce}">${STYLE}</style>
</head>
<body>
<header>
  <h1>Run <code id="workflow-id"></code></h1>
  <code id="run-id"></code>
  <span id="connection" class="conn" data-state="connecting" role="status" aria-live="polite">connecting</span>
</header>
<main>
  <section class="summary">
    <div><span class="label">status</span><span class="value"><span id="status" class="badge" data-status="connecting">connecting</span></span></div>
    <div><span class="label">elapsed</span><span class="value" id="elapsed"></span></div>
    <div><span class="label">steps</span><span class="value" id="step-count">0</span></div>
    <div><span class="label">cost (LLM)</span><span class="value" id="cost" data-usd="0">$0.0000</span></div>
    <div><span class="label">tokens</span><span class="value" id="tokens" data-tokens="0">0</span></div>
  </section>
  <p id="message" role="alert"></p>
  <section id="steps"><p id="no-steps" class="empty">No steps yet.</p></section>
  <section id="result" hidden><h2>Output</h2><pre id="output"></pre></section>
  <section id="failure" hidden><h2>Error</h2><pre id="error"></pre></section>
</main>
<script nonce="${nonce}">${SCRIPT}</script>
</body>
</html>
`;
}

/** Response headers of the page: only its own inline code runs, and the token in its URL never leaves in a Referer. */
export function viewerPageHeaders(nonce: string): Record<string, string> {
  return {
    "content-type": "text/html; charset=utf-8",
    "cache-control": "no-store",
    "referrer-policy": "no-referrer",
    "x-content-type-options": "nosniff",
    "content-security-policy": [
      "default-src 'none'",
      `script-src 'nonce-${nonce}'`,
      `style-src 'nonce-${nonce}'`,
      "connect-src 'self'",
      "img-src data:",
      "base-uri 'none'",
      "form-action 'none'",
      "frame-ancestors 'none'",
    ].join("; "),
  };
}
