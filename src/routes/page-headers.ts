/**
 * Response headers of the HTML pages we serve (/docs, the run viewer): no caching, no Referer (a
 * token may be in the URL), no sniffing, and a Content-Security-Policy that starts from nothing
 * and never allows base, form or frame tricks. Each page adds the sources it needs.
 */
export function htmlPageHeaders(sources: readonly string[]): Record<string, string> {
  return {
    "content-type": "text/html; charset=utf-8",
    "cache-control": "no-store",
    "referrer-policy": "no-referrer",
    "x-content-type-options": "nosniff",
    "content-security-policy": ["default-src 'none'", ...sources, "base-uri 'none'", "form-action 'none'", "frame-ancestors 'none'"].join(
      "; ",
    ),
  };
}
