/** Admin API commands for organizations, API keys and credits (/admin/v1/organizations/...). */
import { commaList, flag, headerValue, integer, pageQuery, required, str } from "./args.ts";
import { answer, type Command } from "./command.ts";
import { OutcomeUnknown } from "./errors.ts";
import { err, out, printFields, printTable } from "./output.ts";

interface Credits {
  metered: boolean;
  balance: number | null;
  reserved: number;
  available: number | null;
}
interface Organization {
  id: string;
  name: string;
  credits: Credits;
  status: "active" | "suspended";
  suspendedAt: string | null;
  suspensionReason: string | null;
  createdAt: string;
  /** Suspend and resume: how long edge isolates may take to see the change (their cache of the organization's status). */
  effectiveWithinMs?: number;
}
interface ApiKey {
  id: string;
  organizationId: string;
  name: string;
  prefix: string;
  rateLimitPerMinute: number | null;
  scopes: string[];
  createdAt: string;
  revokedAt: string | null;
  key?: string;
  revocationEffectiveWithinMs?: number;
}
interface LedgerEntry {
  id: string;
  kind: string;
  amount: number;
  balanceAfter: number;
  runId: string | null;
  note: string;
  createdAt: string;
}

const seg = encodeURIComponent;
const creditsText = (c: Credits) => (c.metered ? `${c.available} available (balance ${c.balance}, reserved ${c.reserved})` : "unmetered");

const statusText = (org: Organization) =>
  org.status === "suspended" ? `suspended since ${org.suspendedAt} (${org.suspensionReason})` : org.status;

function showOrganization(org: Organization) {
  printFields([
    ["id", org.id],
    ["name", org.name],
    ["status", statusText(org)],
    ["credits", creditsText(org.credits)],
    ["created", org.createdAt],
  ]);
}

/** `orgs suspend` and `orgs resume`: the organization after the change, and how soon the edge applies it. */
function showStatusChange(org: Organization) {
  const within = Math.round((org.effectiveWithinMs ?? 0) / 1000);
  console.log(`${out.green(org.status === "suspended" ? "suspended" : "resumed")} organization ${out.bold(org.id)}`);
  showOrganization(org);
  if (within > 0) console.log(out.dim(`edge isolates cache an organization's status: the change reaches them all within ${within} s`));
}

/** `?limit=&before=` from --limit and --before (the previous page's next), or "". */
export const accountCommands: Command[] = [
  {
    words: ["orgs", "create"],
    operands: [],
    options: ["name", "id"],
    synopsis: "--name <name> [--id org_x]",
    summary: "create an organization (id generated unless given)",
    run: (ctx) =>
      answer(
        ctx,
        ctx.admin().request<Organization>("POST", "/admin/v1/organizations", {
          name: required(ctx.args, "name", ctx.usage),
          id: str(ctx.args, "id"),
        }),
        (org) => {
          console.log(`${out.green("created")} organization ${out.bold(org.id)}`);
          showOrganization(org);
        },
      ),
  },
  {
    words: ["orgs", "list"],
    operands: [],
    options: ["limit", "before"],
    synopsis: "[--limit <n>] [--before <next>]",
    summary: "list organizations, newest first (--before the previous page's next for older ones)",
    run: (ctx) => {
      const query = pageQuery(ctx.args);
      return answer(
        ctx,
        ctx.admin().request<{ organizations: Organization[]; next: string | null }>("GET", `/admin/v1/organizations${query}`),
        ({ organizations, next }) => {
          printTable(
            ["ID", "NAME", "STATUS", "CREDITS", "CREATED"],
            organizations.map((o) => [o.id, o.name, o.status, creditsText(o.credits), o.createdAt]),
            "no organizations",
          );
          if (next) console.log(out.dim(`older organizations: --before ${next}`));
        },
      );
    },
  },
  {
    words: ["orgs", "show"],
    operands: ["<orgId>"],
    options: [],
    summary: "an organization with its credits and status",
    run: (ctx) =>
      answer(ctx, ctx.admin().request<Organization>("GET", `/admin/v1/organizations/${seg(ctx.operands[0]!)}`), showOrganization),
  },
  {
    words: ["orgs", "suspend"],
    operands: ["<orgId>"],
    options: ["reason"],
    synopsis: "--reason <why>",
    summary:
      "suspend an organization: every request of its keys, tokens and JWTs is refused (403) within 30 s; runs already going go on; again: nothing changes",
    run: (ctx) =>
      answer(
        ctx,
        ctx.admin().request<Organization>("POST", `/admin/v1/organizations/${seg(ctx.operands[0]!)}/suspend`, {
          reason: required(ctx.args, "reason", ctx.usage),
        }),
        showStatusChange,
      ),
  },
  {
    words: ["orgs", "resume"],
    operands: ["<orgId>"],
    options: [],
    summary: "resume a suspended organization: its keys, tokens and JWTs work again within 30 s",
    run: (ctx) =>
      answer(ctx, ctx.admin().request<Organization>("POST", `/admin/v1/organizations/${seg(ctx.operands[0]!)}/resume`), showStatusChange),
  },
  {
    words: ["keys", "create"],
    operands: ["<orgId>"],
    options: ["name", "rate-limit", "scopes"],
    synopsis: "--name <name> [--rate-limit <perMinute>] [--scopes runs:read,runs:start,runs:control]",
    summary: "create an API key (every scope unless --scopes); the key is printed once",
    run: (ctx) => {
      const scopes = commaList(ctx.args, "scopes");
      const body = {
        name: required(ctx.args, "name", ctx.usage),
        rateLimitPerMinute: integer("--rate-limit", str(ctx.args, "rate-limit")),
        ...(scopes ? { scopes } : {}),
      };
      return answer(ctx, ctx.admin().request<ApiKey>("POST", `/admin/v1/organizations/${seg(ctx.operands[0]!)}/api-keys`, body), (key) => {
        console.log(
          `${out.green("created")} API key ${out.bold(key.id)} "${key.name}" for ${key.organizationId} (rate limit: ${key.rateLimitPerMinute ?? "default"}/min; scopes: ${key.scopes.join(",")})`,
        );
        console.log("");
        console.log(`  ${out.bold(key.key ?? "")}`);
        console.log("");
        console.error(err.yellow("Store this key now: it will not be shown again (only its hash is kept)."));
      });
    },
  },
  {
    words: ["keys", "list"],
    operands: ["<orgId>"],
    options: ["limit", "before"],
    synopsis: "[--limit <n>] [--before <next>]",
    summary: "an organization's API keys (never their secrets), newest first (--before the previous page's next for older ones)",
    run: (ctx) =>
      answer(
        ctx,
        ctx
          .admin()
          .request<{ apiKeys: ApiKey[]; next: string | null }>(
            "GET",
            `/admin/v1/organizations/${seg(ctx.operands[0]!)}/api-keys${pageQuery(ctx.args)}`,
          ),
        ({ apiKeys, next }) => {
          printTable(
            ["ID", "NAME", "PREFIX", "RATE/MIN", "SCOPES", "CREATED", "REVOKED"],
            apiKeys.map((k) => [
              k.id,
              k.name,
              `${k.prefix}…`,
              k.rateLimitPerMinute ?? "default",
              k.scopes.join(","),
              k.createdAt,
              k.revokedAt,
            ]),
            "no API keys",
          );
          if (next) console.log(out.dim(`older API keys: --before ${next}`));
        },
      ),
  },
  {
    words: ["keys", "revoke"],
    operands: ["<orgId>", "<keyId>"],
    options: [],
    summary: "revoke an API key",
    run: (ctx) =>
      answer(
        ctx,
        ctx.admin().request<ApiKey>("DELETE", `/admin/v1/organizations/${seg(ctx.operands[0]!)}/api-keys/${seg(ctx.operands[1]!)}`),
        (key) => {
          const within = Math.round((key.revocationEffectiveWithinMs ?? 0) / 1000);
          console.log(`${out.green("revoked")} API key ${out.bold(key.id)} "${key.name}" at ${key.revokedAt}`);
          if (within > 0) console.log(out.dim(`edge isolates cache verified keys: it may still be accepted for up to ${within} s`));
        },
      ),
  },
  {
    words: ["credits", "grant"],
    operands: ["<orgId>", "<amount>"],
    options: ["note", "allow-debt", "idempotency-key"],
    synopsis: "[--note <text>] [--allow-debt] [--idempotency-key <key>]",
    summary:
      "add credits (a negative amount removes them, at most what is available unless --allow-debt); the first grant turns metering on; with --idempotency-key, running it again with the same key applies the grant once",
    run: (ctx) => {
      const body = {
        amount: integer("<amount>", ctx.operands[1]),
        note: str(ctx.args, "note"),
        ...(flag(ctx.args, "allow-debt") ? { allowDebt: true } : {}),
      };
      const given = str(ctx.args, "idempotency-key");
      const key = given === undefined ? undefined : headerValue("--idempotency-key", given);
      const orgId = ctx.operands[0]!;
      const call = ctx
        .admin()
        .exchange<{ entry: LedgerEntry; credits: Credits }>(
          "POST",
          `/admin/v1/organizations/${seg(orgId)}/credits`,
          body,
          key ? { "idempotency-key": key } : {},
        )
        .then((res): { entry: LedgerEntry; credits: Credits; replayed?: true } => {
          // A retry of a grant this key applied before: the API answers that grant again, and changes nothing.
          // Its body is the first answer's, so the header is all that tells it apart: `replayed: true`
          // says so in --json too (a new grant's JSON stays the API's body, unchanged).
          const replayed = res.headers.get("idempotent-replayed") === "true";
          return replayed ? { ...res.body, replayed: true as const } : res.body;
        })
        .catch((error: unknown) => {
          if (error instanceof OutcomeUnknown)
            error.hints.push(
              key
                ? "run it again with the same --idempotency-key: the grant applies once"
                : `see \`credits show ${orgId}\` before sending it again (a grant sent with --idempotency-key can be sent again safely)`,
            );
          throw error;
        });
      return answer(ctx, call, ({ entry, credits, replayed }) => {
        const what = `${Math.abs(entry.amount)} credits${entry.note ? ` (${entry.note})` : ""}`;
        if (replayed)
          console.log(
            `${out.yellow(entry.amount < 0 ? "already removed" : "already granted")} ${what} with this idempotency key at ${entry.createdAt}; nothing changed`,
          );
        else console.log(`${out.green(entry.amount < 0 ? "removed" : "granted")} ${what}`);
        printFields([
          ["balance", credits.balance],
          ["reserved", credits.reserved],
          ["available", credits.available],
        ]);
      });
    },
  },
  {
    words: ["credits", "show"],
    operands: ["<orgId>"],
    options: ["limit", "before"],
    synopsis: "[--limit <n>] [--before <next>]",
    summary: "balance, reserved, available and the ledger (newest first; --before the previous page's next for older entries)",
    run: (ctx) => {
      const query = pageQuery(ctx.args);
      return answer(
        ctx,
        ctx
          .admin()
          .request<Credits & { organizationId: string; ledger: LedgerEntry[]; next: string | null }>(
            "GET",
            `/admin/v1/organizations/${seg(ctx.operands[0]!)}/credits${query}`,
          ),
        (c) => {
          printFields([
            ["organization", c.organizationId],
            ["metered", c.metered ? "yes" : "no (no credits granted yet: runs are not charged)"],
            ["balance", c.balance],
            ["reserved", c.reserved],
            ["available", c.available],
          ]);
          console.log("");
          printTable(
            ["WHEN", "KIND", "AMOUNT", "BALANCE AFTER", "RUN", "NOTE"],
            c.ledger.map((e) => [e.createdAt, e.kind, e.amount > 0 ? `+${e.amount}` : e.amount, e.balanceAfter, e.runId, e.note]),
            "no ledger entries",
          );
          if (c.next) console.log(out.dim(`older entries: --before ${c.next}`));
        },
      );
    },
  },
];
