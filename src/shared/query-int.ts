/**
 * Whole numbers in query strings. `z.coerce.number()` alone takes whatever `Number()` takes:
 * "0x10" is 16, "1e2" is 100, " 5" is 5 and "" is 0. A client that sent one of those made a
 * mistake, so such a value is refused with the parameter's 400 instead of being read as a guess.
 */
import { z } from "zod";

const DECIMAL = /^\d{1,15}$/;

/** Not a number at all, so the schema below refuses it with its own "expected number" issue. */
const NOT_DECIMAL = Number.NaN;

/** A query parameter from `min` to `max`, written as decimal digits (a default and a description go on after). */
export const queryInt = (min: number, max: number) =>
  z.preprocess(
    (value) => (typeof value === "string" && !DECIMAL.test(value) ? NOT_DECIMAL : value),
    z.coerce.number({ error: "expected a whole number in decimal digits" }).int().min(min).max(max),
  );
