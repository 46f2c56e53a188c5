import { createApp } from "./app.ts";

export { RunStream } from "../durable-objects/run-stream.ts";

export default createApp() satisfies ExportedHandler<Env>;
