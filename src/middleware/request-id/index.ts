import { createMiddleware } from "hono/factory";
import type { AppEnv } from "../../app-env.ts";

const REQUEST_ID_HEADER = "x-request-id";
const ACCEPTABLE_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/** Gives every request an id (the caller's, when it is sane) and echoes it in the response. */
export const requestId = () =>
  createMiddleware<AppEnv>(async (c, next) => {
    const given = c.req.header(REQUEST_ID_HEADER);
    const id = given && ACCEPTABLE_ID.test(given) ? given : crypto.randomUUID();
    c.set("requestId", id);
    await next();
    c.res.headers.set(REQUEST_ID_HEADER, id);
  });
