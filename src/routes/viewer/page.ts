/**
 * The run viewer page: static HTML whose behaviour lives in a real module,
 * src/routes/viewer/client/run-viewer.ts (type-checked with the DOM library, linted, bundled by
 * esbuild in scripts/build-viewer.ts), served with its stylesheet as Workers static assets under
 * /viewer/. No inline script or style: the CSP allows scripts and styles from the page's own
 * origin only.
 *
 * The page reads the workflowId from its path and the stream token from `?token=`; the server puts
 * nothing request-specific in it, so no run data is ever parsed as HTML (the script builds the DOM
 * with textContent only).
 */
import { htmlPageHeaders } from "../page-headers.ts";

/** Where the page's script and stylesheet are served (static assets, see scripts/build-viewer.ts). */
export const VIEWER_ASSETS = { script: "/viewer/run-viewer.js", style: "/viewer/run-viewer.css" } as const;

const PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>Run viewer</title>
<link rel="stylesheet" href="${VIEWER_ASSETS.style}">
<script type="module" src="${VIEWER_ASSETS.script}"></script>
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
</body>
</html>
`;

/** The page: the same for every run. */
export function viewerPage(): string {
  return PAGE;
}

/**
 * Response headers of the page: only its own origin's script and style run, and the token in its
 * URL never leaves in a Referer. Trusted Types with no policy: the page builds its DOM with
 * textContent only, so the browser refuses any string passed to an HTML or script sink (innerHTML,
 * a script's src) rather than parsing run data as markup, should such code ever be added.
 */
export function viewerPageHeaders(): Record<string, string> {
  return htmlPageHeaders([
    "script-src 'self'",
    "style-src 'self'",
    "connect-src 'self'",
    "img-src data:",
    "require-trusted-types-for 'script'",
    "trusted-types 'none'",
  ]);
}
