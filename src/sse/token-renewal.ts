/**
 * Fresh stream tokens for a stream opened with one. A token lives STREAM_TOKEN_TTL_SECONDS (15 min)
 * and is checked only when a stream connects, so a browser following a longer run with
 * EventSource would be refused at its first reconnect after that, with no way to mint another
 * (minting needs an API key). Instead the stream hands its client a new token of the same run,
 * key and organization: one as it opens, then one every STREAM_TOKEN_RENEW_MS (a third of a
 * token's life). Each is as short-lived as the first, and stops working as soon as the key that
 * minted the first is revoked; a client that keeps a stream open keeps a token that works.
 */
import type { AuthContext } from "../app-env.ts";
import { mintStreamToken, STREAM_TOKEN_TTL_SECONDS } from "../stream-tokens.ts";
import { sseFrame } from "./frames.ts";

/** How often an open stream sends its client a fresh token. */
export const STREAM_TOKEN_RENEW_MS = (STREAM_TOKEN_TTL_SECONDS * 1000) / 3;

/** The SSE event that carries a fresh token: `{ token, expiresAt }`. */
export const TOKEN_EVENT = "token";

export interface TokenRenewal {
  /** A `token` frame to send as the stream opens ("" for a stream not opened with a token). */
  first: string;
  /** The stream's keep-alive, with a fresh `token` frame after it when one is due. */
  keepAlive: (keepAlive: () => string) => () => string;
}

export async function tokenRenewal(env: Env, auth: AuthContext): Promise<TokenRenewal> {
  const claims = auth.streamToken;
  if (!claims) return { first: "", keepAlive: (keepAlive) => keepAlive };
  const frame = async () => sseFrame({ event: TOKEN_EVENT, data: await mintStreamToken(env.STREAM_TOKEN_SECRET, claims) });
  let mintedAt = Date.now();
  const first = await frame();
  // Minting is async and a keep-alive is not: a frame minted on one tick goes out on the next.
  let ready = "";
  return {
    first,
    keepAlive: (keepAlive) => () => {
      const out = keepAlive() + ready;
      ready = "";
      if (Date.now() - mintedAt >= STREAM_TOKEN_RENEW_MS) {
        mintedAt = Date.now();
        void frame().then(
          (text) => {
            ready = text;
          },
          () => {
            mintedAt = 0; // try again on the next tick
          },
        );
      }
      return out;
    },
  };
}
