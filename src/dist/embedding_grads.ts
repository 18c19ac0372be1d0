// Keeping wte's gradient off the end of the backward pass (docs/distributed.md, "wte overlap").
//
// wte (Vp·C floats, 38.6M at d12) gets its gradient twice per micro-batch: densely from the lm_head
// matmul, at the very start of the backward pass, and sparsely from the encoder (one row per token,
// dwte[id] += dout[b,t]), at the very end. Reduced as one range it could only start after the
// encoder, fully exposed. Instead, in the last micro-batch:
//   1. right after the lm_head backward, the trainer readies the wte and wpe ranges (they hold the
//      lm_head part plus earlier micro-batches' encoder parts, all final) — their reduction runs
//      during the whole transformer backward;
//   2. the encoder backward of that micro-batch is not run into the gradient buffer; instead
//      `start(inputs, dout)` all-gathers every rank's token ids and encoder-output gradients
//      (B·T ids and B·T·C floats per rank — 98K floats at B=2, T=64, d12, vs 38.6M);
//   3. after the reducer's waitAll, `finish(grads)` adds every rank's rows, rank after rank and in
//      token order, into the reduced gradients (ZeRO-0: everywhere; ZeRO-1: inside this rank's
//      shard only) — the additions the encoder backward kernel would make on the global batch, in
//      its order, so the result is deterministic and the same on every rank.
// It pays off while N·B·T rows are few next to Vp (each rank receives N·B·T·C floats); with a large
// global batch, ready wte after the encoder backward instead.
import type { Distributed } from "./distributed.ts";
import type { CommTimes } from "./grad_reducer.ts";
import type { MpiRequest } from "./mpi.ts";

const INT_MAX = 2 ** 31 - 1;

export interface EmbeddingLayout {
  /** channels */
  C: number;
  /** padded vocabulary (rows of wte) */
  Vp: number;
  /** positions (rows of wpe) */
  maxT: number;
  /** where wte and wpe start in the flat gradient vector (llm.c's order: 0 and Vp·C) */
  wteOffset: number;
  wpeOffset: number;
}

export class EmbeddingGradientExchange {
  /** figures of the last finish(): the all-gathers' time in flight and the time blocked waiting for them */
  lastStep: CommTimes = { ms: 0, exposedMs: 0, floats: 0, operations: 0 };
  private readonly ids: Int32Array;
  private readonly rows: Float32Array;
  private pending: MpiRequest[] = [];
  private startedAt = 0;
  private rowsPerRank = 0;
  private T = 0;

  /**
   * `owned` is the part of the flat vector this rank's gradients are final for after the
   * reduction: [0, P) for ZeRO-0, the rank's shard for ZeRO-1. `maxRowsPerRank` is the largest B·T.
   */
  constructor(readonly dist: Distributed, readonly layout: EmbeddingLayout, readonly owned: { start: number; end: number }, readonly maxRowsPerRank: number) {
    const { C, Vp, maxT, wteOffset, wpeOffset } = layout;
    for (const [name, value] of Object.entries({ C, Vp, maxT, maxRowsPerRank })) {
      if (!Number.isInteger(value) || value < 1) throw new Error(`EmbeddingGradientExchange: ${name} must be a positive integer, got ${value}`);
    }
    if (!Number.isInteger(wteOffset) || !Number.isInteger(wpeOffset) || wteOffset < 0 || wpeOffset < 0) throw new Error("EmbeddingGradientExchange: wteOffset and wpeOffset must be integers ≥ 0");
    if (dist.size * maxRowsPerRank * C > INT_MAX) throw new Error(`EmbeddingGradientExchange: ${dist.size} ranks × ${maxRowsPerRank} rows × ${C} channels exceed the 2^31-1 elements one all-gather can place`);
    this.ids = new Int32Array(dist.size * maxRowsPerRank);
    this.rows = new Float32Array(dist.size * maxRowsPerRank * C);
  }

  /** Posts the all-gathers of this rank's token ids (B·T) and encoder-output gradients (B·T·C). Same B·T on every rank. */
  start(inputs: Int32Array, dout: Float32Array, B: number, T: number): void {
    const fn = "EmbeddingGradientExchange.start";
    if (this.pending.length > 0) throw new Error(`${fn}: the previous exchange has not finished`);
    const { C, Vp, maxT } = this.layout;
    const n = B * T;
    if (!Number.isInteger(B) || !Number.isInteger(T) || B < 1 || T < 1 || T > maxT || n > this.maxRowsPerRank) throw new Error(`${fn}: B=${B}, T=${T} must be positive with T ≤ maxT (${maxT}) and B·T ≤ ${this.maxRowsPerRank}`);
    if (!(inputs instanceof Int32Array) || inputs.length !== n) throw new Error(`${fn}: inputs must be an Int32Array of B·T = ${n} ids`);
    if (!(dout instanceof Float32Array) || dout.length !== n * C) throw new Error(`${fn}: dout must be a Float32Array of B·T·C = ${n * C} floats`);
    for (let i = 0; i < n; i++) {
      if (!(inputs[i] >= 0 && inputs[i] < Vp)) throw new Error(`${fn}: inputs[${i}] is ${inputs[i]}, outside [0, Vp = ${Vp})`);
    }
    const N = this.dist.size;
    const me = this.dist.rank;
    const ids = this.ids.subarray(0, N * n);
    const rows = this.rows.subarray(0, N * n * C);
    ids.set(inputs, me * n);
    rows.set(dout, me * n * C);
    const each = (k: number) => Array.from({ length: N }, () => k);
    const at = (k: number) => Array.from({ length: N }, (_, r) => r * k);
    this.startedAt = performance.now();
    this.pending = [this.dist.mpi.iallgatherv(null, ids, each(n), at(n)), this.dist.mpi.iallgatherv(null, rows, each(n * C), at(n * C))];
    this.rowsPerRank = n;
    this.T = T;
  }

  progress(): void {
    if (this.pending.length > 0) this.dist.test(this.pending);
  }

  /**
   * Waits for the all-gathers, then adds every rank's rows into `grads` inside the owned range:
   * dwte[id] += row and dwpe[t] += row, rank after rank, in token order.
   */
  finish(grads: Float32Array): CommTimes {
    if (this.pending.length === 0) throw new Error("EmbeddingGradientExchange.finish: start() was not called");
    const waitedMs = this.dist.wait(this.pending, "all-gather of the encoder's embedding-gradient rows");
    const done = performance.now();
    this.pending = [];
    const { C, wteOffset, wpeOffset } = this.layout;
    const { start: lo, end: hi } = this.owned;
    const n = this.rowsPerRank;
    const total = this.dist.size * n;
    for (let row = 0; row < total; row++) {
      const t = (row % n) % this.T;
      const source = row * C;
      addRow(grads, wteOffset + this.ids[row] * C, this.rows, source, C, lo, hi);
      addRow(grads, wpeOffset + t * C, this.rows, source, C, lo, hi);
    }
    this.lastStep = { ms: done - this.startedAt, exposedMs: waitedMs, floats: total * C, operations: 2 };
    return this.lastStep;
  }
}

/** grads[at + c] += rows[source + c] for the c with at + c in [lo, hi). */
function addRow(grads: Float32Array, at: number, rows: Float32Array, source: number, C: number, lo: number, hi: number): void {
  const first = Math.max(0, lo - at);
  const last = Math.min(C, hi - at);
  for (let c = first; c < last; c++) grads[at + c] += rows[source + c];
}
