/**
 * The one rule for names that tenants and operators give things (organizations, API keys, prompt
 * workflows): a name is identity, shown in lists, terminals and UIs, and compared for equality.
 * (Free text, such as reasons and descriptions, follows a looser rule at the end: textSchema.)
 *
 * - Unicode NFC, at input: "café" typed with U+00E9 and with e + U+0301 (NFD, as some keyboards
 *   and macOS file names produce) look the same, so they are the same name. Lookups by name
 *   normalize too (`nameForms`). NFC, not NFKC: compatibility characters ("ﬁ", full-width
 *   letters) are what people chose to write and stay as sent.
 * - Nothing that draws nothing or moves what others draw: controls (C0, DEL, C1, line and
 *   paragraph separators), bidi controls (a U+202E in "Invoice\u202Efdp.exe" shows
 *   "Invoiceexe.pdf", Trojan Source), and the other invisible formatting characters (zero-width
 *   space, word joiner, BOM, soft hyphen, tags, Hangul fillers: Unicode's Cf and
 *   Default_Ignorable_Code_Point), with which two names that look the same are different.
 *   Writing needs a few of them, which are kept: variation selectors (they choose how the
 *   character before is drawn: ❤️, CJK glyph variants), the ZERO WIDTH JOINER inside an emoji
 *   sequence (👩‍💻), and the ZERO WIDTH NON-JOINER between two Arabic-script letters (Persian's
 *   half-space). Right-to-left text needs no control: the reader's bidi algorithm orders it.
 *
 * A name stored before this rule stays as it is (nothing rewrites tenant data): it is read and
 * listed as stored, and addressed by its id; only a new or changed name must pass.
 */
import { z } from "zod";

const HIDDEN = /[\p{Cc}\p{Cf}\p{Zl}\p{Zp}\p{Default_Ignorable_Code_Point}]/u;
const BIDI_CONTROL = /[\u061C\u200E\u200F\u202A-\u202E\u2066-\u2069]/u;
const CONTROL = /[\p{Cc}\p{Zl}\p{Zp}]/u;
/** The hidden characters writing needs, in the places it needs them (see above). */
const VARIATION_SELECTOR = String.raw`[\uFE00-\uFE0F\u{E0100}-\u{E01EF}]`;
const EMOJI_JOINER = String.raw`(?<=\p{Extended_Pictographic}|\p{Emoji_Modifier}|\uFE0F)\u200D(?=\p{Extended_Pictographic})`;
const ARABIC_NON_JOINER = String.raw`(?<=\p{scx=Arabic})\u200C(?=\p{scx=Arabic})`;
const NEEDED_HIDDEN = new RegExp([VARIATION_SELECTOR, EMOJI_JOINER, ARABIC_NON_JOINER].join("|"), "gu");
/** Something drawn: not a space, a mark, a control, a format or an invisible character. */
const VISIBLE = /[^\p{Z}\p{M}\p{C}\p{Default_Ignorable_Code_Point}]/u;

const codePoint = (char: string) => `U+${char.codePointAt(0)!.toString(16).toUpperCase().padStart(4, "0")}`;

/** What is wrong with a (normalized) name, or null: the first character it cannot hold, named by code point. */
export function nameProblem(name: string): string | null {
  const hidden = name.replace(NEEDED_HIDDEN, "").match(HIDDEN)?.[0];
  if (hidden !== undefined) {
    const kind = BIDI_CONTROL.test(hidden)
      ? "a bidirectional control character (it reorders how the name is shown)"
      : CONTROL.test(hidden)
        ? "a control character"
        : "an invisible formatting character";
    return `${codePoint(hidden)} is ${kind}: names cannot hold control, bidirectional-control or invisible characters`;
  }
  return VISIBLE.test(name) ? null : "at least one visible character";
}

/** A name of at most `max` UTF-16 units once normalized and trimmed; one issue at most, whatever is wrong. */
export const nameSchema = (max: number) =>
  z
    .string()
    .overwrite((name) => name.normalize("NFC"))
    .trim()
    .min(1)
    .max(max)
    // superRefine, not regex: Unicode properties need the u flag, which an OpenAPI pattern cannot carry.
    .superRefine((name, ctx) => {
      const problem = name.length > 0 ? nameProblem(name) : null;
      if (problem) ctx.addIssue({ code: "custom", message: problem });
    });

/**
 * The strings a lookup by `name` matches: its NFC form, which every name checked by `nameSchema`
 * is stored in, and the form sent when it differs, so that a name stored before names were
 * normalized is still found by the spelling it was stored with.
 */
export function nameForms(name: string): string[] {
  const normalized = name.normalize("NFC");
  return normalized === name ? [name] : [normalized, name];
}

/**
 * A name as the Workflow Runs API's case-insensitive `search` compares it, and the search text
 * the same way: a search matches where the fold of its text is a substring of the name's fold
 * (stored beside the name, `workflows.name_folded`). SQLite's lower() folds ASCII only and D1 has
 * no ICU, so the fold is done here and stored.
 *
 * - NFC, then lower case (Unicode's, for every script): "CAFÉ", "Café" and "cafe\u0301" fold the same.
 * - A final sigma (ς, what lower-casing gives a word-final Σ) is σ, as Unicode case folding has it:
 *   "ΟΔΟΣ" folds to "οδοσ", so a search typed with σ finds a word that ends in ς.
 * - No more: ß stays ß, not "ss" (as Postgres ILIKE; full case folding would make the fold longer
 *   than the name), accents are not removed ("e" does not find "é"), and NFC rather than NFKC:
 *   compatibility characters ("ﬁ", full-width letters) are found by what they are, as names keep
 *   them as written. lower-casing "İ" (dotted capital I) gives "i" + U+0307, and a search for
 *   "istanbul" does not find "İstanbul"; that is Unicode's default lower case.
 */
export function foldForSearch(text: string): string {
  return text.normalize("NFC").toLowerCase().replaceAll("\u03c2", "\u03c3");
}

/**
 * Free text people give (an operator's reasons, a prompt workflow's description): prose, shown to
 * the tenant and printed in terminals, never compared as identity, so looser than a name. It holds
 * no control character (an ESC sequence clears or retitles the terminal it is printed in), except
 * tabs and line breaks where the text is `multiline`, and no bidi embedding, override or isolate
 * (U+202A-U+202E, U+2066-U+2069: they reverse what follows, so a reason could show the tenant words
 * the operator did not write). The bidi marks (LRM, RLM, ALM) stay: they only place punctuation
 * beside right-to-left words, as mixed-direction prose needs. Invisible characters stay too (prose
 * in many scripts needs ZWJ and ZWNJ).
 */
const TEXT_CONTROL = /[\p{Cc}\p{Zl}\p{Zp}\u202A-\u202E\u2066-\u2069]/u;
const LINE_BREAKS_AND_TABS = /[\t\n\r]/g;

/** What is wrong with free text, or null: the first character it cannot hold, named by code point. */
export function textProblem(text: string, multiline = false): string | null {
  const control = (multiline ? text.replace(LINE_BREAKS_AND_TABS, "") : text).match(TEXT_CONTROL)?.[0];
  if (control === undefined) return null;
  const kind = BIDI_CONTROL.test(control) ? "a bidirectional control character (it reorders how the text is shown)" : "a control character";
  return `${codePoint(control)} is ${kind}: this text cannot hold control or bidirectional-control characters${multiline ? " (tabs and line breaks are fine)" : ""}`;
}

/**
 * Free text of at most `max` UTF-16 units (textProblem). `required`: trimmed, and with something
 * visible in it (a reason); otherwise kept as sent and possibly empty (a description).
 */
export const textSchema = (max: number, { multiline = false, required = false } = {}) => {
  const text = required ? z.string().trim().min(1).max(max) : z.string().max(max);
  return text.superRefine((value, ctx) => {
    const problem =
      textProblem(value, multiline) ?? (required && value.length > 0 && !VISIBLE.test(value) ? "at least one visible character" : null);
    if (problem) ctx.addIssue({ code: "custom", message: problem });
  });
};
