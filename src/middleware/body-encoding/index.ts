/**
 * Request bodies are read as sent: a body with a `Content-Encoding` (gzip, br, deflate, ...) is 415
 * `unsupported_media_type`. Neither the Workers runtime nor our routes decode one, so a gzip body
 * failed as "not valid UTF-8" and a plain body labelled `br` was read as if the label were not
 * there. Decoding is not offered: a small compressed body can inflate to gigabytes, past every
 * size limit the routes check on the bytes received.
 */
import { createMiddleware } from "hono/factory";
import { ApiError } from "../../errors.ts";
import { cutText } from "../../shared/text-limits.ts";

/** The most of the caller's header value the error quotes. */
const MAX_QUOTED_ENCODING = 64;

/** `identity` (or nothing) for each listed coding: the body is the bytes themselves. */
const isIdentity = (header: string) =>
  header
    .split(",")
    .map((coding) => coding.trim().toLowerCase())
    .every((coding) => coding === "" || coding === "identity");

export const refuseEncodedBody = () =>
  createMiddleware(async (c, next) => {
    const encoding = c.req.header("content-encoding");
    // Only a request that carries a body: a header alone on a GET changes nothing that is read.
    if (encoding !== undefined && c.req.raw.body !== null && !isIdentity(encoding)) {
      throw new ApiError(
        "unsupported_media_type",
        `the body is sent with Content-Encoding "${cutText(encoding, MAX_QUOTED_ENCODING)}", which is not read here; send it uncompressed, with no Content-Encoding`,
      );
    }
    await next();
  });
