/** Steps of summarize_url: fetch a page (recorded HTTP) and keep its readable text. */
import { ApplicationFailure } from "@temporalio/activity";
import { fetchRecorded, redirectedUrl } from "./http.ts";
import { decodePage, pageText, pageTitle } from "./page-text.ts";
import { retryAfterMs } from "./retry-after.ts";
import { StepPublisher } from "./runtime.ts";
import { wholeCharsEnd } from "../../src/shared/text-limits.ts";

/** Longest page text handed to a model, in characters. */
const MAX_PAGE_TEXT = 20_000;
/** The 4xx answers that may get better by retrying, as a 5xx may: a request timeout and "too many requests". */
const RETRIED_CLIENT_STATUSES: ReadonlySet<number> = new Set([408, 429]);

/** A Content-Type's media type, lower case, without its parameters ("" when there is none). */
const mediaType = (contentType: string | null) => contentType?.split(";")[0]?.trim().toLowerCase() ?? "";

/**
 * Whether a media type is one whose body reads as text: `text/*`, XML and JSON types (XHTML
 * among them), or none at all (a server that does not say; the page is decoded and read). A PDF,
 * an image or an archive decoded as text is noise a model would be paid to read.
 */
function isTextMediaType(essence: string): boolean {
  if (essence === "") return true;
  const [type, subtype = ""] = essence.split("/");
  if (type === "text") return true;
  return type === "application" && /(^|\+)(xml|json)$/.test(subtype);
}

/**
 * `url` is the URL asked for (unchanged, for callers that read it); `finalUrl` the one the text
 * was read from, after redirects, so a summary says which page it summarizes.
 */
export async function fetchPageText(url: string): Promise<{ url: string; finalUrl: string; title: string | null; text: string }> {
  // Only a page of text that answered OK is read: anything else fails the step below, and its body
  // (a PDF, a 404 page) is not downloaded for nothing, nor failed as too large instead.
  const res = await fetchRecorded(
    new StepPublisher(),
    url,
    {},
    { readBody: (r) => r.ok && isTextMediaType(mediaType(r.headers.get("content-type"))) },
  );
  const redirected = redirectedUrl(url, res);
  const finalUrl = res.url || url;
  // What a message names: the page that answered, and the URL asked for when redirects led there.
  const page = redirected ? `${redirected} (redirected from ${url})` : finalUrl;
  if (!res.ok) {
    // 4xx will not get better by retrying (but 408 and 429 may); 5xx might.
    const message = `fetching ${page} answered ${res.status}`;
    if (res.status < 500 && !RETRIED_CLIENT_STATUSES.has(res.status)) throw ApplicationFailure.nonRetryable(message, "HttpClientError");
    // Retried, after the wait the site asked for if it said (a 429's or 503's Retry-After), else Temporal's backoff.
    throw ApplicationFailure.create({ message, type: "HttpUnavailable", nextRetryDelay: retryAfterMs((name) => res.headers.get(name)) });
  }
  const contentType = res.headers.get("content-type");
  const essence = mediaType(contentType);
  if (!isTextMediaType(essence)) {
    throw ApplicationFailure.nonRetryable(
      `${page} is ${essence}, not a page of text: summarize_url reads HTML and text`,
      "UnsupportedContentType",
    );
  }
  const html = decodePage(new Uint8Array(await res.arrayBuffer()), contentType);
  const text = pageText(html);
  // Never half of a surrogate pair at the cut: a model's API refuses a body with one.
  return { url, finalUrl, title: pageTitle(html), text: text.slice(0, wholeCharsEnd(text, MAX_PAGE_TEXT)) };
}

export async function checkSummaryLength(summary: string, maxWords: number): Promise<void> {
  const words = summary.split(/\s+/).filter(Boolean).length;
  if (words > maxWords) {
    throw ApplicationFailure.nonRetryable(`the summary has ${words} words, more than the ${maxWords} allowed`, "SummaryTooLong");
  }
}
