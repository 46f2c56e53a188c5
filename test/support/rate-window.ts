/**
 * Rate limits count in fixed windows aligned to the clock (RATE_LIMIT_WINDOW_SECONDS). A test that
 * expects a run of requests to be counted in one window calls this first: when less than `marginMs`
 * is left of the current window it waits for the next, or the window could turn over between its
 * requests (more than the limit get through, a remaining count goes back up): a failure in about
 * one run in a hundred, never the code's.
 */
import { RATE_LIMIT_WINDOW_SECONDS } from "../../src/shared/rate-limit-window.ts";

export async function clearOfRateWindowEnd(marginMs = 5_000): Promise<void> {
  const windowMs = RATE_LIMIT_WINDOW_SECONDS * 1000;
  const left = windowMs - (Date.now() % windowMs);
  if (left < marginMs) await new Promise((resolve) => setTimeout(resolve, left + 100));
}
