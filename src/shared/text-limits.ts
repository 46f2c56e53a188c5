/** Sizing and cutting text to a limit, the same way wherever a limit applies. */

/** `end`, or one less when that would split a surrogate pair: a cut at it keeps whole characters. */
export function wholeCharsEnd(text: string, end: number): number {
  return end > 0 && end < text.length && /[\uD800-\uDBFF]/.test(text[end - 1]!) ? end - 1 : end;
}

/** At most `max` characters of `text`, saying how many more there were; never between the two halves of a surrogate pair. */
export function cutText(text: string, max: number): string {
  if (text.length <= max) return text;
  const end = wholeCharsEnd(text, max);
  return `${text.slice(0, end)}… (${text.length - end} more characters)`;
}

/** Whether `text` takes at most `maxBytes` in UTF-8 (counted only when it might not: at most 3 bytes per UTF-16 unit). */
export function fitsUtf8Bytes(text: string, maxBytes: number): boolean {
  return text.length * 3 <= maxBytes || new TextEncoder().encode(text).byteLength <= maxBytes;
}

const NON_ASCII = /[\u0080-\uffff]/;

/** The UTF-8 length of `text` (its length when it is ASCII, with no copy made). */
export function utf8Length(text: string): number {
  return NON_ASCII.test(text) ? new TextEncoder().encode(text).byteLength : text.length;
}
