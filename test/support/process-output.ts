import type { ChildProcess } from "node:child_process";

/**
 * Collects a child's stdout and stderr and resolves once `ready` matches what it printed; fails
 * if the child exits first or the timeout passes. `output()` keeps collecting afterwards.
 */
export function waitForOutput(child: ChildProcess, ready: RegExp, timeoutMs: number, what: string) {
  let output = "";
  const collect = (chunk: Buffer) => (output += chunk.toString());
  child.stdout!.on("data", collect);
  child.stderr!.on("data", collect);
  const done = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${what} not ready after ${timeoutMs / 1000}s:\n${output.slice(-4000)}`)), timeoutMs);
    const check = () => {
      if (ready.test(output)) {
        clearTimeout(timer);
        resolve();
      }
    };
    child.stdout!.on("data", check);
    child.stderr!.on("data", check);
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`${what} exited with ${code} before it was ready:\n${output.slice(-4000)}`));
    });
  });
  return { done, output: () => output };
}
