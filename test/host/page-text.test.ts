/** summarize_url's page text (host/activities/page-text.ts): what it keeps, and hostile pages (security). */
import { resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { Worker } from "node:worker_threads";
import { describe, expect, it } from "vitest";
import { decodePage, MAX_PAGE_TITLE_CHARS, pageText, pageTitle } from "../../host/activities/page-text.ts";

describe("page text: happy path", () => {
  it("keeps the readable text: tags, scripts, styles and the title dropped, whitespace collapsed", () => {
    const html = `<!doctype html><html><head><title> Durable execution </title>
      <style>body { color: red }</style><script type="module">alert("<b>x</b>")</script></head>
      <body><h1>Durable   execution</h1><p>Runs survive <em>crashes</em>.</p><SCRIPT>x()</SCRIPT >
      <p>Replay &amp; retries.</p></body></html>`;
    expect(pageTitle(html)).toBe("Durable execution");
    expect(pageText(html)).toBe("Durable execution Runs survive crashes . Replay &amp; retries.");
  });

  it("text that only looks like markup stays text: a lone <, <>, an unclosed script's contents", () => {
    expect(pageText("1 < 2 and 3 > 2")).toBe("1 < 2 and 3 > 2");
    expect(pageText("a <> b")).toBe("a <> b");
    expect(pageText("a < b")).toBe("a < b");
    expect(pageText("<p>before</p><script>never closed")).toBe("before never closed");
    expect(pageTitle("<p>no title</p>")).toBeNull();
  });

  it("a title is one line of at most MAX_PAGE_TITLE_CHARS: a page's 2 MB title does not become the run's output", () => {
    expect(pageTitle("<title>Durable\n   execution\t</title>")).toBe("Durable execution");
    const long = pageTitle(`<title>${"t".repeat(2_000_000)}</title>`)!;
    expect(long).toHaveLength(MAX_PAGE_TITLE_CHARS);
    expect(long.endsWith("…")).toBe(true);
    // A title of emoji (two UTF-16 units each) is cut between characters, never inside one.
    const emoji = pageTitle(`<title>${"😀".repeat(1000)}</title>`)!;
    expect(emoji.length).toBeLessThanOrEqual(MAX_PAGE_TITLE_CHARS);
    expect(/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/.test(emoji)).toBe(false);
  });
});

/**
 * pageText and pageTitle of `html` in a worker thread, which is stopped if it has not answered
 * within `deadlineMs`: a regular expression that backtracks cannot be interrupted on the test's own
 * thread, so without the worker a regression would hang the suite instead of failing it.
 */
function extractWithin(html: string, deadlineMs: number): Promise<{ text: string; title: string | null }> {
  const module = pathToFileURL(resolve(import.meta.dirname, "../../host/activities/page-text.ts")).href;
  const worker = new Worker(
    `const { parentPort, workerData } = require("node:worker_threads");
     import(workerData.module).then((m) => parentPort.postMessage({ text: m.pageText(workerData.html), title: m.pageTitle(workerData.html) }));`,
    { eval: true, workerData: { module, html } },
  );
  return new Promise((resolvePromise, reject) => {
    const timer = setTimeout(() => {
      void worker.terminate();
      reject(new Error(`no answer within ${deadlineMs} ms: the extraction is not linear in the page's length`));
    }, deadlineMs);
    worker.once("message", (answer) => {
      clearTimeout(timer);
      void worker.terminate();
      resolvePromise(answer);
    });
    worker.once("error", (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}

describe("page text: the page's charset", () => {
  const latin1 = (text: string) => new Uint8Array(Buffer.from(text, "latin1"));

  it("decodes with the charset of the Content-Type, else of a <meta> in the page's first bytes, else UTF-8", () => {
    expect(decodePage(latin1("Caf\xe9"), "text/html; charset=windows-1252")).toBe("Café");
    expect(decodePage(latin1("Caf\xe9"), 'text/html; Charset="ISO-8859-1"')).toBe("Café");
    expect(decodePage(latin1('<meta charset="windows-1252"><p>Caf\xe9</p>'), "text/html")).toBe('<meta charset="windows-1252"><p>Café</p>');
    expect(decodePage(latin1('<meta http-equiv="Content-Type" content="text/html; charset=iso-8859-1">\xe9'), null)).toContain("é");
    expect(decodePage(new TextEncoder().encode("Café 😀"), null)).toBe("Café 😀");
  });

  it("the header wins over the page; a charset TextDecoder does not know is read as UTF-8", () => {
    expect(decodePage(new TextEncoder().encode('<meta charset="windows-1252">é'), "text/html; charset=utf-8")).toBe(
      '<meta charset="windows-1252">é',
    );
    expect(decodePage(new TextEncoder().encode("é"), "text/html; charset=no-such-charset")).toBe("é");
  });
});

describe("page text: security (hostile pages)", () => {
  // The old regular expressions were quadratic in the page's length on each of these (100 KB of
  // "<" took 7 s, 300 KB 36 s: at the outbound guard's 5 MB, hours), on the host's one JavaScript
  // thread. One pass takes well under a second for 5 MB; the deadline only tells "returns" from
  // "does not", it is not a speed target.
  const PAGE_BYTES = 5_000_000;
  const DEADLINE_MS = 20_000;
  it.each([
    ["unclosed <", "<"],
    ["unclosed <a", "<a"],
    ["unclosed <!", "<!"],
    ["unclosed <script>", "<script>"],
    ["unclosed <style x>", "<style x>"],
    ["unclosed <title>", "<title>"],
    ["<script> with a stray </scrip", "<script></scrip"],
  ])("%s, repeated to the guard's 5 MB: returns, with the page's text", { timeout: DEADLINE_MS + 5_000 }, async (_name, unit) => {
    const html = unit.repeat(Math.ceil(PAGE_BYTES / unit.length));
    const { text, title } = await extractWithin(html, DEADLINE_MS);
    expect(text.length).toBeLessThanOrEqual(html.length);
    expect(title ?? "").not.toContain("<");
  });
});
