// Batches of B×T tokens (targets = inputs shifted by one) from llm.c token files.
//
// A batch is a window of B·T+1 consecutive tokens of one shard starting at a multiple of B·T:
// inputs are its first B·T tokens, targets its last B·T. Windows never straddle shards.
//
// Unshuffled (llm.c's order): shards in sorted path order; in each, batch k starts at k·B·T; when
// a shard cannot supply B·T+1 more tokens the loader moves to the next shard, wrapping from the
// last to the first. For a single file, batch k is tokens [k·B·T, k·B·T + B·T] until the file runs
// out, then it starts over.
//
// Shuffled (the default for training): the same windows, visited in a fresh seeded permutation
// each epoch (over all shards at once). The state — epoch, cursor and the RNG state that produced
// the current permutation — is plain JSON, so a resumed run sees exactly the batches it would have.
//
// Data-parallel ranks (llm.c's semantics): rank r of N works on *global* windows of N·B·T+1 tokens
// at multiples of N·B·T — exactly the windows of one process at batch N·B — and reads its B·T+1
// tokens at offset r·B·T inside each, i.e. batch k of rank r starts at (k·N + r)·B·T of the
// unshuffled stream. Every rank walks the same global windows in the same (seeded) order, so the N
// ranks' B rows, in rank order, are the single process's N·B rows, and the loader state is the same
// on every rank and equal to that single process's state.
import { existsSync, statSync } from "node:fs";
import { basename, resolve } from "node:path";
import { InputError } from "../base/errors.ts";
import { Rng, type RngState } from "../base/rng.ts";
import { describeJson } from "../base/describe_json.ts";
import { readTokenFile, TokenFileError } from "./token_file.ts";

export class DataError extends InputError {
  override name = "DataError";
}

export interface LoaderOptions {
  /** glob pattern(s) or paths of llm.c token files */
  files: string | string[];
  B: number;
  T: number;
  /** ids must be < vocabSize */
  vocabSize: number;
  shuffle: boolean;
  seed: number;
  /** names the data in errors ("train", "val") */
  label: string;
  /** data-parallel rank in [0, worldSize) and number of ranks (default 0 of 1: one process) */
  rank?: number;
  worldSize?: number;
}

export interface LoaderState {
  shuffle: boolean;
  /** windows served so far in this epoch (shuffled) */
  cursor: number;
  epoch: number;
  /** unshuffled: the shard and the token position of the next batch */
  shard: number;
  position: number;
  /** shuffled: RNG state before this epoch's permutation */
  epochRng: RngState | null;
  /** identifies the data: a resume against other files is refused */
  windows: number;
  files: string[];
}

/** Expands globs (sorted, deduplicated); a pattern matching nothing is an error naming it. */
export function expandFiles(patterns: string | string[], label: string): string[] {
  const list = typeof patterns === "string" ? [patterns] : patterns;
  // Patterns can come from a checkpoint's saved options: anything but strings is refused by name.
  if (!Array.isArray(list) || !list.every((p) => typeof p === "string")) throw new DataError(`${label} data: ${describeJson(patterns)} is not a list of file patterns`);
  const out = new Set<string>();
  for (const pattern of list) {
    if (existsSync(pattern) && statSync(pattern).isFile()) {
      out.add(resolve(pattern));
      continue;
    }
    const matches = Array.from(new Bun.Glob(pattern).scanSync({ cwd: ".", absolute: true, onlyFiles: true })).sort();
    if (matches.length === 0) throw new DataError(`${label} data: "${pattern}" matches no files`);
    for (const m of matches) out.add(m);
  }
  return Array.from(out).sort();
}

export class TokenLoader {
  readonly files: string[];
  readonly B: number;
  readonly T: number;
  readonly inputs: Int32Array;
  readonly targets: Int32Array;
  readonly rank: number;
  readonly worldSize: number;
  /** global windows (N·B·T+1 tokens over N ranks; B·T+1 for one process) available per epoch */
  readonly batchesPerEpoch: number;
  readonly totalTokens: number;
  private readonly shards: Uint16Array[];
  private readonly shuffle: boolean;
  /** tokens between consecutive global windows: worldSize·B·T */
  private readonly span: number;
  /** where this rank's B·T+1 tokens start inside a global window: rank·B·T */
  private readonly rankOffset: number;
  /** shuffled mode: window start (shard, position) for each window index */
  private readonly windowShard: Uint32Array;
  private readonly windowStart: Float64Array;
  private readonly order: Uint32Array;
  private rng: Rng;
  private epochRng: RngState | null = null;
  private cursor = 0;
  private epoch = 0;
  private shard = 0;
  private position = 0;

  constructor(options: LoaderOptions) {
    const { B, T, vocabSize, label } = options;
    if (!Number.isInteger(B) || B < 1 || !Number.isInteger(T) || T < 1) throw new DataError(`${label} data: B and T must be positive integers (got ${B}, ${T})`);
    const rank = options.rank ?? 0;
    const worldSize = options.worldSize ?? 1;
    if (!Number.isInteger(worldSize) || worldSize < 1 || !Number.isInteger(rank) || rank < 0 || rank >= worldSize) {
      throw new DataError(`${label} data: rank must be an integer in [0, worldSize) and worldSize a positive integer (got rank ${rank} of ${worldSize})`);
    }
    this.B = B;
    this.T = T;
    this.rank = rank;
    this.worldSize = worldSize;
    this.span = worldSize * B * T;
    this.rankOffset = rank * B * T;
    this.shuffle = options.shuffle;
    this.files = expandFiles(options.files, label);
    const need = this.span + 1;
    const needs = worldSize === 1 ? `one batch needs (B·T+1 = ${B}·${T}+1 = ${need})` : `one global batch of ${worldSize} ranks needs (N·B·T+1 = ${worldSize}·${B}·${T}+1 = ${need})`;
    this.shards = this.files.map((path) => {
      let tokens: Uint16Array;
      try {
        tokens = readTokenFile(path);
      } catch (error) {
        if (error instanceof TokenFileError) throw new DataError(`${label} data: ${error.message}`);
        throw error;
      }
      if (tokens.length < need) {
        throw new DataError(`${label} data: ${path} has ${tokens.length} tokens, fewer than ${needs}; lower --batch/--seq or add data`);
      }
      checkIds(tokens, vocabSize, path, label);
      return tokens;
    });
    this.totalTokens = this.shards.reduce((n, s) => n + s.length, 0);
    const perShard = this.shards.map((s) => Math.floor((s.length - 1) / this.span));
    this.batchesPerEpoch = perShard.reduce((a, b) => a + b, 0);
    this.windowShard = new Uint32Array(this.batchesPerEpoch);
    this.windowStart = new Float64Array(this.batchesPerEpoch);
    for (let s = 0, w = 0; s < perShard.length; s++) {
      for (let k = 0; k < perShard[s]; k++, w++) {
        this.windowShard[w] = s;
        this.windowStart[w] = k * this.span;
      }
    }
    this.order = new Uint32Array(this.shuffle ? this.batchesPerEpoch : 0);
    this.inputs = new Int32Array(B * T);
    this.targets = new Int32Array(B * T);
    this.rng = new Rng(options.seed);
    this.startEpoch();
  }

  /** Tokens in each file, in `files` order (data-parallel ranks compare them at start-up). */
  get tokensPerFile(): number[] {
    return this.shards.map((s) => s.length);
  }

  /** Fills `inputs` and `targets` with the next batch. */
  next(): void {
    let shard: number;
    let start: number;
    if (this.shuffle) {
      if (this.cursor === this.batchesPerEpoch) {
        this.epoch++;
        this.startEpoch();
      }
      const w = this.order[this.cursor++];
      shard = this.windowShard[w];
      start = this.windowStart[w];
    } else {
      const span = this.span;
      if (this.position + span + 1 > this.shards[this.shard].length) {
        this.shard = (this.shard + 1) % this.shards.length;
        this.position = 0;
        if (this.shard === 0) this.epoch++;
      }
      shard = this.shard;
      start = this.position;
      this.position += span;
    }
    const tokens = this.shards[shard];
    const n = this.B * this.T;
    start += this.rankOffset;
    for (let i = 0; i < n; i++) {
      this.inputs[i] = tokens[start + i];
      this.targets[i] = tokens[start + i + 1];
    }
  }

  /** Back to the first batch (unshuffled) or a fresh permutation from the current RNG. */
  reset(): void {
    this.cursor = 0;
    this.epoch = 0;
    this.shard = 0;
    this.position = 0;
    if (this.shuffle) this.startEpoch();
  }

  state(): LoaderState {
    return {
      shuffle: this.shuffle, cursor: this.cursor, epoch: this.epoch, shard: this.shard, position: this.position,
      epochRng: this.epochRng, windows: this.batchesPerEpoch, files: this.files,
    };
  }

  /** Continues from `state()` of an earlier run; `source` (the checkpoint's path) names it in errors. */
  restore(raw: unknown, source = "the checkpoint"): void {
    const state = raw as Partial<LoaderState> | null;
    const bad = (why: string) => new DataError(`${source}: cannot resume the data loader: ${why}`);
    if (state === null || typeof state !== "object" || Array.isArray(state)) throw bad("no loader state in the checkpoint");
    if (typeof state.shuffle !== "boolean") throw bad(`"shuffle" is ${describeJson(state.shuffle)}, not true or false`);
    if (state.shuffle !== this.shuffle) throw bad(`the checkpoint was ${state.shuffle ? "shuffled" : "unshuffled"}, this run is ${this.shuffle ? "shuffled" : "unshuffled"} (use the same --no-shuffle setting)`);
    if (!Array.isArray(state.files) || !state.files.every((f) => typeof f === "string")) throw bad(`"files" is ${describeJson(state.files)}, not a list of paths`);
    // File names, not full paths: a data folder that moved (or a repo checked out elsewhere) still resumes.
    const names = (files: string[]) => files.map((f) => basename(f)).join("\n");
    if (state.windows !== this.batchesPerEpoch || names(state.files) !== names(this.files)) {
      const shape = this.worldSize === 1 ? `${this.B}×${this.T}` : `${this.worldSize}·${this.B}×${this.T} (${this.worldSize} ranks)`;
      throw bad(`the data differs from the checkpoint's (${describeJson(state.files)}, ${describeJson(state.windows)} batches of ${shape} per epoch; now ${this.batchesPerEpoch})`);
    }
    const int = (x: unknown, max: number) => Number.isSafeInteger(x) && (x as number) >= 0 && (x as number) <= max;
    if (!int(state.epoch, Number.MAX_SAFE_INTEGER) || !int(state.cursor, this.batchesPerEpoch)) throw bad(`epoch/cursor ${describeJson(state.epoch)}/${describeJson(state.cursor)} out of range`);
    if (!int(state.shard, this.shards.length - 1) || !int(state.position, this.shards[state.shard as number].length) || (state.position as number) % (this.B * this.T) !== 0) {
      throw bad(`shard/position ${describeJson(state.shard)}/${describeJson(state.position)} is not a batch start of this data`);
    }
    const words = state.epochRng;
    const isWord = (w: unknown) => Number.isInteger(w) && (w as number) >= 0 && (w as number) <= 0xffffffff;
    if (this.shuffle && (!Array.isArray(words) || words.length !== 4 || !words.every(isWord) || words.every((w) => w === 0))) {
      throw bad(`"epochRng" is ${describeJson(words)}, not four uint32 words (not all zero)`);
    }
    this.epoch = state.epoch!;
    this.cursor = state.cursor!;
    this.shard = state.shard!;
    this.position = state.position!;
    if (this.shuffle) {
      this.rng.setState(state.epochRng);
      this.startEpoch();
      this.cursor = state.cursor!;
    }
  }

  private startEpoch(): void {
    this.cursor = 0;
    if (!this.shuffle) return;
    this.epochRng = this.rng.state();
    for (let i = 0; i < this.order.length; i++) this.order[i] = i;
    this.rng.shuffle(this.order);
  }
}

function checkIds(tokens: Uint16Array, vocabSize: number, path: string, label: string): void {
  let max = 0;
  for (let i = 0; i < tokens.length; i++) if (tokens[i] > max) max = tokens[i];
  if (max < vocabSize) return;
  const at = tokens.findIndex((t) => t >= vocabSize);
  throw new DataError(`${label} data: ${path} holds token id ${tokens[at]} at position ${at}, but the model's vocabulary has ${vocabSize} ids (is the data tokenized for another model?)`);
}
