// Runs one CLI on a case, out of process, with a timeout (SIGKILL when it passes).
import { resolve } from "node:path";
import type { CliRun } from "./outcome.ts";

const ROOT = resolve(import.meta.dir, "../..");
/** Output beyond this is cut (a CLI printing megabytes is judged on the first part). */
const MAX_OUTPUT_CHARS = 1 << 20;

/**
 * Runs `bun <script> <args…>` (the script relative to the repository) with `cwd` as its working
 * folder: a case's own folder, so relative paths a mutated file names (a checkpoint's saved --log
 * "abc") land there, never in the repository.
 */
export async function runCli(args: string[], timeoutMs: number, cwd: string): Promise<CliRun> {
  const started = performance.now();
  const [script, ...rest] = args;
  const proc = Bun.spawn(["bun", resolve(ROOT, script), ...rest], {
    cwd, stdin: "ignore", stdout: "pipe", stderr: "pipe",
    env: { ...process.env, LLMTS_THREADS: "1", NO_COLOR: "1", LLMTS_DEBUG: "" },
  });
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    proc.kill("SIGKILL");
  }, timeoutMs);
  const [stdout, stderr] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text()]);
  await proc.exited;
  clearTimeout(timer);
  return {
    exitCode: proc.exitCode, signal: timedOut || proc.signalCode === null ? null : String(proc.signalCode), timedOut,
    stdout: stdout.slice(0, MAX_OUTPUT_CHARS), stderr: stderr.slice(0, MAX_OUTPUT_CHARS), ms: performance.now() - started,
  };
}
