// A training run: set-up (run spec, data, model, optimizer, resume) and the step loop with
// gradient accumulation, clipping, schedules, evaluation, samples, checkpoints, logging and
// Ctrl-C handling. Everything that can be wrong with the flags or the data is found in set-up,
// before the first step; the loop reads its settings from the frozen run spec only.
//
// Under mpirun with N > 1 ranks (`dist`), the same run is data-parallel (data_parallel.ts): rank 0
// reads the model and checkpoint files and hands their contents out, every rank reads the data
// (the same files at the same path on every node) and its 1/N of each micro-batch, the ranks check
// that they agree on the run spec and the data, and rank 0 alone writes the log, the SVG, the
// samples and the checkpoints. Logged values (loss, gradient norm, val loss) are global.
import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import { UsageError } from "../base/errors.ts";
import { Rng } from "../base/rng.ts";
import { DataError, expandFiles, TokenLoader } from "../data/loader.ts";
import { prepareDataset, SUMMARY_FILE } from "../data/prepare.ts";
import { decode } from "../data/tokenizer.ts";
import type { Distributed } from "../dist/distributed.ts";
import type { DataParallelOptimizer, ZeroStage } from "../dist/zero.ts";
import { bf16Unavailable, defaultThreadCount, type MatmulPrecision, setMatmulPrecision, setThreads, threadCount } from "../ffi.ts";
import { generate } from "../infer/generate.ts";
import { InferenceEngine } from "../infer/engine.ts";
import { makeFolder, removeFile, removeStaleTemps, WriteError } from "../io/atomic.ts";
import { loadWeights } from "../io/load_weights.ts";
import { readLlmtsCheckpoint, writeLlmtsCheckpoint } from "../io/llmts_checkpoint.ts";
import { checkpointEntries, checkpointPath, listCheckpoints, newestCheckpoint } from "../io/run_folder.ts";
import { CheckpointError } from "../io/checks.ts";
import { EOT_TOKEN, type GPT2Config, namedConfig } from "../model/config.ts";
import { trainingStepFlops } from "../model/flops.ts";
import { GPT2 } from "../model/gpt2.ts";
import { GPT2Weights, parameterCount } from "../model/weights.ts";
import { AdamW, gradNorm } from "../optim/adamw.ts";
import { givenPeak, measurePeakFor, mfuPercent, type PeakMeasurement } from "../perf/peak.ts";
import { pruneCheckpoints, resolveResume } from "./checkpoints.ts";
import { DataParallelTraining, defaultThreadsPerRank } from "./data_parallel.ts";
import { DEFAULTS, type TrainFlags } from "./options.ts";
import { ZScoreWindow } from "./outliers.ts";
import { Progress } from "./progress.ts";
import { checkRunSpec, type DataSource, describeData, resolveRunSpec, type RunSpec, savedRunSpec, type SpecDefaults, specDefaults } from "./run_spec.ts";
import { RunLog } from "./run_log.ts";
import { learningRate } from "./schedule.ts";

const REPO_ROOT = resolve(import.meta.dir, "..", "..");
export const MOBY_DICK_TEXT = join(REPO_ROOT, "node_modules", "@stdlib", "datasets-moby-dick", "data", "data.txt");
export const MOBY_DICK_CACHE = join(REPO_ROOT, "data", "mobydick");
/** The default token data: Moby-Dick, prepared on first use (ensureDefaultCorpus). */
export const DEFAULT_DATA: DataSource = { files: { train: [join(MOBY_DICK_CACHE, "train_*.bin")], val: [join(MOBY_DICK_CACHE, "val_*.bin")] } };

export class TrainingFailed extends Error {
  override name = "TrainingFailed";
}

const round3 = (x: number) => Math.round(x * 1000) / 1000;

export interface Run {
  spec: Readonly<RunSpec>;
  /** this process's kernel threads (not part of the spec: results do not depend on it) */
  threads: number;
  /** the denominator of MFU */
  peak: PeakMeasurement;
  accumulation: number;
  model: GPT2;
  /** one process: AdamW over every parameter; data-parallel: dp.optimizer */
  optimizer: AdamW | DataParallelOptimizer;
  /** the data-parallel side of the run (mpirun with N > 1 ranks), null for one process */
  dp: DataParallelTraining | null;
  train: TokenLoader;
  val: TokenLoader | null;
  sampleRng: Rng;
  /** recent losses and gradient norms of accepted updates (the --skip-*-z guard) */
  recent: { loss: ZScoreWindow; gradNorm: ZScoreWindow };
  log: RunLog;
  startStep: number;
  /** where this run's weights came from, for the banner */
  origin: string;
  dataNote: string;
}

export interface RunResult {
  /** the step reached */
  step: number;
  interrupted: boolean;
  lastCheckpoint: string | null;
  finalValLoss: number | null;
}

const SEED_STREAMS = { init: 0, data: 0x5eed_da7a, sample: 0x5a3b_1e00 };

/** The defaults of a fresh run: the flags' (options.ts) and the default corpus. */
export const RUN_DEFAULTS: SpecDefaults = specDefaults(DEFAULT_DATA, DEFAULTS);

/** What a resumed run takes from its checkpoint; data-parallel: rank 0 read it, the others got all but the tensors. */
interface ResumePoint {
  path: string;
  step: number;
  spec: RunSpec;
  state: Record<string, unknown>;
  config: GPT2Config;
  /** rank 0 (or one process) only */
  weights: GPT2Weights | null;
  m: Float32Array | null;
  v: Float32Array | null;
}

function readResumePoint(given: Partial<TrainFlags>, defaults: SpecDefaults, group: Distributed | null): ResumePoint {
  let point: ResumePoint | null = null;
  if (group === null || group.isRoot) {
    const path = resolveResume(given.resume!, given.ckptDir ?? (defaults.flags.ckptDir as string));
    const checkpoint = readLlmtsCheckpoint(path, { optimizer: true });
    const named = /ckpt_(\d+)\.llmts$/.exec(path);
    if (named !== null && Number(named[1]) !== checkpoint.step) throw new CheckpointError(`${path}: named for step ${Number(named[1])} but holds step ${checkpoint.step}`);
    const spec = savedRunSpec(checkpoint.state, path, defaults);
    point = { path, step: checkpoint.step, spec, state: checkpoint.state, config: checkpoint.weights.config, weights: checkpoint.weights, m: checkpoint.m!, v: checkpoint.v! };
  }
  if (group === null) return point!;
  const shared = group.broadcastJson(point === null ? null : { path: point.path, step: point.step, spec: point.spec, state: point.state, config: point.config });
  return point ?? { ...shared, weights: null, m: null, v: null };
}

/**
 * Resolves everything from the parsed flags; throws a UsageError/DataError/CheckpointError before
 * any training. `defaults` is injectable so tests can show a resumed run ignores the code's defaults.
 * `dist` (under mpirun): with more than one rank the run is data-parallel; every rank calls this.
 */
export function setupRun(given: Partial<TrainFlags>, progress: (message: string) => void, defaults: SpecDefaults = RUN_DEFAULTS, dist: Distributed | null = null): Run {
  const group = dist !== null && dist.size > 1 ? dist : null;
  const isRoot = group === null || group.isRoot;
  // Resume: the checkpoint supplies the weights, the optimizer state and the run spec.
  const resumed = given.resume !== undefined ? readResumePoint(given, defaults, group) : null;
  const resumePath = resumed?.path ?? null;
  const spec = resolveRunSpec(given, resumed?.spec ?? null, defaults, group?.size ?? 1);
  if (group !== null) agreeOrRefuse(group, "the run spec (the flags, and the checkpoint's spec when resuming)", JSON.stringify(spec));
  const threads = given.threads ?? (group === null ? defaultThreadCount() : defaultThreadsPerRank());

  // The model's shape, without allocating it yet (flag checks come first). Rank 0 reads --init.
  let config: GPT2Config;
  let initWeights: ReturnType<typeof loadWeights> | null = null;
  if (resumed !== null) config = resumed.config;
  else if ("file" in spec.model) {
    if (isRoot) {
      if (!existsSync(spec.model.file)) throw new UsageError(`--init: ${spec.model.file} does not exist`);
      initWeights = loadWeights(spec.model.file);
    }
    config = group === null ? initWeights!.config : group.broadcastJson(initWeights?.config ?? null);
  } else config = namedConfig(spec.model.fresh);
  const accumulation = checkRunSpec(spec, config.maxT);
  const bf16Problem = spec.matmulPrecision === "bf16" ? bf16Unavailable() : null;
  if (bf16Problem !== null) throw new UsageError(`--matmul-precision bf16${resumed !== null ? " (this run's, from its checkpoint)" : ""}: ${bf16Problem}`);
  if (resumed !== null && resumed.step >= spec.steps) throw new UsageError(`--steps: the checkpoint is already at step ${resumed.step}; raise --steps to train further`);

  // Paths and globs named by the spec must exist / match.
  if ("text" in spec.data && isRoot && !existsSync(spec.data.text.path)) throw new UsageError(`--text: ${spec.data.text.path} does not exist`);
  if ("files" in spec.data && spec.data !== DEFAULT_DATA) {
    for (const [flag, patterns] of [["train-data", spec.data.files.train], ["val-data", spec.data.files.val]] as const) {
      for (const pattern of patterns) {
        try {
          expandFiles(pattern, flag);
        } catch (error) {
          if (error instanceof DataError) throw new UsageError(`--${flag}: "${pattern}" matches no files`);
          throw error;
        }
      }
    }
  }

  // Something named like a checkpoint that is not a file would block a checkpoint write later.
  const blocking = isRoot ? checkpointEntries(spec.ckptDir).find((e) => !e.isFile) : undefined;
  if (blocking !== undefined) throw new UsageError(`--ckpt-dir: ${blocking.path} is named like a checkpoint but is not a file: move it away`);

  // Fresh runs refuse to mix with an earlier run's checkpoints (rank 0's folder: it writes them).
  if (resumed === null && isRoot) {
    const earlier = listCheckpoints(spec.ckptDir);
    if (earlier.length > 0 && given.overwrite !== true) {
      throw new UsageError(
        `--ckpt-dir: ${spec.ckptDir} holds checkpoints of an earlier run (up to step ${earlier[earlier.length - 1].step}). ` +
          `Continue it with --resume latest, start elsewhere with --ckpt-dir DIR, or replace it with --overwrite`,
      );
    }
  }

  // Data (validated fully here: headers, sizes, ids < V, at least one batch).
  const { trainFiles, valFiles } = resolveData(spec, progress, group);
  const ranks = group === null ? {} : { rank: group.rank, worldSize: group.size };
  const loaderOptions = { B: spec.batch, T: spec.seq, vocabSize: config.V, ...ranks };
  const train = new TokenLoader({ ...loaderOptions, files: trainFiles, shuffle: spec.shuffle, seed: spec.seed ^ SEED_STREAMS.data, label: "train" });
  const val = valFiles.length === 0 ? null : new TokenLoader({ ...loaderOptions, files: valFiles, shuffle: false, seed: 0, label: "val" });
  if (resumed !== null) train.restore(resumed.state.loader, resumePath!);
  if (group !== null) {
    const sizes = (loader: TokenLoader | null) => loader?.files.map((file, i) => [file, loader.tokensPerFile[i]]) ?? [];
    agreeOrRefuse(group, "the data files (their paths and token counts: every node needs the same files at the same path)", JSON.stringify({ train: sizes(train), val: sizes(val) }));
  }

  // The sampler's RNG and the outlier windows: a damaged one in the checkpoint is refused here,
  // before the run touches its folder.
  const sampleRng = new Rng(spec.seed ^ SEED_STREAMS.sample);
  const recent = { loss: new ZScoreWindow(), gradNorm: new ZScoreWindow() };
  if (resumed !== null) restoreRunState(resumed.state, resumePath!, sampleRng, recent);

  // Everything checked: now the work starts.
  if (threads !== threadCount()) setThreads(threads);
  setMatmulPrecision(spec.matmulPrecision);
  if (isRoot) {
    if (resumed === null && given.overwrite === true) for (const { path } of listCheckpoints(spec.ckptDir)) removeFile(path);
    makeFolder(spec.ckptDir);
    for (const stale of removeStaleTemps(spec.ckptDir)) progress(`removed ${stale}, left by a run killed while writing it`);
  }

  let model: GPT2;
  const hyper = { lr: spec.lr, beta1: spec.beta1, beta2: spec.beta2, eps: spec.eps, weightDecay: spec.weightDecay };
  let origin: string;
  // Data-parallel: rank 0's parameters are every rank's (the others start from zeros and receive them).
  const ownWeights = (weights: GPT2Weights | null) => new GPT2(isRoot ? weights! : new GPT2Weights(config));
  if (resumed !== null) {
    model = ownWeights(resumed.weights);
    origin = `resumed from ${resumePath} at step ${resumed.step}`;
  } else if ("file" in spec.model) {
    model = ownWeights(initWeights);
    origin = `initialised from ${spec.model.file}`;
  } else {
    model = isRoot ? GPT2.init(config, spec.seed ^ SEED_STREAMS.init) : ownWeights(null);
    origin = `fresh ${"fresh" in spec.model ? spec.model.fresh : ""} (seed ${spec.seed})`;
  }
  let optimizer: AdamW | DataParallelOptimizer;
  let dp: DataParallelTraining | null = null;
  if (group === null) {
    const adam = new AdamW(parameterCount(config), hyper);
    if (resumed !== null) {
      adam.m.set(resumed.m!);
      adam.v.set(resumed.v!);
      adam.step = resumed.step;
    }
    optimizer = adam;
  } else {
    // DataParallelTraining hands rank 0's parameters to every rank.
    const zero: ZeroStage = given.zero ?? 1;
    dp = new DataParallelTraining(group, model, hyper, zero, spec.batch, spec.seq);
    if (resumed !== null) dp.optimizer.loadMoments(isRoot ? { m: resumed.m!, v: resumed.v! } : null, resumed.step);
    optimizer = dp.optimizer;
  }
  const log = new RunLog(spec.log, resumed?.step ?? null, isRoot);
  const peak = given.peakGflops !== undefined ? givenPeak(given.peakGflops, threads) : group === null ? measurePeakFor(spec.matmulPrecision, threads) : jobPeak(group, spec.matmulPrecision, threads);
  return { spec, threads, peak, accumulation, model, optimizer, dp, train, val, sampleRng, recent, log, startStep: resumed?.step ?? 0, origin, dataNote: describeData(spec.data) };
}

/** The sampler's RNG and the outlier windows of a checkpoint; a damaged one is a CheckpointError naming it. */
function restoreRunState(state: Record<string, unknown>, path: string, sampleRng: Rng, recent: Run["recent"]): void {
  try {
    if (state.sampleRng !== undefined) sampleRng.setState(state.sampleRng);
    const saved = state.recent as { loss?: unknown; gradNorm?: unknown } | undefined;
    if (saved !== undefined) {
      if (saved === null || typeof saved !== "object") throw new Error(`"recent" is not an object`);
      recent.loss.restore(saved.loss, "recent losses");
      recent.gradNorm.restore(saved.gradNorm, "recent gradient norms");
    }
  } catch (error) {
    throw new CheckpointError(`${path}: ${(error as Error).message}`);
  }
}

/** Distributed.agree, its disagreement a usage error (exit 2: the ranks were given different flags or files). */
function agreeOrRefuse(group: Distributed, what: string, text: string): void {
  try {
    group.agree(what, text);
  } catch (error) {
    if (error instanceof Error && error.message.startsWith("the ranks disagree")) throw new UsageError(error.message);
    throw error;
  }
}

/** The matmul ceiling of all ranks together: each measures its own threads (at the same time, as they will compute), summed. */
function jobPeak(group: Distributed, precision: MatmulPrecision, threads: number): PeakMeasurement {
  const mine = measurePeakFor(precision, threads);
  const [gflops, best] = group.sumF64([mine.gflops, mine.best]);
  return { ...mine, gflops, best, threads: threads * group.size, source: `measured: the sum over ${group.size} ranks of each one's ${mine.source.replace(/^measured: /, "")}` };
}

/**
 * The token files of the run. Data-parallel: rank 0 tokenizes --text into <ckpt-dir>/data and
 * tells the others where the files are (the folder must be shared: one machine, or a shared file
 * system); the default corpus is prepared by rank 0 first, then by each node that lacks it.
 */
function resolveData(spec: RunSpec, progress: (message: string) => void, group: Distributed | null): { trainFiles: string[]; valFiles: string[] } {
  if ("text" in spec.data) {
    let files: { trainFiles: string[]; valFiles: string[] } | null = null;
    if (group === null || group.isRoot) {
      const { path, valFraction } = spec.data.text;
      const outDir = join(spec.ckptDir, "data");
      const s = prepareDataset({ inputs: [path], outDir, valFraction, shardTokens: 100_000_000, onProgress: () => {} });
      progress(`tokenized ${path}: ${s.tokens.toLocaleString("en-US")} tokens in ${s.tokenizeSeconds.toFixed(2)} s → ${outDir}`);
      files = { trainFiles: s.trainFiles, valFiles: s.valFiles };
    }
    return group === null ? files! : group.broadcastJson(files);
  }
  if (spec.data === DEFAULT_DATA || JSON.stringify(spec.data) === JSON.stringify(DEFAULT_DATA)) {
    if (group === null || group.isRoot) ensureDefaultCorpus(progress);
    if (group !== null) {
      group.barrier("preparing the default corpus");
      if (!group.isRoot) ensureDefaultCorpus(() => {});
    }
  }
  return { trainFiles: [...spec.data.files.train], valFiles: [...spec.data.files.val] };
}

/** Prepares Moby-Dick into MOBY_DICK_CACHE on first use (kept while its prepare.json exists). */
export function ensureDefaultCorpus(progress: (message: string) => void): void {
  if (existsSync(join(MOBY_DICK_CACHE, SUMMARY_FILE))) return;
  if (!existsSync(MOBY_DICK_TEXT)) throw new DataError(`the default corpus ${MOBY_DICK_TEXT} is missing: run bun install, or pass --train-data/--text`);
  progress(`preparing the default corpus (Moby-Dick) into ${MOBY_DICK_CACHE} …`);
  const s = prepareDataset({ inputs: [MOBY_DICK_TEXT], outDir: MOBY_DICK_CACHE, valFraction: 0.1, shardTokens: 100_000_000 });
  progress(`  ${s.tokens.toLocaleString("en-US")} tokens (tokenizing took ${s.tokenizeSeconds.toFixed(2)} s)`);
}

function checkpointState(run: Run): Record<string, unknown> {
  const recent = { loss: run.recent.loss.state(), gradNorm: run.recent.gradNorm.state() };
  return { spec: run.spec, loader: run.train.state(), sampleRng: run.sampleRng.state(), recent, savedAt: new Date().toISOString() };
}

/** Writes the checkpoint of `step` (data-parallel: a collective; rank 0 writes) and returns its path (on every rank). */
function saveCheckpoint(run: Run, step: number): string {
  // An update can overflow without the loss showing it yet: never write weights no reader accepts.
  const bad = run.model.weights.firstNonFinite();
  if (bad !== null) throw new TrainingFailed(`step ${step}: parameter ${bad.tensor}[${bad.index}] is ${bad.value} after the update; not saving it. Try a lower --lr or --grad-clip`);
  const path = checkpointPath(run.spec.ckptDir, step);
  if (run.dp === null) {
    const optimizer = run.optimizer as AdamW;
    writeLlmtsCheckpoint(path, { weights: run.model.weights, m: optimizer.m, v: optimizer.v, step, state: checkpointState(run) });
    pruneCheckpoints(run.spec.ckptDir, run.spec.keepLast);
    return path;
  }
  run.dp.writeCheckpoint((moments) => writeLlmtsCheckpoint(path, { weights: run.model.weights, moments, step, state: checkpointState(run) }));
  if (run.dp.dist.isRoot) pruneCheckpoints(run.spec.ckptDir, run.spec.keepLast);
  return path;
}

/** The mean validation loss (data-parallel: over every rank's share of the same val batches). */
export function evaluate(run: Run): number | null {
  if (run.val === null) return null;
  const { batch: B, seq: T, valBatches } = run.spec;
  const n = Math.min(valBatches, run.val.batchesPerEpoch);
  run.val.reset();
  let sum = 0;
  for (let i = 0; i < n; i++) {
    run.val.next();
    sum += run.model.forward(run.val.inputs, run.val.targets, B, T);
  }
  return run.dp === null ? sum / n : run.dp.mean(sum / n);
}

/** Rank 0, or the one process: the one that writes and prints. */
function writes(run: Run): boolean {
  return run.dp === null || run.dp.dist.isRoot;
}

/** A continuation of <|endoftext|> from the model being trained (KV-cache engine over its weights). */
function sample(run: Run, engine: InferenceEngine): string {
  const { sampleTokens, temperature } = run.spec;
  const sampling = { temperature, topK: 0, topP: 1 };
  // GPT-2's samples start after <|endoftext|>; a model with a smaller vocabulary starts at token 0.
  const start = run.model.config.V > EOT_TOKEN ? EOT_TOKEN : 0;
  const { tokens } = generate(engine, [start], { maxNewTokens: sampleTokens, sampling, seed: run.sampleRng, stopToken: null });
  return decode(tokens);
}

/** Why this step's update should be skipped (the --skip-loss-z / --skip-grad-z guard), or null. */
function outlier(run: Run, loss: number, norm: number): string | null {
  const { skipLossZ, skipGradZ } = run.spec;
  const zLoss = skipLossZ > 0 ? run.recent.loss.zscore(loss) : null;
  if (zLoss !== null && zLoss > skipLossZ) return `loss z-score ${zLoss.toFixed(2)} > ${skipLossZ}`;
  const zGrad = skipGradZ > 0 ? run.recent.gradNorm.zscore(norm) : null;
  if (zGrad !== null && zGrad > skipGradZ) return `gradient norm z-score ${zGrad.toFixed(2)} > ${skipGradZ}`;
  return null;
}

/** What the loop carries from step to step. */
interface LoopState {
  step: number;
  /** the newest checkpoint this process wrote */
  lastCheckpoint: string | null;
  valLoss: number | null;
  emaMs: number;
  engine: InferenceEngine | null;
}

/**
 * Runs `n` optimizer steps of `run` as the loop would, without its logging, evaluation and
 * checkpoints (benchmarks: bench/dp.ts); `after` sees each step's wall time.
 */
export function runSteps(run: Run, n: number, after: (ms: number, step: number) => void): void {
  const state: LoopState = { step: run.startStep, lastCheckpoint: null, valLoss: null, emaMs: 0, engine: null };
  for (let i = 0; i < n; i++) {
    const started = performance.now();
    trainStep(run, state);
    state.step += 1;
    after(performance.now() - started, state.step);
  }
  run.model.settleParameters();
}

/** What a step reports: its loss and gradient norm, the learning rate, and why it was skipped (or null). */
type StepResult = { loss: number; norm: number; lr: number; skipped: string | null };

/** One optimizer step: accumulation, the norm, the outlier guard, clipping, AdamW. */
function trainStep(run: Run, state: LoopState): StepResult {
  if (run.dp !== null) return dataParallelStep(run, run.dp, state);
  const { model, train, spec: o } = run;
  const optimizer = run.optimizer as AdamW;
  model.zeroGrad();
  let lossSum = 0;
  for (let micro = 0; micro < run.accumulation; micro++) {
    train.next();
    lossSum += model.forward(train.inputs, train.targets, o.batch, o.seq);
    model.backward();
  }
  const loss = lossSum / run.accumulation;
  // The backward pass of each micro-batch adds the gradient of its mean loss: divide by the
  // number of micro-batches for the gradient of the mean over the whole update.
  const norm = gradNorm(model.grads) / run.accumulation;
  return finishStep(run, state, loss, norm, (lr, scale) => optimizer.update(model.params, model.grads, lr, scale));
}

/**
 * The end of a step, given its loss and gradient norm (global ones under mpirun): a non-finite one
 * stops the run naming the step; otherwise the update runs at this step's learning rate, scaled
 * for accumulation and clipping, unless the outlier guard skips it.
 */
function finishStep(run: Run, state: LoopState, loss: number, norm: number, update: (lr: number, scale: number) => void): StepResult {
  const o = run.spec;
  if (!Number.isFinite(loss) || !Number.isFinite(norm)) {
    const what = !Number.isFinite(loss) ? `loss is ${loss}` : `gradient norm is ${norm}`;
    throw new TrainingFailed(`step ${state.step + 1}: the ${what}; stopping (last checkpoint: ${state.lastCheckpoint ?? "none this session"}). Try a lower --lr or --grad-clip`);
  }
  const lr = learningRate(state.step, o);
  const skipped = outlier(run, loss, norm);
  if (skipped === null) {
    let scale = 1 / run.accumulation;
    if (o.gradClip > 0 && norm > o.gradClip) scale *= o.gradClip / norm;
    update(lr, scale);
    run.recent.loss.push(loss);
    run.recent.gradNorm.push(norm);
  }
  return { loss, norm, lr, skipped };
}

/**
 * trainStep on one of N data-parallel ranks: the same step on this rank's 1/N of each micro-batch.
 * The last micro-batch's backward readies its gradients for reduction as they become final; the
 * loss and the gradient norm are the global ones (identical on every rank, so every rank takes
 * the same decisions: NaN, outlier, clipping).
 */
function dataParallelStep(run: Run, dp: DataParallelTraining, state: LoopState): StepResult {
  const { model, train, spec: o } = run;
  model.zeroGrad();
  let lossSum = 0;
  for (let micro = 0; micro < run.accumulation; micro++) {
    train.next();
    lossSum += model.forward(train.inputs, train.targets, o.batch, o.seq);
    if (micro < run.accumulation - 1) model.backward();
    else model.backward(dp.hooks);
  }
  dp.reduce();
  const loss = dp.mean(lossSum / run.accumulation);
  const norm = dp.optimizer.gradNorm() / run.accumulation;
  return finishStep(run, state, loss, norm, (lr, scale) => dp.update(lr, scale));
}

/** Evaluation, a sample and a checkpoint when their cadence (or the last step) says so. */
function afterStep(run: Run, state: LoopState, progress: Progress): void {
  const o = run.spec, step = state.step;
  const last = step === o.steps;
  if (run.val !== null && ((o.valEvery > 0 && step % o.valEvery === 0) || last)) {
    state.valLoss = evaluate(run);
    run.log.append({ step, val_loss: state.valLoss! });
    progress.message(`step ${step}: val loss ${state.valLoss!.toFixed(4)}`);
  }
  if (o.sampleTokens > 0 && ((o.sampleEvery > 0 && step % o.sampleEvery === 0) || last) && writes(run)) {
    run.model.settleParameters(); // the engine reads the weights' arrays (ZeRO-1: the all-gather may be in flight)
    state.engine ??= new InferenceEngine(run.model.weights);
    const text = sample(run, state.engine).replaceAll("\r", "");
    progress.message(`step ${step} sample:\n${text.split("\n").map((line) => `  │ ${line}`).join("\n")}`);
  }
  if ((o.ckptEvery > 0 && step % o.ckptEvery === 0) || last) {
    state.lastCheckpoint = checkpointOrFail(run, state);
    if (!last) progress.message(`step ${step}: saved ${state.lastCheckpoint}`);
  }
  run.log.refreshSvg(last);
}

/** Saves a checkpoint; a failed write (full disk, read-only folder) ends the run naming the last good one. */
function checkpointOrFail(run: Run, state: LoopState): string {
  try {
    return saveCheckpoint(run, state.step);
  } catch (error) {
    if (!(error instanceof WriteError)) throw error;
    const previous = state.lastCheckpoint ?? newestCheckpoint(run.spec.ckptDir) ?? "none";
    throw new TrainingFailed(`step ${state.step}: ${error.message}. The last complete checkpoint: ${previous}`);
  }
}

/**
 * The log could not be written (full disk, say): keep the checkpoint guarantees by saving one for
 * the current step (in the checkpoint folder, which may still have room), then stop.
 */
function logFailure(run: Run, state: LoopState, error: WriteError): TrainingFailed {
  let saved = state.lastCheckpoint;
  // Data-parallel: only rank 0 writes the log, and a checkpoint needs every rank: keep the last one.
  if (run.dp === null && state.step > run.startStep && saved !== checkpointPath(run.spec.ckptDir, state.step)) {
    try {
      saved = saveCheckpoint(run, state.step);
    } catch (again) {
      if (!(again instanceof WriteError)) throw again;
      saved = `none saved now (${again.message}); the newest earlier one: ${newestCheckpoint(run.spec.ckptDir) ?? "none"}`;
    }
  }
  return new TrainingFailed(`step ${state.step}: ${error.message}; stopping. Checkpoint: ${saved ?? newestCheckpoint(run.spec.ckptDir) ?? "none"}`);
}

/** The step loop. `shouldStop` is polled between steps (Ctrl-C). */
export async function trainLoop(run: Run, progress: Progress, shouldStop: () => boolean): Promise<RunResult> {
  const o = run.spec;
  const flopsPerStep = trainingStepFlops(run.model.config, o.seq, o.totalBatch);
  const state: LoopState = { step: run.startStep, lastCheckpoint: null, valLoss: null, emaMs: 0, engine: null };
  try {
    if (run.startStep === 0 && run.val !== null) {
      state.valLoss = evaluate(run);
      run.log.append({ step: 0, val_loss: state.valLoss! });
      progress.message(`step 0: val loss ${state.valLoss!.toFixed(4)}`);
    }
    while (state.step < o.steps) {
      if (run.dp === null ? shouldStop() : run.dp.anyRank(shouldStop())) break;
      const started = performance.now();
      const { loss, norm, lr, skipped } = trainStep(run, state);
      state.step += 1;
      const ms = performance.now() - started;
      state.emaMs = state.emaMs === 0 ? ms : 0.9 * state.emaMs + 0.1 * ms;
      const tokensPerS = o.totalBatch / (ms / 1000);
      const comm = run.dp === null ? {} : { comm_ms: round3(run.dp.lastStep.ms), comm_exposed_ms: round3(run.dp.lastStep.exposedMs) };
      run.log.append({ step: state.step, loss, lr, grad_norm: norm, ms, tokens_per_s: tokensPerS, ...comm, ...(skipped === null ? {} : { skipped }) });
      if (skipped !== null) progress.message(`step ${state.step}: update skipped (${skipped})`);
      const etaS = ((o.steps - state.step) * state.emaMs) / 1000;
      progress.step({ step: state.step, steps: o.steps, loss, lr, gradNorm: norm, ms, tokensPerS, etaS, mfu: mfuPercent(flopsPerStep, ms / 1000, run.peak.gflops) / 100, valLoss: state.valLoss });
      afterStep(run, state, progress);
      // Yield to the event loop so a Ctrl-C handler can run between steps.
      await new Promise<void>((r) => setImmediate(r));
    }
    const interrupted = state.step < o.steps;
    if (interrupted && state.step > run.startStep && state.lastCheckpoint !== checkpointPath(o.ckptDir, state.step)) state.lastCheckpoint = checkpointOrFail(run, state);
    run.log.refreshSvg(true);
    run.model.settleParameters();
    return { step: state.step, interrupted, lastCheckpoint: state.lastCheckpoint, finalValLoss: state.valLoss };
  } catch (error) {
    if (error instanceof WriteError) throw logFailure(run, state, error);
    throw error;
  }
}
