import type { App } from "../../app-env.ts";
import { creditSummary, grantCredits, MAX_CREDIT_BALANCE } from "../../db/credits.ts";
import { ApiError } from "../../errors.ts";
import { IDEMPOTENCY_KEY_HEADER, IDEMPOTENT_REPLAYED_HEADER, parseIdempotencyKey } from "../../middleware/idempotency/index.ts";
import { readJson, zodIssues } from "../../middleware/json-body/index.ts";
import { beforeCursor, organizationOrThrow } from "./organizations.ts";
import { grantCreditsBody, ledgerQuery } from "./schemas.ts";
import { singleValuedQuery } from "../../middleware/query/index.ts";

export function registerCredits(app: App) {
  /**
   * Adds credits (or removes them, with a negative amount); the first grant turns metering on.
   * Removing more than is available is 409 insufficient_balance, unless `allowDebt: true`; so is
   * any removal from an organization that is not metered (allowDebt or not: it has no balance).
   * With an Idempotency-Key a grant applies once: a retry answers 200 with the same entry (and
   * `Idempotent-Replayed: true`), the key with another amount or note is 422.
   */
  app.post("/admin/v1/organizations/:orgId/credits", async (c) => {
    const key = parseIdempotencyKey(c.req.header(IDEMPOTENCY_KEY_HEADER));
    const org = await organizationOrThrow(c.env, c.req.param("orgId"));
    const body = await readJson(c, grantCreditsBody);
    const outcome = await grantCredits(c.env.DB, org.id, body.amount, body.note, body.allowDebt, key);
    if (!outcome.ok && "reused" in outcome) {
      throw new ApiError(
        "idempotency_key_reused",
        "this Idempotency-Key was used for a grant of another amount or note; use a new key for a new grant",
      );
    }
    if (!outcome.ok && outcome.pastLimit) {
      throw new ApiError(
        "credit_balance_limit",
        `the balance would be ${(outcome.balance ?? 0) + body.amount} credits; a balance stays within ±${MAX_CREDIT_BALANCE} (balance ${outcome.balance ?? 0})`,
        [{ path: "amount", message: `the balance must stay within ±${MAX_CREDIT_BALANCE}` }],
      );
    }
    if (!outcome.ok && outcome.balance === null) {
      throw new ApiError(
        "insufficient_balance",
        `organization ${org.id} is not metered: it has no balance to remove credits from (grant a positive amount to turn metering on)`,
        [{ path: "amount", message: "an unmetered organization takes only a positive amount" }],
      );
    }
    if (!outcome.ok) {
      throw new ApiError(
        "insufficient_balance",
        `cannot remove ${-body.amount} credits: ${outcome.available} available (balance ${outcome.balance ?? 0}, reserved ${outcome.reserved}); send "allowDebt": true to let the balance go below zero`,
        [{ path: "amount", message: `at most ${Math.max(0, outcome.available)} can be removed` }],
      );
    }
    const { entry } = outcome;
    // The organization's credits as its view shows them: not the ledger, nor a cursor into it.
    const { ledger: _ledger, next: _next, ...credits } = (await creditSummary(c.env.DB, org.id, 1))!;
    if (outcome.replayed) {
      c.header(IDEMPOTENT_REPLAYED_HEADER, "true");
      return c.json({ entry, credits }, 200);
    }
    return c.json({ entry, credits }, 201);
  });

  /** Balance, holds of runs in flight, and the ledger, newest first, a page at a time (`before` = the previous page's `next`). */
  app.get("/admin/v1/organizations/:orgId/credits", async (c) => {
    const org = await organizationOrThrow(c.env, c.req.param("orgId"));
    const query = ledgerQuery.safeParse(singleValuedQuery(c));
    if (!query.success)
      throw new ApiError(
        "invalid_request",
        "limit must be an integer from 1 to 500, before the previous answer's next; no other parameters",
        zodIssues(query.error),
      );
    return c.json(await creditSummary(c.env.DB, org.id, query.data.limit, beforeCursor(query.data.before)));
  });
}
