/**
 * Polls `check` until it holds or `timeoutMs` passes; resolves to whether it held. For tests that
 * wait for something to happen: a fixed sleep either wastes time or, on a loaded machine, checks
 * too early. Web APIs only: it runs in workerd and in Node alike.
 */
export async function until(check: () => boolean | Promise<boolean>, timeoutMs: number, intervalMs = 20): Promise<boolean> {
  for (const end = Date.now() + timeoutMs; Date.now() < end; ) {
    if (await check()) return true;
    await new Promise((r) => setTimeout(r, intervalMs));
  }
  return check();
}
