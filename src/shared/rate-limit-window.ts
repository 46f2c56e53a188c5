/**
 * The length of the rate limit's window: a key's `rate_limit_per_minute` (or RATE_LIMIT_PER_MINUTE)
 * requests are admitted in any span of this many seconds, the window sliding with each request
 * (durable-objects/rate-limiter.ts). The middleware passes it to the RateLimiter with each request;
 * tests that call the RateLimiter directly read it here.
 */
export const RATE_LIMIT_WINDOW_SECONDS = 60;
