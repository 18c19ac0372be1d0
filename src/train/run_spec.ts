// The run spec: every setting of a training run resolved once into concrete values (no nulls, no
// "use the default"), frozen, saved as-is in each checkpoint and restored as-is on resume. The
// trainer reads nothing else: a default changed in the code never reaches a resumed run.
//
// Resolution (resolveRunSpec):
//   fresh run   each value is the flag's if given, else the default (DEFAULTS in options.ts,
//               injectable so that tests can prove a resumed run ignores them)
//   resume      each value is the checkpoint's; an arithmetic flag given again must equal it (a
//               different value is a usage error naming both); a cadence flag given replaces it;
//               a data path given again may differ (the data moved): the loader checks it is the
//               same data
//
// Data-parallel runs (mpirun -np N): `batch` is per rank and `ranks` says over how many, so the
// micro-batch of the whole job is batch·ranks sequences. That product (with seq and totalBatch)
// is the arithmetic: it fixes which tokens each update sees (the loader's global windows) and the
// accumulation. The rank count itself is not: a run resumes on M ranks when M divides
// batch·ranks, with batch·ranks/M sequences per rank, and its losses continue to fp32 precision
// (the sums over ranks are added in another order).
import { join, resolve } from "node:path";
import { UsageError } from "../base/errors.ts";
import { DEFAULTS, type FlagDefaults, FLAG_BY_KEY, type FlagKey, type SpecSettings, type TrainFlags } from "./options.ts";

/** Where the run's initial weights come from. */
export type ModelSource = { fresh: string } | { file: string };

/** The token data: llm.c token files (globs, absolute), or a text file/folder tokenized into <ckpt-dir>/data. */
export type DataSource = { files: { train: string[]; val: string[] } } | { text: { path: string; valFraction: number } };

export interface RunSpec extends SpecSettings {
  // ---- arithmetic: fixed for the whole run ----
  model: ModelSource;
  data: DataSource;
  /** data-parallel ranks of this invocation (1: one process); batch·ranks is the arithmetic, see above */
  ranks: number;
}

/** The spec's plain scalar fields, each set by the flag of the same key. */
const SCALAR_KEYS = [
  "shuffle", "batch", "seq", "lr", "schedule", "warmup", "lrMinFrac", "decayFrac", "weightDecay", "beta1", "beta2", "eps", "gradClip", "skipLossZ", "skipGradZ", "matmulPrecision", "seed",
  "steps", "valEvery", "valBatches", "sampleEvery", "sampleTokens", "temperature", "ckptDir", "ckptEvery", "keepLast",
] as const satisfies ReadonlyArray<keyof RunSpec & FlagKey>;

export interface SpecDefaults {
  flags: FlagDefaults;
  /** the default token data (the Moby-Dick cache) */
  data: DataSource;
}

/** The log path a run in `ckptDir` uses unless --log says otherwise. */
export function defaultLogPath(ckptDir: string): string {
  return join(ckptDir, "log.jsonl");
}

function describe(value: unknown): string {
  return typeof value === "string" ? value : JSON.stringify(value);
}

function modelFrom(given: Partial<TrainFlags>): ModelSource | null {
  if (given.init !== undefined) return { file: resolve(given.init) };
  if (given.model !== undefined) return { fresh: given.model };
  return null;
}

function dataFrom(given: Partial<TrainFlags>, flags: FlagDefaults): DataSource | null {
  if (given.trainData !== undefined) return { files: { train: given.trainData.map((p) => resolve(p)), val: (given.valData ?? []).map((p) => resolve(p)) } };
  if (given.text !== undefined) return { text: { path: resolve(given.text), valFraction: given.valFraction ?? (flags.valFraction as number) } };
  return null;
}

function required<T>(value: T | undefined, key: string): T {
  if (value === undefined) throw new Error(`internal: no default for ${key}`);
  return value;
}

/** A fresh run's spec: given flags, else the defaults. */
function freshSpec(given: Partial<TrainFlags>, defaults: SpecDefaults, ranks: number): RunSpec {
  const flags = defaults.flags;
  const out: Record<string, unknown> = {};
  for (const key of SCALAR_KEYS) out[key] = given[key] ?? required(flags[key], key);
  const spec = out as unknown as RunSpec;
  spec.model = modelFrom(given) ?? { fresh: required(flags.model, "model") };
  spec.data = dataFrom(given, flags) ?? defaults.data;
  spec.ranks = ranks;
  spec.totalBatch = given.totalBatch ?? spec.batch * spec.seq * ranks;
  spec.log = given.log ?? defaultLogPath(spec.ckptDir);
  return spec;
}

/** A resumed run's spec: the saved one, with cadence flags applied and arithmetic flags checked. */
function resumedSpec(given: Partial<TrainFlags>, saved: RunSpec, defaults: SpecDefaults, ranks: number): RunSpec {
  const spec: RunSpec = structuredClone(saved);
  const contradiction = (flag: string, value: unknown, savedValue: unknown) =>
    new UsageError(`--${flag} ${describe(value)} contradicts the checkpoint's ${describe(savedValue)}: a resumed run keeps its arithmetic (start a new run in another --ckpt-dir to change it)`);
  // Another rank count: the same sequences per micro-batch, shared out differently.
  const rows = saved.batch * saved.ranks;
  if (ranks !== saved.ranks) {
    if (rows % ranks !== 0) {
      throw new UsageError(`this run's micro-batch is ${rows} sequences (--batch ${saved.batch} on ${saved.ranks} rank${saved.ranks === 1 ? "" : "s"}), which ${ranks} ranks cannot share evenly: resume it on a number of ranks that divides ${rows}`);
    }
    spec.ranks = ranks;
    spec.batch = rows / ranks;
  }
  for (const key of SCALAR_KEYS) {
    const value = given[key];
    if (value === undefined) continue;
    if (key === "batch" && ranks !== saved.ranks && value !== spec.batch) {
      throw contradiction("batch", value, `${saved.batch} per rank on ${saved.ranks} rank${saved.ranks === 1 ? "" : "s"} (${rows} sequences per micro-batch: --batch ${spec.batch} on ${ranks})`);
    }
    if (key === "batch" && ranks !== saved.ranks) continue;
    if (FLAG_BY_KEY[key].kind === "arithmetic" && value !== saved[key]) throw contradiction(FLAG_BY_KEY[key].flag, value, saved[key]);
    (spec as unknown as Record<string, unknown>)[key] = value;
  }
  const model = modelFrom(given);
  if (model !== null && JSON.stringify(model) !== JSON.stringify(saved.model)) {
    throw contradiction("fresh" in model ? "model" : "init", Object.values(model)[0], "fresh" in saved.model ? `fresh ${saved.model.fresh}` : `--init ${saved.model.file}`);
  }
  // The data may have moved: a path given again replaces the saved one, and the loader's restore
  // checks that it is the same data (file names and batch counts). Other data is a contradiction.
  const data = dataFrom(given, defaults.flags);
  if (data !== null) {
    const sameKind = ("files" in data) === ("files" in saved.data);
    const sameSplit = "text" in data && "text" in saved.data ? data.text.valFraction === saved.data.text.valFraction : true;
    if (!sameKind || !sameSplit) throw contradiction("files" in data ? "train-data" : "text", "files" in data ? data.files.train.join(" ") : data.text.path, describeData(saved.data));
    spec.data = data;
  }
  if (given.totalBatch !== undefined && given.totalBatch !== saved.totalBatch) throw contradiction("total-batch", given.totalBatch, saved.totalBatch);
  // A run folder moved with --ckpt-dir takes its default log along.
  if (given.log !== undefined) spec.log = given.log;
  else if (spec.ckptDir !== saved.ckptDir && saved.log === defaultLogPath(saved.ckptDir)) spec.log = defaultLogPath(spec.ckptDir);
  return spec;
}

export function describeData(data: DataSource): string {
  if ("text" in data) return `--text ${data.text.path} (val fraction ${data.text.valFraction})`;
  return `train ${data.files.train.join(" ")}${data.files.val.length > 0 ? `, val ${data.files.val.join(" ")}` : ", no validation data"}`;
}

/**
 * The run spec of this invocation (frozen). `saved` is the checkpoint's spec when resuming;
 * `ranks` the data-parallel ranks of this invocation (1: one process).
 */
export function resolveRunSpec(given: Partial<TrainFlags>, saved: RunSpec | null, defaults: SpecDefaults, ranks = 1): Readonly<RunSpec> {
  if (!Number.isInteger(ranks) || ranks < 1) throw new Error(`resolveRunSpec: ranks must be a positive integer, got ${ranks}`);
  const spec = saved === null ? freshSpec(given, defaults, ranks) : resumedSpec(given, saved, defaults, ranks);
  return deepFreeze(spec);
}

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === "object") {
    for (const inner of Object.values(value)) deepFreeze(inner);
    Object.freeze(value);
  }
  return value;
}

/** Cross-field checks that need the model (still before any work): returns the accumulation. */
export function checkRunSpec(spec: RunSpec, maxT: number): number {
  if (spec.seq > maxT) throw new UsageError(`--seq: ${spec.seq} exceeds the model's maximum sequence length (${maxT})`);
  const microTokens = spec.batch * spec.seq * spec.ranks;
  if (spec.totalBatch % microTokens !== 0) {
    const factors = spec.ranks === 1 ? `--batch × --seq = ${spec.batch}×${spec.seq}` : `--batch × --seq × ranks = ${spec.batch}×${spec.seq}×${spec.ranks}`;
    throw new UsageError(`--total-batch: ${spec.totalBatch} tokens is not a multiple of ${factors} = ${microTokens}`);
  }
  if (spec.warmup > spec.steps) throw new UsageError(`--warmup: ${spec.warmup} steps is more than --steps (${spec.steps})`);
  return spec.totalBatch / microTokens;
}

/**
 * The run spec stored in a checkpoint's state, validated field by field (it comes from a file);
 * checkpoints written before run specs existed (state.options + state.lr) are converted.
 */
export function savedRunSpec(state: Record<string, unknown>, source: string, defaults: SpecDefaults): RunSpec {
  const raw = state.spec ?? (state.options !== undefined ? fromLegacyOptions(state.options, state.lr, source, defaults.data) : undefined);
  if (raw === undefined) throw new UsageError(`${source}: holds no run spec (not written by bun run train)`);
  return validateSpec(raw, source);
}

function validateSpec(raw: unknown, source: string): RunSpec {
  const bad = (field: string, why: string) => new UsageError(`${source}: run spec field "${field}" ${why}`);
  if (raw === null || typeof raw !== "object" || Array.isArray(raw)) throw bad("spec", "is not an object");
  const r = raw as Record<string, unknown>;
  const isStringList = (x: unknown) => Array.isArray(x) && x.every((s) => typeof s === "string" && s !== "");
  for (const key of SCALAR_KEYS) {
    const value = r[key];
    const flag = FLAG_BY_KEY[key];
    if (flag.boolean) {
      if (typeof value !== "boolean") throw bad(key, `must be true or false, got ${JSON.stringify(value)}`);
      continue;
    }
    if (typeof value !== "number" && typeof value !== "string") throw bad(key, `is missing or not a value (${JSON.stringify(value)})`);
    let parsed: unknown;
    try {
      parsed = flag.parse(String(value));
    } catch (error) {
      throw bad(key, `is invalid: ${(error as Error).message}`);
    }
    if (parsed !== value) throw bad(key, `is ${JSON.stringify(value)}, which does not round-trip`);
  }
  // Checkpoints written before data parallelism come from one process.
  const ranks = r.ranks === undefined ? 1 : r.ranks;
  for (const [key, value] of [["totalBatch", r.totalBatch], ["ranks", ranks]] as const) {
    if (!Number.isSafeInteger(value) || (value as number) < 1) throw bad(key, `must be a positive integer, got ${JSON.stringify(value)}`);
  }
  if (typeof r.log !== "string" || r.log === "") throw bad("log", "must be a non-empty path");
  const model = r.model as Record<string, unknown> | null;
  const modelOk = model !== null && typeof model === "object" && Object.keys(model).length === 1 &&
    ((typeof model.fresh === "string" && FLAG_BY_KEY.model.parse(model.fresh) === model.fresh) || (typeof model.file === "string" && model.file !== ""));
  if (!modelOk) throw bad("model", `must be {"fresh": name} or {"file": path}, got ${JSON.stringify(r.model)}`);
  const data = r.data as Record<string, Record<string, unknown>> | null;
  const dataOk = data !== null && typeof data === "object" && Object.keys(data).length === 1 &&
    ((data.files !== undefined && isStringList(data.files.train) && (data.files.train as string[]).length > 0 && isStringList(data.files.val)) ||
      (data.text !== undefined && typeof data.text.path === "string" && data.text.path !== "" && typeof data.text.valFraction === "number" &&
        data.text.valFraction >= 0 && data.text.valFraction < 1));
  if (!dataOk) throw bad("data", `must be {"files": {train, val}} or {"text": {path, valFraction}}, got ${JSON.stringify(r.data)}`);
  const spec: Record<string, unknown> = { model: r.model, data: r.data, ranks, totalBatch: r.totalBatch, log: r.log };
  for (const key of SCALAR_KEYS) spec[key] = r[key];
  return spec as unknown as RunSpec;
}

/** The settings a checkpoint of an earlier version kept (options with lr null, the lr beside them). */
function fromLegacyOptions(options: unknown, lr: unknown, source: string, defaultData: DataSource): unknown {
  if (options === null || typeof options !== "object") throw new UsageError(`${source}: its training options are not an object`);
  const o = options as Record<string, unknown>;
  const ckptDir = o.ckptDir;
  const spec: Record<string, unknown> = {};
  for (const key of SCALAR_KEYS) spec[key] = o[key];
  spec.lr = o.lr ?? lr;
  spec.skipLossZ = 0; // the outlier guard came later: off
  spec.skipGradZ = 0;
  spec.matmulPrecision = "fp32"; // so did bf16 matmuls
  spec.model = typeof o.init === "string" ? { file: resolve(o.init) } : { fresh: o.model ?? "d4" };
  spec.data = Array.isArray(o.trainData)
    ? { files: { train: o.trainData.map((p) => resolve(String(p))), val: Array.isArray(o.valData) ? o.valData.map((p) => resolve(String(p))) : [] } }
    : typeof o.text === "string" ? { text: { path: resolve(o.text), valFraction: o.valFraction } } : defaultData;
  spec.totalBatch = o.totalBatch ?? (o.batch as number) * (o.seq as number);
  spec.log = typeof o.log === "string" ? o.log : typeof ckptDir === "string" ? defaultLogPath(ckptDir) : null;
  return spec;
}

/** The defaults of a fresh run (the code's own; tests inject others). */
export function specDefaults(defaultData: DataSource, flags: FlagDefaults = DEFAULTS): SpecDefaults {
  return { flags, data: defaultData };
}
