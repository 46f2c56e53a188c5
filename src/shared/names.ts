/**
 * The one rule for names that tenants and operators give things (organizations, API keys, prompt
 * workflows): a name is identity, shown in lists, terminals and UIs, and compared for equality.
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
