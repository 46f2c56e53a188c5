/**
 * The readable text of an HTML page, for summarize_url: tags (a ">" in a quoted attribute value
 * does not end one) and comments dropped, the contents of `script`, `style` and `title` dropped,
 * character references decoded, whitespace collapsed.
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
const GT = 0x3e;
const EQUALS = 0x3d;
/** HTML's whitespace: tab, line feed, form feed, carriage return, space. */
const isHtmlSpace = (c: number) => c === 0x09 || c === 0x0a || c === 0x0c || c === 0x0d || c === 0x20;

/** The longest title kept: a page's title ends up in the run's output, and pages are anyone's. */
export const MAX_PAGE_TITLE_CHARS = 300;

/**
 * Named character references decoded: the ones pages use for text. Any other name stays as
 * written (HTML has over 2,000; a model reads the rest as they are).
 */
const NAMED_REFERENCES: Readonly<Record<string, string>> = {
  amp: "&",
  lt: "<",
  gt: ">",
  quot: '"',
  apos: "'",
  nbsp: "\u00a0",
  copy: "©",
  reg: "®",
  trade: "™",
  hellip: "…",
  mdash: "—",
  ndash: "–",
  lsquo: "‘",
  rsquo: "’",
  ldquo: "“",
  rdquo: "”",
  laquo: "«",
  raquo: "»",
  middot: "·",
  bull: "•",
  deg: "°",
  euro: "€",
  pound: "£",
  times: "×",
};
// Bounded repetitions: linear in the text's length (see the header on backtracking).
const REFERENCE = /&(?:#(\d{1,8})|#[xX]([0-9a-fA-F]{1,8})|([a-zA-Z]{2,8}));/g;

/**
 * Character references decoded, once ("&amp;lt;" is the text "&lt;"). A number that names no
 * character (0, a surrogate, past U+10FFFF) is U+FFFD, as in HTML: a lone surrogate would make a
 * model's API refuse the prompt.
 */
function decodeReferences(text: string): string {
  return text.replace(REFERENCE, (whole, decimal: string | undefined, hex: string | undefined, name: string | undefined) => {
    if (name !== undefined) return Object.hasOwn(NAMED_REFERENCES, name) ? NAMED_REFERENCES[name]! : whole;
    const n = decimal !== undefined ? Number(decimal) : Number.parseInt(hex!, 16);
    return n === 0 || n > 0x10ffff || (n >= 0xd800 && n <= 0xdfff) ? "\ufffd" : String.fromCodePoint(n);
  });
}

/**
 * Where the tag opened at `open` ends: its ">", skipping quoted attribute values (`alt="a > b"`,
 * `data-content="<b>x</b>"`), or -1 when the rest of the page is inside the tag (no ">" outside
 * quotes, or a value whose quote never closes). A quote counts only after "=", as in HTML's
 * tokenizer (`<a b"c>` ends at its ">"). `<!` and `<?` end at their first ">". Each character is
 * looked at once, and the caller goes on after the tag, so a page stays one pass.
 */
function tagEnd(html: string, open: number): number {
  const kind = html.charAt(open + 1);
  if (kind === "!" || kind === "?") return html.indexOf(">", open + 2);
  for (let i = open + 1; i < html.length; i++) {
    const c = html.charCodeAt(i);
    if (c === GT) return i;
    if (c !== EQUALS) continue;
    let value = i + 1;
    while (value < html.length && isHtmlSpace(html.charCodeAt(value))) value++;
    const quote = html.charAt(value);
    if (quote !== '"' && quote !== "'") {
      i = value - 1;
      continue;
    }
    const closed = html.indexOf(quote, value + 1);
    if (closed === -1) return -1;
    i = closed;
  }
  return -1;
}

/** One pass over a page: its text (references not yet decoded) and its first title's raw content. */
function scan(html: string): { text: string; rawTitle: string | undefined } {
  const parts: string[] = [];
  let rawTitle: string | undefined;
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
    // A comment runs to its first "-->" ("<!-->" and "<!--->" are empty ones), whatever it holds
    // (markup commented out, a ">"); one never closed runs to the end of the page, as in HTML.
    if (html.startsWith("<!--", open)) {
      parts.push(" ");
      const end = html.indexOf("-->", open + 2);
      if (end === -1) break;
      at = end + 3;
      continue;
    }
    const close = tagEnd(html, open);
    // Nothing after this "<" ends it, and nothing ends a later one either: the rest is text.
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
    // A title is text until its end tag (a "<" inside included), as in HTML; the first one is the page's.
    if (name === "title") rawTitle ??= html.slice(at, found.index);
    const endClose = html.indexOf(">", found.index);
    at = endClose === -1 ? html.length : endClose + 1;
  }
  return { text: parts.join(""), rawTitle };
}

/** The page's title (its first `<title>`, wherever it is), on one line, cut at MAX_PAGE_TITLE_CHARS; null without one. */
export function pageTitle(html: string): string | null {
  const raw = scan(html).rawTitle;
  if (raw === undefined) return null;
  const title = decodeReferences(raw).replace(/\s+/g, " ").trim();
  if (title.length <= MAX_PAGE_TITLE_CHARS) return title;
  // Room for the ellipsis, never between the two halves of a surrogate pair.
  return `${title.slice(0, wholeCharsEnd(title, MAX_PAGE_TITLE_CHARS - 1))}…`;
}

export function pageText(html: string): string {
  return decodeReferences(scan(html).text).replace(/\s+/g, " ").trim();
}

/** Where a page may name its charset without the header saying it: a `<meta>` in its first bytes. */
const META_CHARSET_BYTES = 1024;

/** Byte order marks: one names the page's encoding whatever its header or `<meta>` say (the Encoding Standard's decode). */
const BYTE_ORDER_MARKS: ReadonlyArray<[readonly number[], string]> = [
  [[0xef, 0xbb, 0xbf], "utf-8"],
  [[0xfe, 0xff], "utf-16be"],
  [[0xff, 0xfe], "utf-16le"],
];

/** The encoding a charset label names, or undefined for a label TextDecoder does not know. */
function encodingOf(label: string): string | undefined {
  try {
    return new TextDecoder(label).encoding;
  } catch {
    return undefined;
  }
}

/**
 * A page's text: in the encoding its byte order mark names, else the charset of its Content-Type,
 * else of its `<meta charset>` (or `http-equiv` content type), else UTF-8; a label TextDecoder
 * does not know is read as UTF-8.
 */
export function decodePage(bytes: Uint8Array, contentType: string | null): string {
  const marked = BYTE_ORDER_MARKS.find(([mark]) => mark.every((byte, i) => bytes[i] === byte))?.[1];
  // TextDecoder drops the mark itself.
  if (marked) return new TextDecoder(marked).decode(bytes);
  // The patterns below only ever see the header and the page's first META_CHARSET_BYTES bytes (see the header on backtracking).
  const charsetIn = (text: string | null) => (text ? /charset\s*=\s*["']?([\w.:-]+)/i.exec(text)?.[1] : undefined);
  const header = charsetIn(contentType);
  if (header !== undefined) return new TextDecoder(encodingOf(header) ?? "utf-8").decode(bytes);
  const head = new TextDecoder("latin1").decode(bytes.subarray(0, META_CHARSET_BYTES));
  const meta = charsetIn(/<meta[^>]+charset[^>]*>/i.exec(head)?.[0] ?? null);
  let encoding = (meta && encodingOf(meta)) ?? "utf-8";
  // HTML's prescan: a <meta> that could be read as ASCII is not in UTF-16, and its x-user-defined means windows-1252.
  if (encoding.startsWith("utf-16")) encoding = "utf-8";
  else if (encoding === "x-user-defined") encoding = "windows-1252";
  return new TextDecoder(encoding).decode(bytes);
}
