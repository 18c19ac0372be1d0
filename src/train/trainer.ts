// A training run: set-up (options, data, model, optimizer, resume) and the step loop with
// gradient accumulation, clipping, schedules, evaluation, samples, checkpoints, logging and
// Ctrl-C handling. Everything that can be wrong with the flags or the data is found in set-up,
// before the first step.
import { existsSync, mkdirSync, unlinkSync } from "node:fs";
import { join, resolve } from "node:path";
import { UsageError } from "../cli/flags.ts";
import { DataError, expandFiles, TokenLoader } from "../data/loader.ts";
import { prepareDataset, SUMMARY_FILE } from "../data/prepare.ts";
import { decode, EOT_TOKEN } from "../data/tokenizer.ts";
import { fmaPeakGflops, matmulLanes, setThreads, threadCount } from "../ffi.ts";
import { CheckpointError } from "../io/llmc.ts";
import { loadWeights } from "../io/load_weights.ts";
import { readLlmtsCheckpoint, writeLlmtsCheckpoint } from "../io/llmts_checkpoint.ts";
import { type GPT2Config, namedConfig, parameterCount } from "../model/config.ts";
import { GPT2 } from "../model/gpt2.ts";
import { AdamW, gradNorm } from "../optim/adamw.ts";
import { checkpointPath, listCheckpoints, pruneCheckpoints, resolveResume } from "./checkpoints.ts";
import { checkOptions, resolveOptions, type TrainOptions } from "./options.ts";
import { Progress } from "./progress.ts";
import { Rng } from "./rng.ts";
import { RunLog } from "./run_log.ts";
import { sampleTokens } from "./sample.ts";
import { learningRate } from "./schedule.ts";

const REPO_ROOT = resolve(import.meta.dir, "..", "..");
export const MOBY_DICK_TEXT = join(REPO_ROOT, "node_modules", "@stdlib", "datasets-moby-dick", "data", "data.txt");
export const MOBY_DICK_CACHE = join(REPO_ROOT, "data", "mobydick");
/**
 * FMA peak per thread per 8 float lanes assumed for MFU when measuring fails: the matmul library's
 * fmaPeakGflops on this machine, idle, 2026-11-28 (133 GFLOP/s per thread with 8-lane FMAs; twice
 * that with the 16-lane AVX-512 FMAs the kernels use where the CPU has them, as it does now —
 * ANCHORS.md's 92–96 predates that).
 */
export const PEAK_GFLOPS_PER_THREAD_8_LANES = 133;

/**
 * The machine's FMA peak at the kernels' vector width, for the MFU figure: the larger of the
 * constant above and a ~100 ms measurement (a measurement taken while other processes compete
 * would understate it).
 */
export function peakGflops(threads: number): { gflops: number; source: string } {
  const lanes = matmulLanes();
  const fallback = PEAK_GFLOPS_PER_THREAD_8_LANES * (lanes / 8) * threads;
  try {
    const gflops = fmaPeakGflops(threads, 100, lanes);
    if (Number.isFinite(gflops) && gflops > fallback) return { gflops, source: `measured, ${lanes}-lane FMA` };
  } catch {
    // fall through to the constant
  }
  return { gflops: fallback, source: `${PEAK_GFLOPS_PER_THREAD_8_LANES * (lanes / 8)} GFLOP/s per thread, ${lanes}-lane FMA` };
}

export class TrainingFailed extends Error {
  override name = "TrainingFailed";
}

export interface Run {
  options: TrainOptions;
  lr: number;
  accumulation: number;
  totalBatch: number;
  model: GPT2;
  optimizer: AdamW;
  train: TokenLoader;
  val: TokenLoader | null;
  sampleRng: Rng;
  log: RunLog;
  startStep: number;
  /** where this run's settings and weights came from, for the banner */
  origin: string;
  dataNote: string;
  /** the denominator of MFU, GFLOP/s, and where it came from */
  peak: { gflops: number; source: string };
}

export interface RunResult {
  /** the step reached */
  step: number;
  interrupted: boolean;
  lastCheckpoint: string | null;
  finalValLoss: number | null;
}

const SEED_STREAMS = { init: 0, data: 0x5eed_da7a, sample: 0x5a3b_1e00 };

/** Resolves everything from the parsed flags; throws UsageError/DataError/CheckpointError before any training. */
export function setupRun(given: Partial<TrainOptions>, progress: (message: string) => void): Run {
  // Resume: the checkpoint supplies the model, the optimizer state and the settings not given.
  let resumed: ReturnType<typeof readLlmtsCheckpoint> | null = null;
  let resumePath: string | null = null;
  if (given.resume !== undefined && given.resume !== null) {
    const ckptDir = given.ckptDir ?? "runs/train";
    resumePath = resolveResume(given.resume, ckptDir);
    resumed = readLlmtsCheckpoint(resumePath, { optimizer: true });
  }
  const saved = (resumed?.state.options ?? null) as Partial<TrainOptions> | null;
  if (resumed !== null && saved === null) throw new CheckpointError(`${resumePath}: holds no training options (not written by bun run train)`);
  const o = resolveOptions(given, saved);

  // The model's shape, without allocating it yet (flag checks come first).
  let config: GPT2Config;
  let initWeights: { config: GPT2Config; params: Float32Array } | null = null;
  if (resumed !== null) config = resumed.config;
  else if (o.init !== null) {
    const path = o.init;
    if (!existsSync(path)) throw new UsageError(`--init: ${path} does not exist`);
    initWeights = loadWeights(path);
    config = initWeights.config;
  } else config = namedConfig(o.model ?? "d4");
  const { accumulation, totalBatch, lr } = checkOptions(o, config.maxT);
  if (resumed !== null && resumed.step >= o.steps) throw new UsageError(`--steps: the checkpoint is already at step ${resumed.step}; raise --steps to train further`);

  // Paths and globs named by flags must exist / match.
  if (o.text !== null && !existsSync(o.text)) throw new UsageError(`--text: ${o.text} does not exist`);
  for (const [flag, patterns] of [["train-data", o.trainData], ["val-data", o.valData]] as const) {
    for (const pattern of patterns ?? []) {
      try {
        expandFiles(pattern, flag);
      } catch (error) {
        if (error instanceof DataError) throw new UsageError(`--${flag}: "${pattern}" matches no files`);
        throw error;
      }
    }
  }

  // Fresh runs refuse to mix with an earlier run's checkpoints.
  if (resumed === null) {
    const earlier = listCheckpoints(o.ckptDir);
    if (earlier.length > 0 && !o.overwrite) {
      throw new UsageError(
        `--ckpt-dir: ${o.ckptDir} holds checkpoints of an earlier run (up to step ${earlier[earlier.length - 1].step}). ` +
          `Continue it with --resume latest, start elsewhere with --ckpt-dir DIR, or replace it with --overwrite`,
      );
    }
  }

  // Data (validated fully here: headers, sizes, ids < V, at least one batch).
  const { trainFiles, valFiles, note } = resolveData(o, progress);
  const loaderOptions = { B: o.batch, T: o.seq, vocabSize: config.V };
  const train = new TokenLoader({ ...loaderOptions, files: trainFiles, shuffle: o.shuffle, seed: o.seed ^ SEED_STREAMS.data, label: "train" });
  const val = valFiles === null ? null : new TokenLoader({ ...loaderOptions, files: valFiles, shuffle: false, seed: 0, label: "val" });
  if (resumed !== null) train.restore(resumed.state.loader);

  // Everything checked: now the work starts.
  if (o.threads !== threadCount()) setThreads(o.threads);
  if (resumed === null && o.overwrite) for (const { path } of listCheckpoints(o.ckptDir)) unlinkSync(path);
  mkdirSync(o.ckptDir, { recursive: true });

  let model: GPT2;
  const hyper = { lr, beta1: o.beta1, beta2: o.beta2, eps: o.eps, weightDecay: o.weightDecay };
  const optimizer = new AdamW(parameterCount(config), hyper);
  const sampleRng = new Rng(o.seed ^ SEED_STREAMS.sample);
  let origin: string;
  if (resumed !== null) {
    model = new GPT2(config, resumed.params);
    optimizer.m.set(resumed.m!);
    optimizer.v.set(resumed.v!);
    optimizer.step = resumed.step;
    if (resumed.state.sampleRng !== undefined) sampleRng.setState(resumed.state.sampleRng);
    origin = `resumed from ${resumePath} at step ${resumed.step}`;
  } else if (initWeights !== null) {
    model = new GPT2(config, initWeights.params);
    origin = `initialised from ${o.init}`;
  } else {
    model = GPT2.init(config, o.seed ^ SEED_STREAMS.init);
    origin = `fresh ${o.model} (seed ${o.seed})`;
  }
  const log = new RunLog(o.log ?? join(o.ckptDir, "log.jsonl"), resumed?.step ?? null);
  const peak = o.peakGflops !== null ? { gflops: o.peakGflops, source: "--peak-gflops" } : peakGflops(o.threads);
  return { options: o, lr, accumulation, totalBatch, model, optimizer, train, val, sampleRng, log, startStep: resumed?.step ?? 0, origin, dataNote: note, peak };
}

function resolveData(o: TrainOptions, progress: (message: string) => void): { trainFiles: string[]; valFiles: string[] | null; note: string } {
  if (o.trainData !== null) return { trainFiles: o.trainData, valFiles: o.valData, note: `train ${o.trainData.join(" ")}${o.valData ? `, val ${o.valData.join(" ")}` : ", no validation data"}` };
  if (o.text !== null) {
    const outDir = join(o.ckptDir, "data");
    const s = prepareDataset({ inputs: [o.text], outDir, valFraction: o.valFraction, shardTokens: 100_000_000, onProgress: () => {} });
    progress(`tokenized ${o.text}: ${s.tokens.toLocaleString("en-US")} tokens in ${s.tokenizeSeconds.toFixed(2)} s → ${outDir}`);
    return { trainFiles: s.trainFiles, valFiles: s.valFiles.length ? s.valFiles : null, note: `${o.text} (${s.trainTokens} train / ${s.valTokens} val tokens)` };
  }
  ensureDefaultCorpus(progress);
  return {
    trainFiles: [join(MOBY_DICK_CACHE, "train_*.bin")],
    valFiles: [join(MOBY_DICK_CACHE, "val_*.bin")],
    note: `Moby-Dick (${MOBY_DICK_CACHE})`,
  };
}

/** Prepares Moby-Dick into MOBY_DICK_CACHE on first use (kept while its prepare.json exists). */
export function ensureDefaultCorpus(progress: (message: string) => void): void {
  if (existsSync(join(MOBY_DICK_CACHE, SUMMARY_FILE))) return;
  if (!existsSync(MOBY_DICK_TEXT)) throw new DataError(`the default corpus ${MOBY_DICK_TEXT} is missing: run bun install, or pass --train-data/--text`);
  progress(`preparing the default corpus (Moby-Dick) into ${MOBY_DICK_CACHE} …`);
  const s = prepareDataset({ inputs: [MOBY_DICK_TEXT], outDir: MOBY_DICK_CACHE, valFraction: 0.1, shardTokens: 100_000_000 });
  progress(`  ${s.tokens.toLocaleString("en-US")} tokens (tokenizing took ${s.tokenizeSeconds.toFixed(2)} s)`);
}

/** Training FLOPs per token: 6·(weights used in matmuls) + attention (nanoGPT's estimate). */
export function flopsPerToken(config: GPT2Config, T: number): number {
  const matmulParams = parameterCount(config) - config.maxT * config.C; // wpe is a lookup
  return 6 * matmulParams + 12 * config.L * config.C * T;
}

function checkpointState(run: Run, step: number): Record<string, unknown> {
  return { options: run.options, lr: run.lr, loader: run.train.state(), sampleRng: run.sampleRng.state(), savedAt: new Date().toISOString() };
}

function saveCheckpoint(run: Run, step: number): string {
  const path = checkpointPath(run.options.ckptDir, step);
  writeLlmtsCheckpoint(path, { config: run.model.config, params: run.model.params, m: run.optimizer.m, v: run.optimizer.v, step, state: checkpointState(run, step) });
  pruneCheckpoints(run.options.ckptDir, run.options.keepLast);
  return path;
}

export function evaluate(run: Run): number | null {
  if (run.val === null) return null;
  const { batch: B, seq: T, valBatches } = run.options;
  const n = Math.min(valBatches, run.val.batchesPerEpoch);
  run.val.reset();
  let sum = 0;
  for (let i = 0; i < n; i++) {
    run.val.next();
    sum += run.model.forward(run.val.inputs, run.val.targets, B, T);
  }
  return sum / n;
}

function sample(run: Run): string {
  const tokens = sampleTokens(run.model, [EOT_TOKEN], run.options.sampleTokens, run.options.temperature, run.sampleRng, run.options.seq);
  return decode(tokens);
}

/** The step loop. `shouldStop` is polled between steps (Ctrl-C). */
export async function trainLoop(run: Run, progress: Progress, shouldStop: () => boolean): Promise<RunResult> {
  const o = run.options;
  const { model, optimizer, train, log } = run;
  const { batch: B, seq: T } = o;
  const scheduleOptions = { ...o, lr: run.lr };
  const flopsPerStep = flopsPerToken(model.config, T) * run.totalBatch;
  const peak = run.peak.gflops * 1e9;
  let lastCheckpoint: string | null = null;
  let valLoss: number | null = null;
  let emaMs = 0;
  const samplingOn = o.sampleTokens > 0;

  if (run.startStep === 0 && run.val !== null) {
    valLoss = evaluate(run);
    log.append({ step: 0, val_loss: valLoss! });
    progress.message(`step 0: val loss ${valLoss!.toFixed(4)}`);
  }
  let step = run.startStep;
  while (step < o.steps) {
    if (shouldStop()) break;
    const started = performance.now();
    model.zeroGrad();
    let lossSum = 0;
    for (let micro = 0; micro < run.accumulation; micro++) {
      train.next();
      lossSum += model.forward(train.inputs, train.targets, B, T);
      model.backward();
    }
    const loss = lossSum / run.accumulation;
    // The backward pass of each micro-batch adds the gradient of its mean loss: divide by the
    // number of micro-batches for the gradient of the mean over the whole update.
    const norm = gradNorm(model.grads) / run.accumulation;
    if (!Number.isFinite(loss) || !Number.isFinite(norm)) {
      const what = !Number.isFinite(loss) ? `loss is ${loss}` : `gradient norm is ${norm}`;
      throw new TrainingFailed(`step ${step + 1}: the ${what}; stopping (last checkpoint: ${lastCheckpoint ?? "none this session"}). Try a lower --lr or --grad-clip`);
    }
    let scale = 1 / run.accumulation;
    if (o.gradClip > 0 && norm > o.gradClip) scale *= o.gradClip / norm;
    const lr = learningRate(step, scheduleOptions);
    optimizer.update(model.params, model.grads, lr, scale);
    step += 1;
    const ms = performance.now() - started;
    emaMs = emaMs === 0 ? ms : 0.9 * emaMs + 0.1 * ms;
    const tokensPerS = run.totalBatch / (ms / 1000);
    log.append({ step, loss, lr, grad_norm: norm, ms, tokens_per_s: tokensPerS });
    progress.step({ step, steps: o.steps, loss, lr, gradNorm: norm, ms, tokensPerS, etaS: ((o.steps - step) * emaMs) / 1000, mfu: flopsPerStep / (ms / 1000) / peak, valLoss });

    const last = step === o.steps;
    if (run.val !== null && ((o.valEvery > 0 && step % o.valEvery === 0) || last)) {
      valLoss = evaluate(run);
      log.append({ step, val_loss: valLoss! });
      progress.message(`step ${step}: val loss ${valLoss!.toFixed(4)}`);
    }
    if (samplingOn && ((o.sampleEvery > 0 && step % o.sampleEvery === 0) || last)) {
      const text = sample(run).replaceAll("\r", "");
      progress.message(`step ${step} sample:\n${text.split("\n").map((line) => `  │ ${line}`).join("\n")}`);
    }
    if ((o.ckptEvery > 0 && step % o.ckptEvery === 0) || last) {
      lastCheckpoint = saveCheckpoint(run, step);
      if (!last) progress.message(`step ${step}: saved ${lastCheckpoint}`);
    }
    log.refreshSvg(last);
    // Yield to the event loop so a Ctrl-C handler can run between steps.
    await new Promise<void>((r) => setImmediate(r));
  }
  const interrupted = step < o.steps;
  if (interrupted && step > run.startStep && lastCheckpoint !== checkpointPath(o.ckptDir, step)) lastCheckpoint = saveCheckpoint(run, step);
  log.refreshSvg(true);
  return { step, interrupted, lastCheckpoint, finalValLoss: valLoss };
}
