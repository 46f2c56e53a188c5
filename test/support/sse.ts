/** SSE helpers for tests: the shared reader, and a summary of a Workflow API history stream. */
import { readSse } from "../../src/shared/sse-reader.ts";

export { readSse, type SseMessage } from "../../src/shared/sse-reader.ts";

export interface HistoryBatch {
  id: string | undefined;
  eventIds: number[];
}

/** Reads a Workflow API history stream to its end (or until `stopAfterEventId`), summarised. */
export async function collectHistoryStream(body: ReadableStream<Uint8Array>, stopAfterEventId?: number) {
  const seen = {
    workflow: [] as unknown[],
    batches: [] as HistoryBatch[],
    done: [] as unknown[],
    serverErrors: [] as unknown[],
    eventIds: [] as number[],
  };
  for await (const message of readSse(body)) {
    const data = JSON.parse(message.data);
    if (message.event === "workflow") seen.workflow.push(data);
    else if (message.event === "done") seen.done.push(data);
    else if (message.event === "server_error") seen.serverErrors.push(data);
    else if (message.event === "history") {
      const ids = (data as Array<{ eventId: string }>).map((e) => Number(e.eventId));
      seen.batches.push({ id: message.id, eventIds: ids });
      seen.eventIds.push(...ids);
      if (stopAfterEventId !== undefined && ids.includes(stopAfterEventId)) break;
    }
  }
  return seen;
}
