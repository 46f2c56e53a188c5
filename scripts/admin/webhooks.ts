/** Admin API commands for completion webhook endpoints (/admin/v1/organizations/:orgId/webhooks). */
import { commaList, integer, pageQuery, required, str } from "./args.ts";
import { answer, type Command } from "./command.ts";
import { CliError } from "./errors.ts";
import type { JsonClient } from "./http.ts";
import { err, out, printFields, printTable } from "./output.ts";

interface Webhook {
  id: string;
  organizationId: string;
  url: string;
  events: string[];
  createdAt: string;
  updatedAt: string;
  secret?: string;
  /** Until when a rotated secret still signs beside the current one. */
  previousSecretExpiresAt?: string | null;
  deletedAt?: string;
}
interface Delivery {
  webhookId: string;
  eventType: string;
  workflowId: string;
  attempt: number;
  status: string;
  responseStatus: number | null;
  error: string | null;
  attemptedAt: string;
  nextAttemptAt: string | null;
}

interface SealReport {
  sealed: number;
  resealed: number;
  alreadyCurrent: number;
  unreadable: Array<{ organizationId: string; webhookId: string; error: string }>;
  next: string | null;
}

const seg = encodeURIComponent;
const base = (orgId: string) => `/admin/v1/organizations/${seg(orgId)}/webhooks`;

function showSecret(webhook: Webhook, verb: string) {
  console.log(`${out.green(verb)} webhook ${out.bold(webhook.id)} → ${webhook.url}`);
  printFields([
    ["events", webhook.events.join(", ")],
    ["organization", webhook.organizationId],
  ]);
  console.log("");
  console.log(`  ${out.bold(webhook.secret ?? "")}`);
  console.log("");
  console.error(err.yellow("Store this signing secret now: it will not be shown again (rotate-secret makes a new one)."));
}

/**
 * Calls POST /admin/v1/webhooks/seal-secrets until it has seen every row (each call works up to
 * `limit` rows, the server's default 500 when not given), summing the counts.
 */
async function sealAll(admin: JsonClient, limit: number | undefined): Promise<Omit<SealReport, "next">> {
  const total: Omit<SealReport, "next"> = { sealed: 0, resealed: 0, alreadyCurrent: 0, unreadable: [] };
  let after: string | null = "";
  while (after !== null) {
    const query = new URLSearchParams();
    if (after) query.set("after", after);
    if (limit !== undefined) query.set("limit", String(limit));
    const page: SealReport = await admin.request<SealReport>("POST", `/admin/v1/webhooks/seal-secrets${query.size > 0 ? `?${query}` : ""}`);
    total.sealed += page.sealed;
    total.resealed += page.resealed;
    total.alreadyCurrent += page.alreadyCurrent;
    total.unreadable.push(...page.unreadable);
    // A server that names the page it just gave would be asked for it again, forever.
    if (page.next !== null && page.next === after) {
      throw new CliError(`the server answered the same next ("${page.next}") twice; stopped rather than ask for the same rows again`);
    }
    after = typeof page.next === "string" ? page.next : null;
  }
  return total;
}

export const webhookCommands: Command[] = [
  {
    words: ["webhooks", "create"],
    operands: ["<orgId>"],
    options: ["endpoint", "events"],
    synopsis: "--endpoint <https url> [--events run.completed,run.failed,...]",
    summary: "register a completion webhook endpoint; its signing secret is printed once",
    run: (ctx) => {
      const events = commaList(ctx.args, "events");
      const body = { url: required(ctx.args, "endpoint", ctx.usage), ...(events ? { events } : {}) };
      return answer(ctx, ctx.admin().request<Webhook>("POST", base(ctx.operands[0]!), body), (w) => showSecret(w, "created"));
    },
  },
  {
    words: ["webhooks", "list"],
    operands: ["<orgId>"],
    options: ["limit", "before"],
    synopsis: "[--limit <n>] [--before <next>]",
    summary: "an organization's webhook endpoints (never their secrets), newest first (--before the previous page's next for older ones)",
    run: (ctx) =>
      answer(
        ctx,
        ctx.admin().request<{ webhooks: Webhook[]; next: string | null }>("GET", `${base(ctx.operands[0]!)}${pageQuery(ctx.args)}`),
        ({ webhooks, next }) => {
          printTable(
            ["ID", "URL", "EVENTS", "CREATED"],
            webhooks.map((w) => [w.id, w.url, w.events.join(","), w.createdAt]),
            "no webhooks",
          );
          if (next) console.log(out.dim(`older webhooks: --before ${next}`));
        },
      ),
  },
  {
    words: ["webhooks", "delete"],
    operands: ["<orgId>", "<webhookId>"],
    options: [],
    summary: "delete an endpoint (its pending retries stop; its delivery log stays)",
    run: (ctx) =>
      answer(ctx, ctx.admin().request<Webhook>("DELETE", `${base(ctx.operands[0]!)}/${seg(ctx.operands[1]!)}`), (w) =>
        console.log(`${out.green("deleted")} webhook ${out.bold(w.id)} (${w.url})`),
      ),
  },
  {
    words: ["webhooks", "rotate-secret"],
    operands: ["<orgId>", "<webhookId>"],
    options: ["previous-valid-for"],
    synopsis: "[--previous-valid-for <seconds>]",
    summary:
      "a new signing secret, printed once; the old one keeps signing beside it for 24 h " +
      "(--previous-valid-for: seconds, 0 to 604800; 0 stops it at once)",
    run: (ctx) => {
      const seconds = integer("--previous-valid-for", str(ctx.args, "previous-valid-for"));
      return answer(
        ctx,
        ctx
          .admin()
          .request<Webhook>(
            "POST",
            `${base(ctx.operands[0]!)}/${seg(ctx.operands[1]!)}/rotate-secret`,
            seconds === undefined ? undefined : { previousSecretValidForSeconds: seconds },
          ),
        (w) => {
          showSecret(w, "rotated");
          console.error(
            w.previousSecretExpiresAt
              ? `The old secret also signs every delivery until ${w.previousSecretExpiresAt}: switch the receiver to the new one before then.`
              : "The old secret no longer signs: deliveries carry the new secret's signature only.",
          );
        },
      );
    },
  },
  {
    words: ["webhooks", "seal-secrets"],
    operands: [],
    options: ["limit"],
    synopsis: "[--limit <n>]",
    summary:
      "seal every signing secret still stored plain (or under an older key), all organizations; secrets do not change " +
      "(--limit: rows per call, 1-500, default 500; 40 fits the Workers Free plan)",
    run: (ctx) =>
      answer(ctx, sealAll(ctx.admin(), integer("--limit", str(ctx.args, "limit"))), (total) => {
        console.log(`${out.green("sealed")} webhook signing secrets in place (the secrets themselves are unchanged)`);
        printFields([
          ["sealed (were plain)", total.sealed],
          ["resealed (older key)", total.resealed],
          ["already current", total.alreadyCurrent],
          ["unreadable", total.unreadable.length],
        ]);
        if (total.unreadable.length > 0) {
          console.log("");
          printTable(
            ["ORGANIZATION", "WEBHOOK", "ERROR"],
            total.unreadable.map((u) => [u.organizationId, u.webhookId, u.error]),
          );
          console.error(err.yellow("Unreadable rows are left as they are: list their key in WEBHOOK_SECRET_KEYS, or rotate their secret."));
        }
      }),
  },
  {
    words: ["webhooks", "deliveries"],
    operands: ["<orgId>", "<webhookId>"],
    options: ["limit", "before"],
    synopsis: "[--limit <n>] [--before <next>]",
    summary:
      "delivery attempts, newest first: status, response code, time, next attempt (--before the previous page's next for older ones)",
    run: (ctx) => {
      const path = `${base(ctx.operands[0]!)}/${seg(ctx.operands[1]!)}/deliveries${pageQuery(ctx.args)}`;
      return answer(ctx, ctx.admin().request<{ deliveries: Delivery[]; next: string | null }>("GET", path), ({ deliveries, next }) => {
        printTable(
          ["ATTEMPTED", "EVENT", "WORKFLOW", "#", "STATUS", "CODE", "NEXT ATTEMPT", "ERROR"],
          deliveries.map((d) => [
            d.attemptedAt,
            d.eventType,
            d.workflowId,
            d.attempt,
            d.status,
            d.responseStatus,
            d.nextAttemptAt,
            d.error,
          ]),
          "no deliveries yet",
        );
        if (next) console.log(out.dim(`older deliveries: --before ${next}`));
      });
    },
  },
];
