/**
 * The readable text of an HTML page, for summarize_url: tags dropped, the contents of `script`,
 * `style` and `title` dropped, whitespace collapsed.
 *
 * The page comes from anywhere on the internet, so this is one pass over it with `indexOf`, not
 * regular expressions: patterns such as `/<[^>]+>/g` backtrack to the end of the page at every
 * `<` that has no `>` after it, and a 5 MB page of `<` (what the outbound guard lets through) kept
 * the host's one JavaScript thread busy for hours, with every other run on it.
 */
import { wholeCharsEnd } from "../../src/shared/text-limits.ts";

/** Elements whose contents are not page text. */
const SKIPPED_CONTENT: ReadonlySet<string> = new Set(["script", "style", "title"]);
const TAG_NAME = /^[a-zA-Z][a-zA-Z0-9-]*/;
const TAG_START = /^[a-zA-Z/!?]$/;

/** The longest title kept: a page's title ends up in the run's output, and pages are anyone's. */
export const MAX_PAGE_TITLE_CHARS = 300;

export function pageTitle(html: string): string | null {
  // Linear: `[^<]*` stops at the next "<", and each try starts at a "<title>" past the last one.
  const title = /<title>([^<]*)<\/title>/i.exec(html)?.[1]?.replace(/\s+/g, " ").trim();
  if (title === undefined) return null;
  if (title.length <= MAX_PAGE_TITLE_CHARS) return title;
  // Room for the ellipsis, never between the two halves of a surrogate pair.
  return `${title.slice(0, wholeCharsEnd(title, MAX_PAGE_TITLE_CHARS - 1))}…`;
}

export function pageText(html: string): string {
  const parts: string[] = [];
  // An element once found unclosed is unclosed from any later position: never searched again,
  // which keeps a page of a million unclosed `<script>` tags linear.
  const unclosed = new Set<string>();
  let at = 0;
  while (at < html.length) {
    const open = html.indexOf("<", at);
    if (open === -1) {
      parts.push(html.slice(at));
      break;
    }
    parts.push(html.slice(at, open));
    // As in HTML's tokenizer, a tag starts with "<" and a letter, "/", "!" or "?": "1 < 2" is text.
    if (!TAG_START.test(html.charAt(open + 1))) {
      parts.push("<");
      at = open + 1;
      continue;
    }
    const close = html.indexOf(">", open + 1);
    // No ">" after this "<" means none after any later one either: the rest is text.
    if (close === -1) {
      parts.push(html.slice(open));
      break;
    }
    parts.push(" ");
    at = close + 1;
    const name = TAG_NAME.exec(html.slice(open + 1, Math.min(close, open + 32)))?.[0].toLowerCase();
    if (name === undefined || !SKIPPED_CONTENT.has(name) || unclosed.has(name)) continue;
    const end = new RegExp(`</${name}`, "gi");
    end.lastIndex = at;
    const found = end.exec(html);
    if (!found) {
      unclosed.add(name);
      continue;
    }
    const endClose = html.indexOf(">", found.index);
    at = endClose === -1 ? html.length : endClose + 1;
  }
  return parts.join("").replace(/\s+/g, " ").trim();
}

/** Where a page may name its charset without the header saying it: a `<meta>` in its first bytes. */
const META_CHARSET_BYTES = 1024;

/**
 * A page's text in the charset its Content-Type names, else its `<meta charset>` (or
 * `http-equiv` content type), else UTF-8; a label TextDecoder does not know is read as UTF-8.
 */
export function decodePage(bytes: Uint8Array, contentType: string | null): string {
  // The patterns below only ever see the header and the page's first META_CHARSET_BYTES bytes (see the header on backtracking).
  const charsetIn = (text: string | null) => (text ? /charset\s*=\s*["']?([\w.:-]+)/i.exec(text)?.[1] : undefined);
  const head = new TextDecoder("latin1").decode(bytes.subarray(0, META_CHARSET_BYTES));
  const label = charsetIn(contentType) ?? charsetIn(/<meta[^>]+charset[^>]*>/i.exec(head)?.[0] ?? null) ?? "utf-8";
  try {
    return new TextDecoder(label).decode(bytes);
  } catch {
    return new TextDecoder("utf-8").decode(bytes);
  }
}
