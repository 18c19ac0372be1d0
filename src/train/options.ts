// `bun run train` flags: one table gives each flag its default, its help line, its parser and its
// kind, so --help, validation and the run spec (run_spec.ts) agree.
//   arithmetic  decides what the run computes (model, data, batch, optimizer, schedule, seed):
//               fixed when the run starts; on resume a flag may repeat the saved value, not change it
//   cadence     what the run does around the arithmetic (how long, how often it evaluates, samples,
//               checkpoints, where it logs): saved in the run spec, may change on resume
//   invocation  this process only (threads, the MFU peak, resume/overwrite): never saved
import { availableParallelism } from "node:os";
import { parseArgs } from "node:util";
import { UsageError } from "../base/errors.ts";
import { choiceFlag, intFlag, nonEmptyFlag, numberFlag } from "../base/flag_values.ts";
import { MATMUL_PRECISIONS, type MatmulPrecision, maxThreads } from "../ffi.ts";
import { NAMED_CONFIGS } from "../model/config.ts";

export const SCHEDULES = ["constant", "cosine", "linear", "wsd"] as const;
export type Schedule = (typeof SCHEDULES)[number];

export const RECIPE_NOTE = `Default recipe: a fresh d4 (16M parameters, most of them the embedding), B=8, T=64, 2500 steps
(1.28M tokens, ~4.5 passes over Moby-Dick's 286k training tokens), AdamW with the seed design's
defaults (lr 1e-4, betas 0.9/0.999, eps 1e-8, no weight decay, constant schedule), gradient
clipping at 1, for fresh models and fine-tuning (--init) alike; --lr overrides it. Measured: val
loss 10.89 → 5.91 (step 500) → 5.55 (1000) → 5.25 (2000) → 5.20 (2500), still falling; lr 1e-3
falls faster at first but overfits this small corpus (5.22 at step 2500). Speed: see the README.`;

/**
 * The settings a flag gives and the run spec keeps as they are (run_spec.ts adds the resolved
 * model, data and rank count). Arithmetic first, then cadence.
 */
export interface SpecSettings {
  // ---- arithmetic: fixed for the whole run ----
  shuffle: boolean;
  /** sequences per micro-batch on each rank */
  batch: number;
  seq: number;
  /** tokens per optimizer update over all ranks (a multiple of batch·seq·ranks) */
  totalBatch: number;
  lr: number;
  schedule: Schedule;
  warmup: number;
  lrMinFrac: number;
  decayFrac: number;
  weightDecay: number;
  beta1: number;
  beta2: number;
  eps: number;
  gradClip: number;
  /** skip an update whose loss / gradient norm z-score exceeds this (0 = off; outliers.ts) */
  skipLossZ: number;
  skipGradZ: number;
  /** the packed matmuls' operand precision (setMatmulPrecision in src/ffi.ts) */
  matmulPrecision: MatmulPrecision;
  seed: number;
  // ---- cadence: may change on resume ----
  steps: number;
  valEvery: number;
  valBatches: number;
  sampleEvery: number;
  sampleTokens: number;
  temperature: number;
  ckptDir: string;
  ckptEvery: number;
  keepLast: number;
  /** the JSONL log; the SVG loss curve goes beside it */
  log: string;
}

/** The flags as parsed from the command line (raw: the run spec is built from them in run_spec.ts). */
export interface TrainFlags extends SpecSettings {
  // ---- resolved into the run spec's model and data ----
  model: string;
  init: string;
  trainData: string[];
  valData: string[];
  text: string;
  valFraction: number;
  // ---- invocation: this process only ----
  threads: number;
  peakGflops: number;
  resume: string;
  overwrite: boolean;
  /** data-parallel optimizer under mpirun: 0 replicated AdamW, 1 ZeRO-1 sharded moments */
  zero: 0 | 1;
}

export type FlagKey = keyof TrainFlags;
export type FlagKind = "arithmetic" | "cadence" | "invocation";

export interface FlagSpec {
  key: FlagKey;
  flag: string;
  group: string;
  kind: FlagKind;
  /** the default (shown in --help); null = no default: absent unless given */
  def: TrainFlags[FlagKey] | null;
  /** what --help says instead of a default, when the default is derived */
  defNote?: string;
  help: string;
  boolean?: boolean;
  multiple?: boolean;
  metavar?: string;
  parse: (value: string) => unknown;
}

const int = (flag: string, min: number, max?: number) => (v: string) => intFlag(flag, v, min, max);
const num = (flag: string, min: number, max: number, o: { minExclusive?: boolean; maxExclusive?: boolean } = {}) => (v: string) => numberFlag(flag, v, min, max, o);
const str = (flag: string) => (v: string) => nonEmptyFlag(flag, v);
const modelNames = Object.keys(NAMED_CONFIGS);

export const FLAGS: readonly FlagSpec[] = [
  { key: "model", flag: "model", group: "model", kind: "arithmetic", def: "d4", metavar: "NAME", help: `fresh GPT-2 of this size (${modelNames.join("|")}), seeded by --seed`, parse: (v) => choiceFlag("model", v, modelNames) },
  { key: "init", flag: "init", group: "model", kind: "arithmetic", def: null, metavar: "PATH", help: "start from these weights instead (llm.c model file, llm.ts checkpoint, Hugging Face folder or run folder)", parse: str("init") },
  { key: "trainData", flag: "train-data", group: "data", kind: "arithmetic", def: null, multiple: true, metavar: "GLOB", defNote: "Moby-Dick, prepared once into data/mobydick/", help: "llm.c token files (glob; repeatable)", parse: str("train-data") },
  { key: "valData", flag: "val-data", group: "data", kind: "arithmetic", def: null, multiple: true, metavar: "GLOB", help: "validation token files (glob; repeatable)", parse: str("val-data") },
  { key: "text", flag: "text", group: "data", kind: "arithmetic", def: null, metavar: "PATH", help: "raw text file or folder, tokenized into <ckpt-dir>/data/", parse: str("text") },
  { key: "valFraction", flag: "val-fraction", group: "data", kind: "arithmetic", def: 0.1, metavar: "X", help: "with --text: fraction of tokens (the last ones) held out for validation", parse: num("val-fraction", 0, 1, { maxExclusive: true }) },
  { key: "shuffle", flag: "no-shuffle", group: "data", kind: "arithmetic", def: true, boolean: true, help: "serve batches in file order (llm.c's unshuffled loader) instead of a seeded shuffle", parse: () => false },
  { key: "batch", flag: "batch", group: "optimisation", kind: "arithmetic", def: 8, help: "B: sequences per micro-batch (per rank under mpirun)", parse: int("batch", 1, 1 << 16) },
  { key: "seq", flag: "seq", group: "optimisation", kind: "arithmetic", def: 64, help: "T: tokens per sequence (≤ the model's maxT)", parse: int("seq", 1, 1 << 16) },
  { key: "totalBatch", flag: "total-batch", group: "optimisation", kind: "arithmetic", def: null, defNote: "B·T·ranks", help: "tokens per update over all ranks; gradient accumulation = total/(B·T·ranks), which must divide", parse: int("total-batch", 1) },
  { key: "lr", flag: "lr", group: "optimisation", kind: "arithmetic", def: 1e-4, metavar: "X", help: "peak learning rate (see the recipe below)", parse: num("lr", 0, 10, { minExclusive: true }) },
  { key: "schedule", flag: "schedule", group: "optimisation", kind: "arithmetic", def: "constant", metavar: "NAME", help: `learning-rate schedule after warmup: ${SCHEDULES.join("|")}`, parse: (v) => choiceFlag("schedule", v, SCHEDULES) },
  { key: "warmup", flag: "warmup", group: "optimisation", kind: "arithmetic", def: 0, help: "linear warmup steps (lr·(s+1)/warmup)", parse: int("warmup", 0) },
  { key: "lrMinFrac", flag: "lr-min-frac", group: "optimisation", kind: "arithmetic", def: 0.1, metavar: "X", help: "cosine/linear/wsd decay down to lr × this", parse: num("lr-min-frac", 0, 1) },
  { key: "decayFrac", flag: "decay-frac", group: "optimisation", kind: "arithmetic", def: 0.2, metavar: "X", help: "wsd: fraction of the steps spent decaying at the end", parse: num("decay-frac", 0, 1, { minExclusive: true }) },
  { key: "weightDecay", flag: "weight-decay", group: "optimisation", kind: "arithmetic", def: 0, metavar: "X", help: "AdamW decoupled weight decay", parse: num("weight-decay", 0, 10) },
  { key: "beta1", flag: "beta1", group: "optimisation", kind: "arithmetic", def: 0.9, metavar: "X", help: "AdamW β1", parse: num("beta1", 0, 1, { maxExclusive: true }) },
  { key: "beta2", flag: "beta2", group: "optimisation", kind: "arithmetic", def: 0.999, metavar: "X", help: "AdamW β2", parse: num("beta2", 0, 1, { maxExclusive: true }) },
  { key: "eps", flag: "eps", group: "optimisation", kind: "arithmetic", def: 1e-8, metavar: "X", help: "AdamW ε", parse: num("eps", 0, 1, { minExclusive: true }) },
  { key: "gradClip", flag: "grad-clip", group: "optimisation", kind: "arithmetic", def: 1, metavar: "X", help: "clip the global gradient norm to this (0 = off)", parse: num("grad-clip", 0, 1e9) },
  { key: "skipLossZ", flag: "skip-loss-z", group: "optimisation", kind: "arithmetic", def: 0, metavar: "X", help: "skip the update when the loss is more than X std above the last 128 steps' (0 = off)", parse: num("skip-loss-z", 0, 1e6) },
  { key: "skipGradZ", flag: "skip-grad-z", group: "optimisation", kind: "arithmetic", def: 0, metavar: "X", help: "skip the update when the gradient norm is more than X std above the last 128 steps' (0 = off)", parse: num("skip-grad-z", 0, 1e6) },
  { key: "matmulPrecision", flag: "matmul-precision", group: "optimisation", kind: "arithmetic", def: "fp32", metavar: "P", help: "matmul operands: fp32, or bf16 (rounded to bf16 when packed, summed in fp32; needs AVX512_BF16)", parse: (v) => choiceFlag("matmul-precision", v, MATMUL_PRECISIONS) },
  { key: "seed", flag: "seed", group: "optimisation", kind: "arithmetic", def: 1337, help: "seeds the init, the data shuffle and sampling", parse: int("seed", 0, 0xffffffff) },
  { key: "steps", flag: "steps", group: "optimisation", kind: "cadence", def: 2500, help: "optimizer updates for the whole run (raise it on --resume to train further)", parse: int("steps", 1) },
  { key: "valEvery", flag: "val-every", group: "evaluation", kind: "cadence", def: 100, help: "validation loss every N steps (0 = never; also at the start and end)", parse: int("val-every", 0) },
  { key: "valBatches", flag: "val-batches", group: "evaluation", kind: "cadence", def: 8, help: "batches per validation (capped at what the val files hold)", parse: int("val-batches", 1) },
  { key: "sampleEvery", flag: "sample-every", group: "evaluation", kind: "cadence", def: 500, help: "print a sample every N steps (0 = never; also at the end)", parse: int("sample-every", 0) },
  { key: "sampleTokens", flag: "sample-tokens", group: "evaluation", kind: "cadence", def: 48, help: "tokens per sample (0 disables sampling)", parse: int("sample-tokens", 0, 100000) },
  { key: "temperature", flag: "temperature", group: "evaluation", kind: "cadence", def: 0.8, metavar: "X", help: "sampling temperature (0 = greedy)", parse: num("temperature", 0, 100) },
  { key: "ckptDir", flag: "ckpt-dir", group: "state", kind: "cadence", def: "runs/train", metavar: "DIR", help: "checkpoint folder (ckpt_<step>.llmts)", parse: str("ckpt-dir") },
  { key: "ckptEvery", flag: "ckpt-every", group: "state", kind: "cadence", def: 500, help: "checkpoint every N steps (0 = only at the end and on Ctrl-C)", parse: int("ckpt-every", 0) },
  { key: "keepLast", flag: "keep-last", group: "state", kind: "cadence", def: 2, help: "keep this many newest checkpoints (0 = keep all)", parse: int("keep-last", 0) },
  { key: "resume", flag: "resume", group: "state", kind: "invocation", def: null, metavar: "PATH|latest", help: 'continue from a checkpoint path, or "latest" in --ckpt-dir (the run spec comes from the checkpoint)', parse: str("resume") },
  { key: "overwrite", flag: "overwrite", group: "state", kind: "invocation", def: false, boolean: true, help: "start fresh even if --ckpt-dir holds checkpoints of an earlier run (they are deleted)", parse: () => true },
  { key: "log", flag: "log", group: "output", kind: "cadence", def: null, metavar: "PATH", defNote: "<ckpt-dir>/log.jsonl", help: "JSONL log; an SVG loss curve is written beside it (.svg)", parse: str("log") },
  { key: "threads", flag: "threads", group: "machine", kind: "invocation", def: null, defNote: `LLMTS_THREADS or the core count, here ${availableParallelism()}; under mpirun the cores divided among the node's ranks`, help: "kernel threads (per rank)", parse: (v: string) => intFlag("threads", v, 1, maxThreads()) },
  { key: "peakGflops", flag: "peak-gflops", group: "machine", kind: "invocation", def: null, metavar: "X", defNote: "measured at start-up", help: "the machine's peak for the MFU figure, GFLOP/s (under mpirun: all ranks together)", parse: num("peak-gflops", 0, 1e9, { minExclusive: true }) },
];

/**
 * The flags that matter only under mpirun (data-parallel ranks, docs/distributed.md). Parsed and
 * listed in --help with the others; a table of their own so that a one-process run's table
 * (FLAGS, and what its tests enumerate) is unchanged by them.
 */
export const DATA_PARALLEL_FLAGS: readonly FlagSpec[] = [
  { key: "zero", flag: "zero", group: "data parallel (mpirun -np N bun run train)", kind: "invocation", def: null, defNote: "1 with more than one rank", metavar: "0|1", help: "0: every rank holds all AdamW moments; 1 (ZeRO-1): each rank holds and updates 1/N of them", parse: (v) => Number(choiceFlag("zero", v, ["0", "1"])) },
];

/** Every flag bun run train takes. */
export const ALL_FLAGS: readonly FlagSpec[] = [...FLAGS, ...DATA_PARALLEL_FLAGS];

export const FLAG_BY_KEY = Object.fromEntries(ALL_FLAGS.map((f) => [f.key, f])) as Record<FlagKey, FlagSpec>;

/** The defaults of the flags that have one (the run spec's starting point; injectable in tests). */
export type FlagDefaults = Partial<TrainFlags>;
export const DEFAULTS: Readonly<FlagDefaults> = Object.freeze(
  Object.fromEntries(FLAGS.filter((f) => f.def !== null).map((f) => [f.key, f.def])) as FlagDefaults,
);

export function helpText(): string {
  const lines = ["usage: bun run train [options]", "", `Trains GPT-2 on the CPU. With no options: a fresh ${DEFAULTS.model} model on Moby-Dick.`, ""];
  let group = "";
  for (const f of ALL_FLAGS) {
    if (f.group !== group) {
      group = f.group;
      lines.push(`${group}:`);
    }
    const name = f.boolean ? `--${f.flag}` : `--${f.flag} ${f.metavar ?? "N"}`;
    const def = f.defNote !== undefined ? `  (default ${f.defNote})` : f.def === null || f.boolean ? "" : `  (default ${f.def})`;
    lines.push(`  ${name.padEnd(22)} ${f.help}${def}`);
  }
  lines.push("  -h, --help             this help", "", RECIPE_NOTE, "",
    "Resume: `--resume latest` continues the run in --ckpt-dir with the run spec saved in its checkpoint.",
    "Arithmetic flags (model, data, batch, optimizer, schedule, seed) may repeat the saved values but",
    "not change them; --steps, the evaluation/sample/checkpoint cadence, --log and --threads may change.", "",
    "Data parallel: `mpirun -np N bun run train …` trains one model on N ranks (docs/distributed.md):",
    "--batch is per rank, --total-batch over all ranks; rank 0 writes the log, samples and checkpoints.",
    "A checkpoint resumes on any number of ranks that divides its B×ranks sequences per micro-batch.",
    "Ctrl-C on mpirun saves a checkpoint if mpirun waits long enough: mpirun --mca odls_base_sigkill_timeout 30 …", "",
    "Exit codes: 0 done; 1 failure (including a NaN/Inf loss); 2 bad flags or input (nothing was done);",
    "130 interrupted by Ctrl-C (a checkpoint was saved; continue with --resume latest).", "");
  return lines.join("\n");
}

export interface ParsedArgs {
  help: boolean;
  /** flags given on the command line, parsed and validated */
  given: Partial<TrainFlags>;
}

/** Parses and validates argv: any problem throws UsageError naming the flag. */
export function parseTrainArgs(argv: string[]): ParsedArgs {
  const options: Record<string, { type: "string" | "boolean"; multiple?: boolean; short?: string }> = { help: { type: "boolean", short: "h" } };
  for (const f of ALL_FLAGS) options[f.flag] = { type: f.boolean ? "boolean" : "string", ...(f.multiple ? { multiple: true } : {}) };
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({ args: argv, options, strict: true, allowPositionals: false });
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  const values = parsed.values as Record<string, string | string[] | boolean | undefined>;
  const given: Partial<TrainFlags> = {};
  for (const f of ALL_FLAGS) {
    const raw = values[f.flag];
    if (raw === undefined) continue;
    if (f.boolean) (given as Record<string, unknown>)[f.key] = f.parse("");
    else if (f.multiple) (given as Record<string, unknown>)[f.key] = (raw as string[]).map((v) => f.parse(v));
    else (given as Record<string, unknown>)[f.key] = f.parse(raw as string);
  }
  if (given.model !== undefined && given.init !== undefined) throw new UsageError("--model and --init: give one (a fresh model of a size, or weights to start from)");
  if (given.text !== undefined && (given.trainData !== undefined || given.valData !== undefined)) throw new UsageError("--text and --train-data/--val-data: give raw text or token files, not both");
  if (given.valData !== undefined && given.trainData === undefined) throw new UsageError("--val-data needs --train-data");
  if (given.valFraction !== undefined && given.text === undefined) throw new UsageError("--val-fraction applies to --text only");
  if (given.resume !== undefined && given.overwrite) throw new UsageError("--resume and --overwrite contradict each other");
  return { help: values.help === true, given };
}
