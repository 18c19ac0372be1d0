// The fuzz harness itself (src/fuzz, bun run fuzz): cases are reproducible from their seed; a pass
// over a deliberately broken reader finds its crash, hang, misread and unclear error, saves them
// shrunk, and --replay reproduces them; a tiny pass over every real reader finds nothing.
import { afterAll, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fuzz, makeCase, NOTE_FILE, replay } from "../src/fuzz/engine.ts";
import { DEFAULT_FORMATS, formatNamed } from "../src/fuzz/formats/index.ts";
import { FAILURES, judgeCli } from "../src/fuzz/outcome.ts";
import { caseSeed } from "../src/fuzz/random.ts";
import { differenceCount } from "../src/fuzz/shrink.ts";

const dir = mkdtempSync(join(tmpdir(), "llmts-fuzz-test-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const sum = (counts: Record<string, number>) => Object.values(counts).reduce((a, b) => a + b, 0);

describe("cases", () => {
  test("the same format and seed give the same files and mutations; other seeds differ", async () => {
    const format = formatNamed("llmts")!;
    const seeds = await format.seeds(dir);
    const a = makeCase(format, seeds, caseSeed(1, "llmts", 7));
    const b = makeCase(format, await format.seeds(dir), caseSeed(1, "llmts", 7));
    expect(a.mutations).toEqual(b.mutations);
    expect([...a.files.keys()]).toEqual([...b.files.keys()]);
    for (const [name, bytes] of a.files) expect(b.files.get(name)).toEqual(bytes);
    const others = Array.from({ length: 20 }, (_, i) => makeCase(format, seeds, caseSeed(1, "llmts", 100 + i)).mutations.join(";"));
    expect(new Set(others).size).toBeGreaterThan(15);
  });

  test("a header edit after a mutation that nested a value too deep to serialise is skipped, not a crash (hf, seed 7, case 1775)", async () => {
    const format = formatNamed("hf")!;
    const c = makeCase(format, await format.seeds(dir), caseSeed(7, "hf", 1775));
    expect(c.mutations.some((m) => m.includes("nested"))).toBe(true);
  });

  test("mutations change the files: at most a few cases per format equal their seed", async () => {
    for (const format of DEFAULT_FORMATS.filter((f) => f.name !== "run-folder")) {
      const seeds = await format.seeds(dir);
      let unchanged = 0;
      for (let i = 0; i < 50; i++) {
        const c = makeCase(format, seeds, caseSeed(3, format.name, i));
        expect(c.mutations.length).toBeGreaterThan(0);
        // A mutation can write what is there already (a field set to its own value): rare.
        if (differenceCount(c.files, seeds.find((s) => s.name === c.base)!.files) === 0) unchanged++;
      }
      expect(unchanged).toBeLessThanOrEqual(3);
    }
  });
});

describe("judging CLI runs", () => {
  const run = (exitCode: number | null, stderr: string, extra: Partial<{ signal: string; timedOut: boolean }> = {}) =>
    judgeCli({ exitCode, signal: extra.signal ?? null, timedOut: extra.timedOut ?? false, stdout: "", stderr, ms: 5 }, "/tmp/case7");
  test("exit codes, signals, stack traces, timeouts and messages", () => {
    expect(run(2, "error: /tmp/case7/model.bin: header magic is 0\n").verdict).toBe("clean");
    expect(run(2, "error: --seq: 8 exceeds the model's maximum sequence length (4)\n(see --help)\n").verdict).toBe("clean");
    expect(run(2, "generate: the prompt is empty\n").verdict).toBe("unclear");
    expect(run(2, "warning: something\nerror: /tmp/case7/model.bin: header magic is 0\n").verdict).toBe("unclear");
    expect(run(1, "error: /tmp/case7/model.bin: header magic is 0\n").verdict).toBe("crash");
    expect(run(1, "step 1/1 | loss nan\nerror: step 1: the loss is NaN; stopping (last checkpoint: none this session)\n").verdict).toBe("nanLater");
    expect(run(null, "", { signal: "SIGSEGV" }).verdict).toBe("crash");
    expect(run(null, "", { timedOut: true }).verdict).toBe("hang");
    expect(run(1, "TypeError: x is not an object\n      at readConfigJson (/src/io/hf.ts:87:22)\n\nBun v1.4.5 (Linux x64)\n").verdict).toBe("crash");
    expect(run(0, "").verdict).toBe("accepted");
    expect(run(1, "error: step 2: cannot write the checkpoint /tmp/case7/run/ckpt_00000002.llmts (EISDIR)\n").verdict).toBe("clean");
    expect(run(1, "error: EISDIR: illegal operation on a directory, rename '/tmp/case7/x.tmp' -> '/tmp/case7/x'\n").verdict).toBe("crash");
  });
});

describe("a pass over a deliberately broken reader", () => {
  const out = join(dir, "failures");
  let report: Awaited<ReturnType<typeof fuzz>>[number];

  test("finds its crash, hang, misread and unclear error, and saves each case", async () => {
    [report] = await fuzz({ formats: [formatNamed("selftest")!], iterations: 30, seed: 1, jobs: 2, cliEvery: 0, timeoutMs: 1000, outDir: out, shrink: true });
    expect(report.cases).toBe(30);
    expect(sum(report.counts)).toBe(30);
    expect(sum(report.inProcess)).toBe(30);
    for (const verdict of ["crash", "hang", "misread", "unclear", "clean", "accepted"] as const) expect(report.counts[verdict]).toBeGreaterThan(0);
    const failing = FAILURES.reduce((n, v) => n + report.counts[v], 0);
    expect(report.failures).toHaveLength(failing);
    for (const f of report.failures) {
      expect(f.saved).not.toBeNull();
      expect(existsSync(join(f.saved!, NOTE_FILE))).toBe(true);
      expect(existsSync(join(f.saved!, "selftest.bin"))).toBe(true);
    }
  }, 60000);

  test("a saved case replays to the same verdict, and shrinking kept it failing", async () => {
    for (const verdict of ["crash", "misread", "unclear", "hang"] as const) {
      const saved = report.failures.find((f) => f.verdict === verdict)!;
      const note = JSON.parse(readFileSync(join(saved.saved!, NOTE_FILE), "utf8"));
      expect(note.verdict).toBe(verdict);
      expect(note.shrink).toMatch(verdict === "hang" ? /not shrunk/ : /→/);
      const again = await replay(saved.saved!, 1000);
      expect(again.result.verdict).toBe(verdict);
      expect(again.note.seed).toBe(saved.seed);
    }
  }, 30000);

  test("bun run fuzz --replay exits 1 for a case that still fails, and --json prints one object per format", () => {
    const crash = report.failures.find((f) => f.verdict === "crash")!;
    const replayed = Bun.spawnSync(["bun", "src/cli/fuzz.ts", "--replay", join(crash.saved!, NOTE_FILE)], { stdout: "pipe", stderr: "pipe" });
    expect(replayed.exitCode).toBe(1);
    expect(replayed.stdout.toString()).toMatch(/^selftest case \d+, in-process: recorded crash, now crash: RangeError/);
    const json = Bun.spawnSync(["bun", "src/cli/fuzz.ts", "--format", "tokenizer", "--format", "selftest", "--iterations", "12", "--json", "--timeout", "1", "--out", join(dir, "cli-out")], { stdout: "pipe", stderr: "pipe" });
    expect(json.exitCode).toBe(1); // the selftest reader fails
    const lines = json.stdout.toString().trim().split("\n").map((l) => JSON.parse(l));
    expect(lines.map((l) => l.format)).toEqual(["tokenizer", "selftest"]);
    expect(lines[0]).toMatchObject({ cases: 12, crashes: 0, hangs: 0, misreads: 0, unclear: 0 });
    expect(lines[0].clean + lines[0].accepted + lines[0].nanLater).toBe(12);
    const bad = Bun.spawnSync(["bun", "src/cli/fuzz.ts", "--format", "nope"], { stdout: "pipe", stderr: "pipe" });
    expect(bad.exitCode).toBe(2);
    expect(bad.stderr.toString()).toMatch(/--format: expected one of llmc, /);
  }, 30000);
});

describe("a tiny pass over every reader", () => {
  const expectNoFailures = (reports: Awaited<ReturnType<typeof fuzz>>) => {
    for (const r of reports) {
      expect(sum(r.counts)).toBe(20);
      expect(r.failures.map((f) => `${f.format} ${f.verdict} (${f.target}): ${f.detail}`)).toEqual([]);
      expect(r.counts.clean).toBeGreaterThan(0);
      if (r.format !== "tokenizer") expect(r.cliRuns).toBeGreaterThan(0);
    }
  };
  const readers = DEFAULT_FORMATS.filter((f) => f.name !== "run-folder");

  test("20 cases per format, through the readers and the CLIs: no crash, hang, misread or unclear error", async () => {
    const reports = await fuzz({ formats: readers, iterations: 20, seed: 12, jobs: 2, cliEvery: 5, timeoutMs: 10000, outDir: null, shrink: false });
    expect(reports.map((r) => r.format)).toEqual(readers.map((f) => f.name));
    expectNoFailures(reports);
  }, 120000);

  test("run folder: 20 cases, no failure", async () => {
    expectNoFailures(await fuzz({ formats: [formatNamed("run-folder")!], iterations: 20, seed: 12, jobs: 2, cliEvery: 5, timeoutMs: 10000, outDir: null, shrink: false }));
  }, 120000);
});
