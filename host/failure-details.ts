/**
 * Output's `errorDetails` for a run that did not complete, from the error the Temporal client
 * gives for it (a WorkflowFailedError whose `cause` chain holds Temporal's wrappers and, deepest,
 * the failure the workflow's code threw). Built the way Output's API server builds it, so its
 * clients read the same fields: see src/shared/error-details.ts for what each one means.
 */
import { MAX_ERROR_CAUSE_DEPTH, cutErrorDetails, type ErrorCause, type ErrorDetails } from "../src/shared/error-details.ts";

/**
 * The longest message (or name) the details keep: the author's message is in them up to three
 * times (`message`, and the chain's first and last links), and the run's `error` keeps it whole;
 * this keeps a run's outcome event well inside a Durable Object row (2 MB) whatever it threw.
 */
export const MAX_DETAILS_TEXT_CHARS = 4 * 1024;

/** Links followed along `cause` to find the author's failure. */
const MAX_CHAIN_LINKS = 20;

/** Temporal's own failure kinds: a link with one of these types names a layer, not the author's error. */
const TEMPORAL_WRAPPERS: ReadonlySet<string> = new Set([
  "ActivityFailure",
  "ChildWorkflowFailure",
  "TimeoutFailure",
  "CancelledFailure",
  "TerminatedFailure",
  "ServerFailure",
  "ApplicationFailure",
]);

interface Link {
  message?: unknown;
  name?: unknown;
  type?: unknown;
  nonRetryable?: unknown;
  activityType?: unknown;
  cause?: unknown;
}

const isLink = (value: unknown): value is Link => typeof value === "object" && value !== null;

function chainOf(err: unknown): Link[] {
  const links: Link[] = [];
  for (let link = err; isLink(link) && links.length < MAX_CHAIN_LINKS; link = link.cause) links.push(link);
  return links;
}

function nameOf(link: Link): string {
  if (typeof link.type === "string") return link.type;
  const ctor = (link as { constructor?: { name?: unknown } }).constructor?.name;
  if (typeof ctor === "string" && ctor !== "Object") return ctor;
  return typeof link.name === "string" ? link.name : "Error";
}

const messageOf = (link: Link): string | null => (typeof link.message === "string" ? link.message : null);

function causeOf(link: Link, depth = 0): ErrorCause {
  if (depth > MAX_ERROR_CAUSE_DEPTH) return { name: "Error", message: "Cause chain too deep" };
  return {
    name: nameOf(link),
    message: messageOf(link),
    ...(isLink(link.cause) ? { cause: causeOf(link.cause, depth + 1) } : {}),
  };
}

export function failureDetails(err: unknown): ErrorDetails {
  const chain = chainOf(err);
  const outer = chain[0] ?? {};
  // Failures Temporal typed or flagged, deepest first: the author's is the deepest not a wrapper.
  const typed = chain.filter((l) => typeof l.type === "string" || typeof l.nonRetryable === "boolean").reverse();
  const authors = typed.find((l) => typeof l.type === "string" && !TEMPORAL_WRAPPERS.has(l.type)) ?? typed[0];
  const flagged = chain.find((l) => typeof l.nonRetryable === "boolean");
  const activity = chain.find((l) => typeof l.activityType === "string");
  const deepestMessage =
    [...chain]
      .reverse()
      .map(messageOf)
      .find((m) => m !== null) ?? null;
  return cutErrorDetails(
    {
      message: (authors && messageOf(authors)) ?? deepestMessage,
      name: authors && typeof authors.type === "string" ? authors.type : nameOf(outer),
      retryable: flagged ? !flagged.nonRetryable : null,
      activityId: activity ? (activity.activityType as string) : null,
      cause: chain.length > 0 ? causeOf(outer) : null,
    },
    MAX_DETAILS_TEXT_CHARS,
  );
}
