/**
 * The live run viewer, served by the Worker:
 *
 *   GET /runs/:workflowId?token=<streamToken>          an HTML page that follows the run live
 *   GET /runs/:workflowId/events?token=<streamToken>   the Server-Sent Events the page follows
 *
 * The page itself needs no auth (it is the same for every run and carries no data); its stream
 * needs the run-scoped stream token of that run (docs/streaming.md). Its script and stylesheet
 * are static assets (/viewer/run-viewer.js, /viewer/run-viewer.css; see page.ts).
 */
import type { App } from "../../app-env.ts";
import { registerViewerEvents } from "./events.ts";
import { documentViewer } from "./openapi.ts";
import { viewerPage, viewerPageHeaders } from "./page.ts";

/** Registers the viewer's routes and their OpenAPI description. */
export function registerViewer(app: App) {
  documentViewer(app);
  registerViewerEvents(app);
  app.get("/runs/:workflowId", (c) => c.body(viewerPage(), 200, viewerPageHeaders()));
}
