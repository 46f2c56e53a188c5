/**
 * The length of a rate-limit window: a key's `rate_limit_per_minute` (or RATE_LIMIT_PER_MINUTE)
 * requests are counted in fixed windows of this many seconds, aligned to the clock. Its own module,
 * free of Worker types, so that tests running in Node can read it too.
 */
export const RATE_LIMIT_WINDOW_SECONDS = 60;
