// src/dist under real Open MPI: the scripts in test/mpi/ run with `mpirun -np 2` and `-np 3` on
// this machine (oversubscribed, one kernel thread per rank) and record one line per check and
// rank; this file runs them and reads every rank's lines. Skipped, saying what to install, where
// mpirun is missing.
import { afterAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

const ROOT = resolve(import.meta.dir, "..");
const MPIRUN = Bun.which("mpirun");
const INSTALL = "apt-get install openmpi-bin libopenmpi-dev";
if (MPIRUN === null) console.warn(`test/mpi.test.ts skipped: mpirun not found (install Open MPI: ${INSTALL})`);

/** per test: mpirun jobs take about a second each here, the stuck-rank test ~5 s; loaded machines are slower */
const TEST_TIMEOUT_MS = 60_000;

const dir = mkdtempSync(join(tmpdir(), "llmts-mpi-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

interface Run {
  exitCode: number;
  output: string;
  seconds: number;
  /** every rank's recorded lines, rank by rank (missing file: no lines) */
  ranks: string[][];
}

let runs = 0;

/** mpirun -np N bun test/mpi/<script> with env passed through -x; waits at most `limitS`. */
function mpirun(np: number, script: string, env: Record<string, string> = {}, limitS = 40): Run {
  const results = join(dir, `run-${runs++}`);
  mkdirSync(results);
  const all: Record<string, string> = { NO_COLOR: "1", LLMTS_THREADS: "1", RESULTS_DIR: results, ...env };
  const args = [MPIRUN!, "--allow-run-as-root", "--oversubscribe", "-np", String(np)];
  for (const [k, v] of Object.entries(all)) args.push("-x", `${k}=${v}`);
  args.push(process.execPath, join(ROOT, "test", "mpi", script));
  const started = performance.now();
  const proc = Bun.spawnSync(args, { cwd: ROOT, stdout: "pipe", stderr: "pipe", timeout: limitS * 1000, env: { ...process.env, ...all } });
  const seconds = (performance.now() - started) / 1000;
  const ranks = Array.from({ length: np }, (_, r) => {
    const file = join(results, `rank-${r}.txt`);
    return existsSync(file) ? readFileSync(file, "utf8").split("\n").filter((l) => l !== "") : [];
  });
  return { exitCode: proc.exitCode ?? -1, output: `${proc.stdout.toString()}${proc.stderr.toString()}`, seconds, ranks };
}

/** Every rank recorded at least `min` checks, all passed, and mpirun exited 0. */
function expectAllPassed(run: Run, min: number): void {
  const failed = run.ranks.flat().filter((l) => !l.startsWith("PASS "));
  expect(failed).toEqual([]);
  if (run.exitCode !== 0) throw new Error(`mpirun exited with ${run.exitCode}:\n${run.output}`);
  for (const lines of run.ranks) expect(lines.length).toBeGreaterThanOrEqual(min);
}

describe.skipIf(MPIRUN === null)("Open MPI collectives (test/mpi/collectives.ts)", () => {
  for (const np of [2, 3]) {
    test(`${np} ranks: raw and split collectives against float64 references`, () => {
      expectAllPassed(mpirun(np, "collectives.ts", { MAX_ELEMENTS_PER_CALL: "1000" }), np === 2 ? 49 : 40);
    }, TEST_TIMEOUT_MS);
  }
});

describe.skipIf(MPIRUN === null)("ZeRO-0 and ZeRO-1 AdamW (test/mpi/zero.ts)", () => {
  const stateOf = (name: string) => join(dir, `${name}.bin`);
  test("2 ranks: equal one process's AdamW on the averaged gradient, bit for bit; save the state", () => {
    expectAllPassed(mpirun(2, "zero.ts", { MAX_ELEMENTS_PER_CALL: "1000", STATE_OUT: stateOf("two") }), 127);
    expect(existsSync(stateOf("two"))).toBe(true);
  }, TEST_TIMEOUT_MS);
  test("3 ranks (N divides neither P=10007 nor, for P=4, gives every rank a shard)", () => {
    expectAllPassed(mpirun(3, "zero.ts", { MAX_ELEMENTS_PER_CALL: "1000" }), 97);
  }, TEST_TIMEOUT_MS);
  test("a state saved by 2 ranks resumes on 3, then on 1 and 2: hand out, gather back, continue bit for bit", () => {
    expectAllPassed(mpirun(3, "zero.ts", { MODE: "resume", STATE_IN: stateOf("two"), STATE_OUT: stateOf("three"), MAX_ELEMENTS_PER_CALL: "1000" }), 20);
    expectAllPassed(mpirun(1, "zero.ts", { MODE: "resume", STATE_IN: stateOf("three") }), 20);
    expectAllPassed(mpirun(2, "zero.ts", { MODE: "resume", STATE_IN: stateOf("three") }), 20);
  }, TEST_TIMEOUT_MS);
});

describe.skipIf(MPIRUN === null)("wte overlap: embedding rows exchanged, added after the reduction (test/mpi/embedding.ts)", () => {
  for (const np of [2, 3]) {
    test(`${np} ranks: equal to the encoder kernel on the global batch, bit for bit`, () => {
      expectAllPassed(mpirun(np, "embedding.ts", { MAX_ELEMENTS_PER_CALL: "333" }), 5);
    }, TEST_TIMEOUT_MS);
  }
});

describe.skipIf(MPIRUN === null)("ZeRO-1's parameter all-gather overlapped with the forward pass (test/mpi/gather.ts)", () => {
  for (const np of [2, 3]) {
    test(`${np} ranks: each group final when the forward pass asks for it, all of it the blocking all-gather's bits`, () => {
      expectAllPassed(mpirun(np, "gather.ts", { MAX_ELEMENTS_PER_CALL: "333" }), 20);
    }, TEST_TIMEOUT_MS);
  }
});

describe.skipIf(MPIRUN === null)("a rank that fails ends the whole job, naming the rank (test/mpi/faults.ts)", () => {
  test("SIGKILL mid-collective: mpirun ends the job within seconds", () => {
    for (const np of [2, 3]) {
      const run = mpirun(np, "faults.ts", { FAULT: "kill", FAULT_RANK: String(np - 1) }, 30);
      expect(run.exitCode).not.toBe(0);
      expect(run.seconds).toBeLessThan(30);
      expect(run.output).toContain(`process rank ${np - 1} with PID`);
      expect(run.output).toContain("exited on signal 9 (Killed)");
    }
  }, TEST_TIMEOUT_MS);
  test("a rank that stops taking part: the others time out, name it, and MPI_Abort", () => {
    const run = mpirun(3, "faults.ts", { FAULT: "stuck", FAULT_RANK: "1", LLMTS_MPI_TIMEOUT_S: "2" }, 30);
    expect(run.exitCode).toBe(1);
    expect(run.seconds).toBeLessThan(30);
    expect(run.output).toMatch(/rank [02]: allreduce 5 \(MPI_Iallreduce of 1048576 elements\) has not completed after 2 s: rank 1 did not answer \(stuck, or gone\); ending the job/);
  }, TEST_TIMEOUT_MS);
  test("an error on one rank (bad data on its node): its message, then MPI_Abort with exit code 2", () => {
    const run = mpirun(2, "faults.ts", { FAULT: "throw", FAULT_RANK: "1" }, 30);
    expect(run.exitCode).toBe(2);
    expect(run.seconds).toBeLessThan(30);
    expect(run.output).toContain("rank 1: train data: /data/train_000000.bin has 12 tokens");
  }, TEST_TIMEOUT_MS);
});
