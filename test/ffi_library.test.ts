// Loading the kernel library and choosing the thread count, end to end: a child Bun process imports a
// copy of src/ffi.ts placed in a temporary project (its own zig-out/lib/libllmts.so and kernels/), so
// a missing, stale or damaged library and a bad LLMTS_THREADS can be staged without touching ours.
import { afterAll, describe, expect, test } from "bun:test";
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, utimesSync, writeFileSync } from "node:fs";
import { availableParallelism, tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { KernelArgumentError, kernelLimits, LIBRARY_PATH, parseThreadCount, setThreads, threadCount, defaultThreadCount } from "../src/ffi.ts";

/** kernels/pool.zig's max_threads, as the library reports it (test/ffi_abi.test.ts checks both sides enforce it). */
const MAX = kernelLimits().maxThreads;

const ROOT = resolve(import.meta.dir, "..");
const project = mkdtempSync(join(tmpdir(), "llmts-ffi-"));
afterAll(() => rmSync(project, { recursive: true, force: true }));
const library = join(project, "zig-out", "lib", "libllmts.so");
const source = join(project, "kernels", "pool.zig");
mkdirSync(join(project, "src"), { recursive: true });
mkdirSync(join(project, "kernels"));
mkdirSync(join(project, "zig-out", "lib"), { recursive: true });
copyFileSync(join(ROOT, "src", "ffi.ts"), join(project, "src", "ffi.ts"));
writeFileSync(source, "// stand-in kernel source: only its modification time matters\n");
writeFileSync(join(project, "probe.ts"), `import { threadCount } from "./src/ffi.ts";\nconsole.log(JSON.stringify({ threads: threadCount() }));\n`);

const SOURCE_TIME = new Date("2026-01-01T00:00:00Z");
utimesSync(source, SOURCE_TIME, SOURCE_TIME);
const newer = new Date(SOURCE_TIME.getTime() + 60_000), older = new Date(SOURCE_TIME.getTime() - 60_000);

function installLibrary(mtime: Date, contents: "real" | "garbage" = "real"): void {
  if (contents === "real") copyFileSync(LIBRARY_PATH, library);
  else writeFileSync(library, "this is not an ELF shared object\n");
  utimesSync(library, mtime, mtime);
}

/** Runs probe.ts in the temporary project; returns its exit code, the thread count or stderr. */
function probe(env: Record<string, string | undefined> = {}): { code: number; threads: number | null; stderr: string } {
  const childEnv: Record<string, string> = {};
  for (const [k, v] of Object.entries({ ...process.env, LLMTS_THREADS: undefined, ...env })) if (v !== undefined) childEnv[k] = v;
  const proc = Bun.spawnSync([process.execPath, "probe.ts"], { cwd: project, env: childEnv, stdout: "pipe", stderr: "pipe" });
  const stdout = proc.stdout.toString().trim();
  return { code: proc.exitCode ?? -1, threads: proc.exitCode === 0 ? JSON.parse(stdout).threads : null, stderr: proc.stderr.toString() };
}

describe("loading the kernel library", () => {
  test("missing: the error says to run `bun run build`", () => {
    rmSync(library, { force: true });
    const r = probe();
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain(`llm.ts kernel library not found at ${library}: run \`bun run build\``);
  });

  test("older than a kernels/ source: the error names the source and says to rebuild", () => {
    installLibrary(older);
    const r = probe();
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain(`is older than kernels/pool.zig: run \`bun run build\``);
  });

  test("damaged: no raw dlopen error, the message says what to run", () => {
    installLibrary(newer, "garbage");
    const r = probe();
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain(`llm.ts kernel library ${library} could not be loaded (`);
    expect(r.stderr).toContain("): run `bun run build`");
  });

  test("present and newer than every source: loads, with one thread per available core by default", () => {
    installLibrary(newer);
    const r = probe();
    expect(r.stderr).toBe("");
    expect(r.threads).toBe(Math.max(1, Math.min(MAX, availableParallelism())));
  });
});

describe("thread count", () => {
  test("LLMTS_THREADS sets the pool size; empty means the default", () => {
    installLibrary(newer);
    expect(probe({ LLMTS_THREADS: "1" }).threads).toBe(1);
    expect(probe({ LLMTS_THREADS: "3" }).threads).toBe(3);
    expect(probe({ LLMTS_THREADS: "" }).threads).toBe(Math.max(1, Math.min(MAX, availableParallelism())));
  });

  test("a bad LLMTS_THREADS fails the first kernel call with a message naming it", () => {
    installLibrary(newer);
    for (const bad of ["0", String(MAX + 1), "-2", "1.5", "two", " "]) {
      const r = probe({ LLMTS_THREADS: bad });
      expect(r.code).not.toBe(0);
      expect(r.stderr).toContain(`LLMTS_THREADS must be an integer from 1 to ${MAX}, got "${bad}"`);
    }
  });

  test("parseThreadCount (the --threads flag) accepts 1..max_threads and names its source otherwise", () => {
    expect(parseThreadCount("1", "--threads")).toBe(1);
    expect(parseThreadCount(String(MAX), "--threads")).toBe(MAX);
    for (const bad of ["0", String(MAX + 1), "1.5", "x", "NaN", "-1"]) {
      expect(() => parseThreadCount(bad, "--threads")).toThrow(`--threads must be an integer from 1 to ${MAX}, got "${bad}"`);
    }
  });

  test("setThreads resizes the pool; bad counts throw and leave it as it was", () => {
    const before = threadCount();
    try {
      expect(setThreads(3)).toBe(3);
      expect(threadCount()).toBe(3);
      for (const bad of [0, -1, MAX + 1, 1.5, NaN]) expect(() => setThreads(bad)).toThrow(KernelArgumentError);
      expect(threadCount()).toBe(3);
    } finally {
      setThreads(defaultThreadCount());
    }
    expect(threadCount()).toBe(before);
  });
});
