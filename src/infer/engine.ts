// GPT-2 inference with a KV cache: the model's own netlist (transformer() and lmHead() in
// src/model/gpt2.ts) run with a RowContext whose attention stores each new row's key and value in
// a per-layer cache of (maxT, C) floats and attends over the cache, so a new token costs one pass
// over the weights plus attention over the cache, and the prefix is never recomputed.
//   prefill(tokens)  runs the rows through the model in batched passes (in chunks of at most
//                    `prefillChunk` rows) and returns the last row's logits
//   decode(token)    one row (the kernel library streams each weight once for it)
// Both append to the cache at `position` (the number of tokens seen so far).
// With `packed` (src/infer/packed_matmuls.ts: the matmul weights packed once more for few-row
// calls) the matmuls read the packed copy, as `bun run generate` and the server do; without, the
// weights as they are (the trainer samples from the model it is training).
import { InputError } from "../base/errors.ts";
import { zeroFill } from "../ffi.ts";
import { ActivationMemory, type LayerActivations } from "../model/activations.ts";
import { KERNELS, type Kernels, lmHead, type RowContext, transformer } from "../model/gpt2.ts";
import type { GPT2Config } from "../model/config.ts";
import type { GPT2Weights } from "../model/weights.ts";
import type { PackedMatmuls } from "./packed_matmuls.ts";

export class InferenceError extends InputError {
  override name = "InferenceError";
}

export interface InferenceOptions {
  /** rows per batched prefill pass (bounds the activation buffers); default min(maxT, 256) */
  prefillChunk?: number;
  /**
   * Activation buffers (kind "inference") to run in. Engines that never run at the same time may
   * share one, as the slots of the batch engine (src/infer/batch.ts) do. Default: its own.
   */
  memory?: ActivationMemory;
  /** The weights' matmuls packed for few-row calls (made from the same GPT2Weights); default: unpacked. */
  packed?: PackedMatmuls;
  /** The KV cache to fill (for this model's config); default: its own. */
  cache?: KVCache;
}

/** One sequence's keys and values: (L, maxT, C) each, layer l's rows at [l·maxT·C, (l+1)·maxT·C). */
export class KVCache {
  readonly k: Float32Array;
  readonly v: Float32Array;
  private readonly layerFloats: number;

  /** Floats of each of k and v. */
  static floats(config: GPT2Config): number {
    return config.L * config.maxT * config.C;
  }

  /** Its own memory, or views of `k` and `v` (KVCache.floats each), e.g. slices of one allocation for many sequences. */
  constructor(config: GPT2Config, k?: Float32Array, v?: Float32Array) {
    this.layerFloats = config.maxT * config.C;
    const floats = KVCache.floats(config);
    if ((k !== undefined && k.length !== floats) || (v !== undefined && v.length !== floats)) throw new InferenceError(`a KV cache of this model holds ${floats} floats each for keys and values`);
    this.k = k ?? KVCache.reserve(floats);
    this.v = v ?? KVCache.reserve(floats);
  }

  /**
   * A zeroed array with every page written once, now: otherwise the OS maps each page at the first
   * key stored in it, one fault per 4 KiB during decoding (measured: a decode pass of 8 sequences
   * spent 5.2 ms in attention instead of 2.4, d12, Intel Xeon).
   */
  static reserve(floats: number): Float32Array {
    const memory = new Float32Array(floats);
    zeroFill(memory);
    return memory;
  }

  keys(layer: number): Float32Array {
    return this.k.subarray(layer * this.layerFloats, (layer + 1) * this.layerFloats);
  }

  values(layer: number): Float32Array {
    return this.v.subarray(layer * this.layerFloats, (layer + 1) * this.layerFloats);
  }
}

/** Rows pos0…pos0+n-1 of one sequence, attending over that sequence's cache. */
export class CachedRows implements RowContext {
  constructor(private readonly w: GPT2Weights, private readonly cache: KVCache, readonly pos0: number, readonly n: number) {}

  embed(k: Kernels, out: Float32Array, tokens: Int32Array): void {
    const { C, Vp, maxT } = this.w.config;
    // The rows sit at positions pos0…: hand the encoder the position table from row pos0 on.
    k.encoderForward(out, tokens, this.w.tensors.wte, this.w.tensors.wpe.subarray(this.pos0 * C), 1, this.n, C, Vp, maxT - this.pos0);
  }

  attend(k: Kernels, layer: number, x: LayerActivations): void {
    const { C, NH, maxT } = this.w.config;
    k.decodeAttention(x.atty, x.qkv, this.cache.keys(layer), this.cache.values(layer), this.pos0, this.n, C, NH, maxT);
  }
}

export class InferenceEngine {
  readonly config: GPT2Config;
  readonly weights: GPT2Weights;
  readonly cache: KVCache;
  /**
   * Tokens in the cache; the next row goes to this position. Only reset() should move it back
   * (benchmarks also set it forward to time a step at a given context length).
   */
  position = 0;
  /** Rows per prefill pass: prefill() splits longer inputs into passes of this many rows. */
  readonly prefillChunk: number;
  private readonly memory: ActivationMemory;
  private readonly kernels: Kernels;
  private readonly tokens: Int32Array;
  private readonly lastLogits: Float32Array;

  /** Runs on `weights` as they are (no copy: a trainer can sample from the model it trains). */
  constructor(weights: GPT2Weights, options: InferenceOptions = {}) {
    this.weights = weights;
    this.config = weights.config;
    const { maxT, Vp } = this.config;
    if (options.cache !== undefined && options.cache.k.length !== KVCache.floats(this.config)) throw new InferenceError("the KV cache given is not for this model's config");
    this.cache = options.cache ?? new KVCache(this.config);
    const chunk = options.prefillChunk ?? Math.min(maxT, 256);
    if (!Number.isInteger(chunk) || chunk < 1) throw new InferenceError(`prefillChunk must be a positive integer, got ${chunk}`);
    this.prefillChunk = Math.min(chunk, maxT);
    if (options.memory !== undefined && (options.memory.kind !== "inference" || options.memory.config !== this.config)) {
      throw new InferenceError("the shared activation memory must be of kind \"inference\" and for this model's config");
    }
    this.memory = options.memory ?? new ActivationMemory(this.config, "inference");
    if (options.packed !== undefined && options.packed.weights !== weights) throw new InferenceError("the packed matmuls must be made from the engine's weights");
    this.kernels = options.packed?.kernels ?? KERNELS;
    this.tokens = new Int32Array(this.prefillChunk);
    this.lastLogits = new Float32Array(Vp);
  }

  /** Forgets the cached tokens (the cache memory is reused). */
  reset(): void {
    this.position = 0;
  }

  /**
   * Appends `tokens` to the cache in batched passes. Returns the logits (Vp) after the last token,
   * or with `allLogits` the logits of every token, (n, Vp) in a new array. The returned (Vp) view
   * is overwritten by the next call.
   */
  prefill(tokens: ArrayLike<number>, options: { allLogits?: boolean } = {}): Float32Array {
    const n = tokens.length;
    this.checkTokens(tokens);
    const { Vp } = this.config;
    const all = options.allLogits === true ? new Float32Array(n * Vp) : null;
    for (let begin = 0; begin < n; begin += this.prefillChunk) {
      const rows = Math.min(this.prefillChunk, n - begin);
      for (let i = 0; i < rows; i++) this.tokens[i] = tokens[begin + i];
      if (all !== null) this.forwardRows(rows, all.subarray(begin * Vp, (begin + rows) * Vp), 0);
      else this.forwardRows(rows, begin + rows === n ? this.lastLogits : null, rows - 1);
    }
    return all ?? this.lastLogits;
  }

  /** Appends one token and returns the logits (Vp) for the next; the view is reused per call. */
  decode(token: number): Float32Array {
    this.checkTokens([token]);
    this.tokens[0] = token;
    this.forwardRows(1, this.lastLogits, 0);
    return this.lastLogits;
  }

  private checkTokens(tokens: ArrayLike<number>): void {
    const { V, maxT } = this.config;
    if (tokens.length === 0) throw new InferenceError("no tokens given");
    if (this.position + tokens.length > maxT) {
      throw new InferenceError(`${this.position} cached + ${tokens.length} new tokens exceed the model's context of ${maxT}`);
    }
    for (let i = 0; i < tokens.length; i++) {
      const t = tokens[i];
      if (!Number.isInteger(t) || t < 0 || t >= V) throw new InferenceError(`token ${i} is ${t}, outside the vocabulary [0, ${V})`);
    }
  }

  /**
   * Runs the first n tokens of this.tokens at positions position…position+n-1 through the model.
   * With `logits`, also the head: of every row (logits (n,Vp)), or from row `first` on (logits (rows,Vp)).
   */
  private forwardRows(n: number, logits: Float32Array | null, first: number): void {
    const { C, Vp } = this.config;
    const a = this.memory.activations(1, n);
    const ctx = new CachedRows(this.weights, this.cache, this.position, n);
    const residual = transformer(this.kernels, this.weights, a, this.tokens.subarray(0, n), n, ctx); // (n,C)
    this.position += n;
    if (logits === null) return;
    const rows = logits.length / Vp;
    const view = (buffer: Float32Array, width: number) => buffer.subarray(0, rows * width);
    lmHead(this.kernels, this.weights, logits, residual.subarray(first * C, (first + rows) * C), view(a.lnf, C), view(a.lnfMean, 1), view(a.lnfRstd, 1), rows);
  }
}
