/** Hono's body limit, answering with our `payload_too_large` error. */
import { bodyLimit } from "hono/body-limit";
import { ApiError } from "../../errors.ts";

export const limitBody = (maxBytes: number) =>
  bodyLimit({
    maxSize: maxBytes,
    onError: () => {
      throw new ApiError("payload_too_large", `request body is larger than ${maxBytes} bytes`);
    },
  });
