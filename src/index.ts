import { createApp } from "./app.ts";

export { RateLimiter } from "../durable-objects/rate-limiter.ts";
export { RunStream } from "../durable-objects/run-stream.ts";

export default createApp() satisfies ExportedHandler<Env>;
