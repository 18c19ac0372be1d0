// `bun run train` flags: one table gives each flag its default, its help line and its parser, so
// --help, validation and resume (which re-uses a checkpoint's settings for flags not given) agree.
import { parseArgs } from "node:util";
import { defaultThreadCount } from "../ffi.ts";
import { NAMED_CONFIGS } from "../model/config.ts";
import { choiceFlag, intFlag, nonEmptyFlag, numberFlag, UsageError } from "../cli/flags.ts";

export const SCHEDULES = ["constant", "cosine", "linear", "wsd"] as const;
export type Schedule = (typeof SCHEDULES)[number];

/** The default recipe for a freshly initialised model (see RECIPE_NOTE). */
export const RECIPE = { model: "d4", lrScratch: 1e-4, lrFinetune: 1e-4 };

export const RECIPE_NOTE = `Default recipe: a fresh d4 (16M parameters, most of them the embedding), B=8, T=64, 2500 steps
(1.28M tokens, ~4.5 passes over Moby-Dick's 286k training tokens), AdamW with the seed design's
defaults (lr 1e-4, betas 0.9/0.999, eps 1e-8, no weight decay, constant schedule), gradient
clipping at 1: ~0.15-0.18 s/step, 7-8 minutes on an idle 2-core machine (10+ while other work
shares it). Val loss 10.89 → 5.91 (step 500) → 5.55 (1000) → 5.25 (2000) → 5.20 (2500), still
falling. lr 1e-3 falls faster at first (6.38 vs 7.15 at step 120; 5.17 best at step 2000) but then
overfits this small corpus (5.22 at 2500), so the default stays at the seed design's 1e-4, for
fresh models and fine-tuning (--init) alike. --lr overrides it.`;

export interface TrainOptions {
  model: string | null;
  init: string | null;
  trainData: string[] | null;
  valData: string[] | null;
  text: string | null;
  valFraction: number;
  shuffle: boolean;
  batch: number;
  seq: number;
  steps: number;
  totalBatch: number | null;
  lr: number | null;
  schedule: Schedule;
  warmup: number;
  lrMinFrac: number;
  decayFrac: number;
  weightDecay: number;
  beta1: number;
  beta2: number;
  eps: number;
  gradClip: number;
  seed: number;
  threads: number;
  valEvery: number;
  valBatches: number;
  sampleEvery: number;
  sampleTokens: number;
  temperature: number;
  ckptDir: string;
  ckptEvery: number;
  keepLast: number;
  resume: string | null;
  overwrite: boolean;
  log: string | null;
  peakGflops: number | null;
}

type Key = keyof TrainOptions;

interface FlagSpec {
  key: Key;
  flag: string;
  group: string;
  /** shown in --help; null = no default (optional flag) */
  def: string | null;
  help: string;
  boolean?: boolean;
  multiple?: boolean;
  parse: (value: string) => unknown;
}

const int = (flag: string, min: number, max?: number) => (v: string) => intFlag(flag, v, min, max);
const num = (flag: string, min: number, max: number, o: { minExclusive?: boolean; maxExclusive?: boolean } = {}) => (v: string) => numberFlag(flag, v, min, max, o);
const str = (flag: string) => (v: string) => nonEmptyFlag(flag, v);
const modelNames = Object.keys(NAMED_CONFIGS);

export const FLAGS: FlagSpec[] = [
  { key: "model", flag: "model", group: "model", def: RECIPE.model, help: `fresh GPT-2 of this size (${modelNames.join("|")}), seeded by --seed`, parse: (v) => choiceFlag("model", v, modelNames) },
  { key: "init", flag: "init", group: "model", def: null, help: "start from these weights instead (llm.c model file, llm.ts checkpoint, or Hugging Face folder)", parse: str("init") },
  { key: "trainData", flag: "train-data", group: "data", def: null, multiple: true, help: "llm.c token files (glob; repeatable). Default: Moby-Dick, prepared once into data/mobydick/", parse: str("train-data") },
  { key: "valData", flag: "val-data", group: "data", def: null, multiple: true, help: "validation token files (glob; repeatable)", parse: str("val-data") },
  { key: "text", flag: "text", group: "data", def: null, help: "raw text file or folder, tokenized on the fly into <ckpt-dir>/data/", parse: str("text") },
  { key: "valFraction", flag: "val-fraction", group: "data", def: "0.1", help: "with --text: fraction of tokens (the last ones) held out for validation", parse: num("val-fraction", 0, 1, { maxExclusive: true }) },
  { key: "shuffle", flag: "no-shuffle", group: "data", def: null, boolean: true, help: "serve batches in file order (llm.c's unshuffled loader) instead of a seeded shuffle", parse: () => false },
  { key: "batch", flag: "batch", group: "optimisation", def: "8", help: "B: sequences per micro-batch", parse: int("batch", 1, 1 << 16) },
  { key: "seq", flag: "seq", group: "optimisation", def: "64", help: "T: tokens per sequence (≤ the model's maxT)", parse: int("seq", 1, 1 << 16) },
  { key: "steps", flag: "steps", group: "optimisation", def: "2500", help: "optimizer updates for the whole run (a resumed run stops at the same step)", parse: int("steps", 1) },
  { key: "totalBatch", flag: "total-batch", group: "optimisation", def: null, help: "tokens per update (default B·T); gradient accumulation = total/(B·T), which must divide", parse: int("total-batch", 1) },
  { key: "lr", flag: "lr", group: "optimisation", def: null, help: `peak learning rate (default ${RECIPE.lrScratch}; see below)`, parse: num("lr", 0, 10, { minExclusive: true }) },
  { key: "schedule", flag: "schedule", group: "optimisation", def: "constant", help: `learning-rate schedule after warmup: ${SCHEDULES.join("|")}`, parse: (v) => choiceFlag("schedule", v, SCHEDULES) },
  { key: "warmup", flag: "warmup", group: "optimisation", def: "0", help: "linear warmup steps (lr·(s+1)/warmup)", parse: int("warmup", 0) },
  { key: "lrMinFrac", flag: "lr-min-frac", group: "optimisation", def: "0.1", help: "cosine/linear/wsd decay down to lr × this", parse: num("lr-min-frac", 0, 1) },
  { key: "decayFrac", flag: "decay-frac", group: "optimisation", def: "0.2", help: "wsd: fraction of the steps spent decaying at the end", parse: num("decay-frac", 0, 1, { minExclusive: true }) },
  { key: "weightDecay", flag: "weight-decay", group: "optimisation", def: "0", help: "AdamW decoupled weight decay", parse: num("weight-decay", 0, 10) },
  { key: "beta1", flag: "beta1", group: "optimisation", def: "0.9", help: "AdamW β1", parse: num("beta1", 0, 1, { maxExclusive: true }) },
  { key: "beta2", flag: "beta2", group: "optimisation", def: "0.999", help: "AdamW β2", parse: num("beta2", 0, 1, { maxExclusive: true }) },
  { key: "eps", flag: "eps", group: "optimisation", def: "1e-8", help: "AdamW ε", parse: num("eps", 0, 1, { minExclusive: true }) },
  { key: "gradClip", flag: "grad-clip", group: "optimisation", def: "1", help: "clip the global gradient norm to this (0 = off)", parse: num("grad-clip", 0, 1e9) },
  { key: "seed", flag: "seed", group: "optimisation", def: "1337", help: "seeds the init, the data shuffle and sampling", parse: int("seed", 0, 0xffffffff) },
  { key: "threads", flag: "threads", group: "optimisation", def: null, help: `kernel threads (default LLMTS_THREADS or the core count, here ${defaultThreadCount()})`, parse: int("threads", 1, 64) },
  { key: "valEvery", flag: "val-every", group: "evaluation", def: "100", help: "validation loss every N steps (0 = never; also at the start and end)", parse: int("val-every", 0) },
  { key: "valBatches", flag: "val-batches", group: "evaluation", def: "8", help: "batches per validation (capped at what the val files hold)", parse: int("val-batches", 1) },
  { key: "sampleEvery", flag: "sample-every", group: "evaluation", def: "500", help: "print a sample every N steps (0 = never; also at the end)", parse: int("sample-every", 0) },
  { key: "sampleTokens", flag: "sample-tokens", group: "evaluation", def: "48", help: "tokens per sample (0 disables sampling)", parse: int("sample-tokens", 0, 100000) },
  { key: "temperature", flag: "temperature", group: "evaluation", def: "0.8", help: "sampling temperature (0 = greedy)", parse: num("temperature", 0, 100) },
  { key: "ckptDir", flag: "ckpt-dir", group: "state", def: "runs/train", help: "checkpoint folder (ckpt_<step>.llmts)", parse: str("ckpt-dir") },
  { key: "ckptEvery", flag: "ckpt-every", group: "state", def: "500", help: "checkpoint every N steps (0 = only at the end and on Ctrl-C)", parse: int("ckpt-every", 0) },
  { key: "keepLast", flag: "keep-last", group: "state", def: "2", help: "keep this many newest checkpoints (0 = keep all)", parse: int("keep-last", 0) },
  { key: "resume", flag: "resume", group: "state", def: null, help: 'continue from a checkpoint path, or "latest" in --ckpt-dir (flags not given come from the checkpoint)', parse: str("resume") },
  { key: "overwrite", flag: "overwrite", group: "state", def: null, boolean: true, help: "start fresh even if --ckpt-dir holds checkpoints of an earlier run (they are deleted)", parse: () => true },
  { key: "log", flag: "log", group: "output", def: null, help: "JSONL log (default <ckpt-dir>/log.jsonl); an SVG loss curve is written beside it (.svg)", parse: str("log") },
  { key: "peakGflops", flag: "peak-gflops", group: "output", def: null, help: "machine peak for the MFU figure (default: the larger of 133 GFLOP/s × threads × lanes/8 and a 0.1 s FMA measurement at the kernels' vector width)", parse: num("peak-gflops", 0, 1e9, { minExclusive: true }) },
];

const DEFAULTS: TrainOptions = {
  model: null, init: null, trainData: null, valData: null, text: null, valFraction: 0.1, shuffle: true,
  batch: 0, seq: 0, steps: 0, totalBatch: null, lr: null, schedule: "constant", warmup: 0, lrMinFrac: 0, decayFrac: 0,
  weightDecay: 0, beta1: 0, beta2: 0, eps: 0, gradClip: 0, seed: 0, threads: 0, valEvery: 0, valBatches: 0,
  sampleEvery: 0, sampleTokens: 0, temperature: 0, ckptDir: "", ckptEvery: 0, keepLast: 0, resume: null, overwrite: false,
  log: null, peakGflops: null,
};

const METAVAR: Partial<Record<Key, string>> = {
  model: "NAME", init: "PATH", trainData: "GLOB", valData: "GLOB", text: "PATH", valFraction: "X", lr: "X", schedule: "NAME",
  lrMinFrac: "X", decayFrac: "X", weightDecay: "X", beta1: "X", beta2: "X", eps: "X", gradClip: "X", temperature: "X",
  ckptDir: "DIR", resume: "PATH|latest", log: "PATH", peakGflops: "X",
};

export function helpText(): string {
  const lines = ["usage: bun run train [options]", "", "Trains GPT-2 on the CPU. With no options: a fresh d4 model on Moby-Dick, 7–10 minutes on 2 cores.", ""];
  let group = "";
  for (const f of FLAGS) {
    if (f.group !== group) {
      group = f.group;
      lines.push(`${group}:`);
    }
    const name = f.boolean ? `--${f.flag}` : `--${f.flag} ${METAVAR[f.key] ?? "N"}`;
    const def = f.def === null ? "" : `  (default ${f.def})`;
    lines.push(`  ${name.padEnd(22)} ${f.help}${def}`);
  }
  lines.push("  -h, --help             this help", "", RECIPE_NOTE, "",
    "Exit codes: 0 done; 1 failure (including a NaN/Inf loss); 2 bad flags (nothing was done);",
    "130 interrupted by Ctrl-C (a checkpoint was saved; continue with --resume latest).", "");
  return lines.join("\n");
}

export interface ParsedArgs {
  help: boolean;
  /** flags given on the command line, parsed and validated */
  given: Partial<TrainOptions>;
}

/** Parses and validates argv: any problem throws UsageError naming the flag. */
export function parseTrainArgs(argv: string[]): ParsedArgs {
  const options: Record<string, { type: "string" | "boolean"; multiple?: boolean; short?: string }> = { help: { type: "boolean", short: "h" } };
  for (const f of FLAGS) options[f.flag] = { type: f.boolean ? "boolean" : "string", ...(f.multiple ? { multiple: true } : {}) };
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({ args: argv, options, strict: true, allowPositionals: false });
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  const values = parsed.values as Record<string, string | string[] | boolean | undefined>;
  const given: Partial<TrainOptions> = {};
  for (const f of FLAGS) {
    const raw = values[f.flag];
    if (raw === undefined) continue;
    if (f.boolean) (given as Record<string, unknown>)[f.key] = f.parse("");
    else if (f.multiple) (given as Record<string, unknown>)[f.key] = (raw as string[]).map((v) => f.parse(v));
    else (given as Record<string, unknown>)[f.key] = f.parse(raw as string);
  }
  if (given.model !== undefined && given.init !== undefined) throw new UsageError("--model and --init: give one (a fresh model of a size, or weights to start from)");
  if (given.resume !== undefined && (given.model !== undefined || given.init !== undefined)) throw new UsageError("--resume restores the model from the checkpoint: drop --model/--init");
  if (given.text !== undefined && (given.trainData !== undefined || given.valData !== undefined)) throw new UsageError("--text and --train-data/--val-data: give raw text or token files, not both");
  if (given.valData !== undefined && given.trainData === undefined) throw new UsageError("--val-data needs --train-data");
  if (given.resume !== undefined && given.overwrite) throw new UsageError("--resume and --overwrite contradict each other");
  return { help: values.help === true, given };
}

/** Full options: given flags, else the checkpoint's (when resuming), else the defaults. */
export function resolveOptions(given: Partial<TrainOptions>, fromCheckpoint: Partial<TrainOptions> | null): TrainOptions {
  const out = { ...DEFAULTS } as Record<string, unknown>;
  for (const f of FLAGS) {
    if (f.key in given) out[f.key] = given[f.key];
    else if (fromCheckpoint !== null && f.key in fromCheckpoint && !RUN_LOCAL.has(f.key)) out[f.key] = fromCheckpoint[f.key];
    else if (f.def !== null) out[f.key] = f.parse(f.def);
  }
  const o = out as unknown as TrainOptions;
  if (given.resume !== undefined) o.model = fromCheckpoint?.model ?? null;
  if (o.init !== null) o.model = null;
  o.threads ??= 0;
  if (o.threads === 0) o.threads = defaultThreadCount();
  return o;
}

/** Settings of the invocation, never inherited from a checkpoint. */
const RUN_LOCAL = new Set<Key>(["resume", "overwrite", "threads"]);

/** Cross-flag checks that need resolved values (still before any work). */
export function checkOptions(o: TrainOptions, maxT: number): { accumulation: number; totalBatch: number; lr: number } {
  if (o.seq > maxT) throw new UsageError(`--seq: ${o.seq} exceeds the model's maximum sequence length (${maxT})`);
  const microTokens = o.batch * o.seq;
  const totalBatch = o.totalBatch ?? microTokens;
  if (totalBatch % microTokens !== 0) throw new UsageError(`--total-batch: ${totalBatch} tokens is not a multiple of --batch × --seq = ${o.batch}×${o.seq} = ${microTokens}`);
  if (o.warmup > o.steps) throw new UsageError(`--warmup: ${o.warmup} steps is more than --steps (${o.steps})`);
  const lr = o.lr ?? (o.init !== null ? RECIPE.lrFinetune : RECIPE.lrScratch);
  return { accumulation: totalBatch / microTokens, totalBatch, lr };
}
