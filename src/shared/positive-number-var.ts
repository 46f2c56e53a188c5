/**
 * A positive number from a Worker var (vars are strings): the configured value, or `fallback` when
 * the var is unset, empty, zero, negative, infinite or not a number, so a bad value never becomes
 * NaN in a timer or a wait.
 */
export function positiveNumberVar(value: string | undefined, fallback: number): number {
  const configured = Number(value);
  return Number.isFinite(configured) && configured > 0 ? configured : fallback;
}
