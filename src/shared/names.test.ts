import { describe, expect, it } from "vitest";
import { foldForSearch, nameForms, nameSchema } from "./names.ts";

const name = nameSchema(100);
const issues = (value: unknown) => {
  const parsed = name.safeParse(value);
  return parsed.success ? [] : parsed.error.issues.map((i) => i.message);
};

describe("the name rule", () => {
  it("normalizes to NFC, then trims: NFD and NFC spellings become the same string", () => {
    expect(name.parse("Cafe\u0301")).toBe("Caf\u00e9");
    expect(name.parse("  Caf\u00e9 ")).toBe("Caf\u00e9");
    // A compatibility character is left alone (NFC, not NFKC): "ﬁ" and full-width letters stay.
    expect(name.parse("\ufb01le \uff21")).toBe("\ufb01le \uff21");
  });

  it("counts the limit on the normalized name", () => {
    expect(name.parse(`${"e\u0301".repeat(100)}`)).toBe("\u00e9".repeat(100));
    expect(issues("x".repeat(101))).toHaveLength(1);
  });

  it("refuses bidi controls, invisible formatting characters and controls with one issue naming the code point", () => {
    for (const [value, codePoint] of [
      ["a\u202Eb", "U+202E"],
      ["a\u202Ab", "U+202A"],
      ["a\u2069b", "U+2069"],
      ["a\u200Eb", "U+200E"],
      ["a\u061Cb", "U+061C"],
      ["a\u200Bb", "U+200B"],
      ["a\u200Cb", "U+200C"], // ZWNJ between Latin letters
      ["a\u200Db", "U+200D"], // ZWJ between Latin letters
      ["a\uFEFFb", "U+FEFF"],
      ["a\u034Fb", "U+034F"], // COMBINING GRAPHEME JOINER
      ["a\u3164b", "U+3164"], // HANGUL FILLER, drawn as nothing
      ["a\u0000b", "U+0000"],
      ["a\u001Bb", "U+001B"],
      ["a\u007Fb", "U+007F"],
      ["a\u009Bb", "U+009B"],
      ["a\u2029b", "U+2029"],
    ] as const) {
      expect(issues(value), JSON.stringify(value)).toEqual([expect.stringContaining(codePoint)]);
    }
  });

  it("needs something visible, with one issue however the name fails", () => {
    expect(issues("\uFE0F")).toEqual(["at least one visible character"]);
    expect(issues("\u200B")).toHaveLength(1);
    expect(issues("")).toHaveLength(1);
    expect(issues("   ")).toHaveLength(1);
  });

  it("keeps the joiners and selectors that writing needs: emoji sequences, variation selectors, Persian's ZWNJ", () => {
    for (const value of [
      "\u{1F469}\u{1F3FD}\u200D\u{1F4BB}",
      "\u{1F3F3}\uFE0F\u200D\u{1F308}",
      "\u2764\uFE0F",
      "\u845B\u{E0100}",
      "\u0645\u06CC\u200C\u062E\u0648\u0627\u0647\u0645",
    ]) {
      expect(name.parse(value)).toBe(value);
    }
  });
});

describe("name lookups", () => {
  it("look for the NFC form, and for the form sent when it differs (a name stored before names were normalized)", () => {
    expect(nameForms("Caf\u00e9")).toEqual(["Caf\u00e9"]);
    expect(nameForms("Cafe\u0301")).toEqual(["Caf\u00e9", "Cafe\u0301"]);
    expect(nameForms("hello")).toEqual(["hello"]);
  });
});

describe("the fold a search compares", () => {
  it("is NFC and Unicode lower case in every script, with a final sigma as σ; not ß to ss, not accents, not compatibility forms", () => {
    expect(foldForSearch("CAFE\u0301 \u00c4RZTE \u0394\u039f\u039a\u0399\u039c\u0389 \u041c\u041e\u0421\u041a\u0412\u0410")).toBe(
      "caf\u00e9 \u00e4rzte \u03b4\u03bf\u03ba\u03b9\u03bc\u03ae \u043c\u043e\u0441\u043a\u0432\u0430",
    );
    expect(foldForSearch("\u039f\u0394\u039f\u03a3")).toBe("\u03bf\u03b4\u03bf\u03c3");
    expect(foldForSearch("STRA\u00dfE")).toBe("stra\u00dfe");
    expect(foldForSearch("\ufb01le \uff21")).toBe("\ufb01le \uff41");
  });
});
