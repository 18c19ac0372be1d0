// Batched decoding: `slots` sequences, each with its own KV cache and position (one InferenceEngine
// per slot), decoded together. One decode pass runs the model's netlist (transformer() and
// lmHead() in src/model/gpt2.ts) over one row per active slot, so every weight matrix is read once
// per step whatever the number of sequences — decode is memory-bound, so 8 sequences cost little
// more than one. Only the embedding and attention are per row (SlotRows): row i sits at its own
// slot's position and attends over its own slot's cache.
//   prefill(slot, tokens)   a joining sequence's prompt, as its own pass (the slot's engine)
//   decode(slots, tokens)   one row per listed slot; returns their logits (rows, Vp)
// Sequences join (reset + prefill) and leave (simply not listed) between decode passes.
//
// The matmuls run on the weights packed once more for few-row calls (src/infer/packed_matmuls.ts):
// each weight is then one sequential stream with little compute on it, so a pass of 8 rows costs
// about what a pass of one does.
//
// A row's arithmetic does not depend on the other rows: the embedding and attention are computed
// per row by the same kernel calls the single-sequence engine makes, layernorm, GELU and residual
// adds are per element or per row, and the packed matmul is one FMA chain per output element for
// every row count up to `slots` (kernels/panel_matmul.zig; beyond small_rows_max rows the library
// takes the GEMM, hence the cap). test/serve_batch.test.ts checks it, logits bit for bit, against
// the single-sequence engine on the same packed weights.
import { kernelLimits } from "../ffi.ts";
import { ActivationMemory, type LayerActivations } from "../model/activations.ts";
import { type Kernels, lmHead, type RowContext, transformer } from "../model/gpt2.ts";
import type { GPT2Config } from "../model/config.ts";
import type { GPT2Weights } from "../model/weights.ts";
import { InferenceEngine, InferenceError, type InferenceOptions, KVCache } from "./engine.ts";
import { PackedMatmuls } from "./packed_matmuls.ts";

/**
 * The most rows a decode pass may have for the rows' arithmetic to stay independent of the row
 * count: up to this many rows the kernel library's forward matmul runs on the packed weights with
 * one fixed reduction order per output element; more rows take the GEMM, whose blocking differs
 * (kernels/matmul.zig, small_rows_max, read through the library's limits). The server caps
 * --slots here.
 */
export function maxRowIndependentRows(): number {
  return kernelLimits().matmulSmallRowsMax;
}

/**
 * Row i is the next token of `engines[i]`'s sequence: it sits at that engine's position and
 * attends over its cache. The caches are slices of `kAll` / `vAll` (slot s's layer l is cache
 * s·L + l), so one kernel call attends every row of a layer.
 */
export class SlotRows implements RowContext {
  private readonly cacheIndex: Int32Array;
  private readonly position: Int32Array;

  constructor(private readonly w: GPT2Weights, private readonly engines: readonly InferenceEngine[], private readonly slotIds: ArrayLike<number>, private readonly kAll: Float32Array, private readonly vAll: Float32Array) {
    this.cacheIndex = new Int32Array(engines.length);
    this.position = Int32Array.from(engines, (e) => e.position);
  }

  embed(k: Kernels, out: Float32Array, tokens: Int32Array): void {
    const { C, Vp, maxT } = this.w.config;
    for (let i = 0; i < this.engines.length; i++) {
      const pos = this.engines[i].position;
      k.encoderForward(out.subarray(i * C, (i + 1) * C), tokens.subarray(i, i + 1), this.w.tensors.wte, this.w.tensors.wpe.subarray(pos * C), 1, 1, C, Vp, maxT - pos);
    }
  }

  attend(k: Kernels, layer: number, x: LayerActivations): void {
    const { C, NH, L, maxT } = this.w.config;
    const n = this.engines.length;
    for (let i = 0; i < n; i++) this.cacheIndex[i] = this.slotIds[i] * L + layer;
    k.decodeAttentionRows(x.atty.subarray(0, n * C), x.qkv.subarray(0, n * 3 * C), this.kAll, this.vAll, this.cacheIndex, this.position, n, C, NH, maxT);
  }
}

export class BatchEngine {
  readonly config: GPT2Config;
  readonly weights: GPT2Weights;
  /** One engine per slot: its KV cache, its position; all run in one shared activation memory. */
  readonly slots: readonly InferenceEngine[];
  /** The matmul weights packed for few-row calls, shared by the slots and the decode pass. */
  readonly packed: PackedMatmuls;
  private readonly memory: ActivationMemory;
  /** Every slot's KV cache in one allocation each for keys and values: slot s at [s·F, (s+1)·F), F = KVCache.floats. */
  private readonly kAll: Float32Array;
  private readonly vAll: Float32Array;
  private readonly tokens: Int32Array;
  private readonly logits: Float32Array;
  private readonly seen: Uint8Array;

  /** Packs the weights' matmuls unless `options.packed` brings them packed already. */
  constructor(weights: GPT2Weights, slotCount: number, options: Omit<InferenceOptions, "memory" | "cache"> = {}) {
    if (!Number.isInteger(slotCount) || slotCount < 1) throw new InferenceError(`the number of slots must be a positive integer, got ${slotCount}`);
    this.weights = weights;
    this.config = weights.config;
    // The passes run one after another on one thread, so the slots can share activation buffers.
    this.memory = new ActivationMemory(this.config, "inference");
    this.packed = options.packed ?? new PackedMatmuls(weights);
    const floats = KVCache.floats(this.config);
    this.kAll = KVCache.reserve(slotCount * floats);
    this.vAll = KVCache.reserve(slotCount * floats);
    this.slots = Array.from({ length: slotCount }, (_, s) => {
      const cache = new KVCache(this.config, this.kAll.subarray(s * floats, (s + 1) * floats), this.vAll.subarray(s * floats, (s + 1) * floats));
      return new InferenceEngine(weights, { ...options, memory: this.memory, packed: this.packed, cache });
    });
    this.tokens = new Int32Array(slotCount);
    this.logits = new Float32Array(slotCount * this.config.Vp);
    this.seen = new Uint8Array(slotCount);
  }

  get slotCount(): number {
    return this.slots.length;
  }

  /** Bytes held: every slot's KV cache, the shared activation buffers and the packed weights. */
  bytes(): number {
    const cacheBytes = this.slots.reduce((sum, e) => sum + (e.cache.k.byteLength + e.cache.v.byteLength), 0);
    return cacheBytes + this.memory.bytes() + this.logits.byteLength + this.packed.bytes();
  }

  /**
   * One decode pass: row i appends tokens[i] to slot slotIds[i]'s sequence. Returns the next-token
   * logits (rows, Vp), row i for slotIds[i]; the view is overwritten by the next call.
   */
  decode(slotIds: ArrayLike<number>, tokens: ArrayLike<number>): Float32Array {
    const n = slotIds.length;
    const engines = this.checkRows(slotIds, tokens);
    const { C, Vp } = this.config;
    for (let i = 0; i < n; i++) this.tokens[i] = tokens[i];
    const a = this.memory.activations(1, n);
    const residual = transformer(this.packed.kernels, this.weights, a, this.tokens.subarray(0, n), n, new SlotRows(this.weights, engines, slotIds, this.kAll, this.vAll)); // (n,C)
    for (const engine of engines) engine.position += 1;
    const logits = this.logits.subarray(0, n * Vp);
    lmHead(this.packed.kernels, this.weights, logits, residual.subarray(0, n * C), a.lnf, a.lnfMean, a.lnfRstd, n); // (n,Vp)
    return logits;
  }

  private checkRows(slotIds: ArrayLike<number>, tokens: ArrayLike<number>): InferenceEngine[] {
    const n = slotIds.length;
    const { V, maxT } = this.config;
    if (n < 1 || n > this.slots.length) throw new InferenceError(`a decode pass takes 1 to ${this.slots.length} rows, got ${n}`);
    if (tokens.length !== n) throw new InferenceError(`${n} slots but ${tokens.length} tokens`);
    this.seen.fill(0);
    const engines: InferenceEngine[] = [];
    for (let i = 0; i < n; i++) {
      const slot = slotIds[i], token = tokens[i];
      if (!Number.isInteger(slot) || slot < 0 || slot >= this.slots.length) throw new InferenceError(`row ${i}: slot ${slot} does not exist (0..${this.slots.length - 1})`);
      if (this.seen[slot] === 1) throw new InferenceError(`row ${i}: slot ${slot} is listed twice`);
      this.seen[slot] = 1;
      if (!Number.isInteger(token) || token < 0 || token >= V) throw new InferenceError(`row ${i}: token ${token} is outside the vocabulary [0, ${V})`);
      const engine = this.slots[slot];
      if (engine.position >= maxT) throw new InferenceError(`row ${i}: slot ${slot} is full (${engine.position} tokens = the model's context)`);
      engines.push(engine);
    }
    return engines;
  }
}
