/**
 * Whole numbers in query strings. `z.coerce.number()` alone takes whatever `Number()` takes:
 * "0x10" is 16, "1e2" is 100, " 5" is 5 and "" is 0. A client that sent one of those made a
 * mistake, so such a value is refused with the parameter's 400 instead of being read as a guess.
 */
import { z } from "zod";

const DECIMAL = /^\d{1,15}$/;

/**
 * A string of decimal digits as its number, any other string as NaN (which a number schema refuses
 * with its own issue); values that are not strings pass as they are, for the schema to judge.
 */
export const decimalStringToNumber = (value: unknown): unknown =>
  typeof value === "string" ? (DECIMAL.test(value) ? Number(value) : Number.NaN) : value;

/**
 * A query parameter from `min` to `max`, written as decimal digits (a default and a description go
 * on after). Its issue says which was wrong: not digits, or digits out of the range.
 */
export const queryInt = (min: number, max: number) => {
  const outOfRange = `expected a whole number from ${min} to ${max}`;
  return z.preprocess(
    decimalStringToNumber,
    z.number({ error: "expected a whole number in decimal digits" }).int().min(min, { error: outOfRange }).max(max, { error: outOfRange }),
  );
};
