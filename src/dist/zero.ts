// Data-parallel AdamW behind one interface, so the trainer switches with `--zero 0|1`:
//
// - ZeRO-0 (`ReplicatedAdamW`): gradients all-reduced, every rank holds the full moments and
//   runs the full AdamW update; the parameters stay identical because the reduced gradients are.
// - ZeRO-1 (`ShardedAdamW`): rank r owns the contiguous shard [r·S, min((r+1)·S, P)) of the flat
//   parameter vector (S = ceil(P/N), the last shard shorter when N does not divide P). Gradients
//   are reduced to their owners during the backward pass, each rank runs the existing AdamW kernel
//   on its shard's parameters, gradients and moments only (subarrays), then the updated parameters
//   are all-gathered. The moments take 2·S floats per rank instead of 2·P. On one machine the
//   reduction can be a NodeSharedReducer (gradients in shared memory) and the parameters one
//   shared copy (`sharedParams`): the update then ends with a barrier instead of the all-gather.
//
// Both see the gradient buffer as per-rank sums (GradientReducer) and fold the mean over ranks
// into AdamW's gradient scale: update(lr, gradScale) applies AdamW to Σ_r g_r · (gradScale / N).
// The global gradient norm is the norm of that mean: ZeRO-1 adds the shards' Σg² (float64) in rank
// order on every rank, so clipping uses the same global value everywhere.
//
// Checkpoints do not depend on N: `streamMomentsToRoot`/`gatherMoments` assemble the full m and v
// on rank 0, `loadMoments` takes full m and v on rank 0 and hands every rank its part, so a run
// saved with N ranks resumes with M ranks or in one process (plain AdamW).
import { gradNormSquared } from "../ffi.ts";
import { AdamW, type AdamWHyperparameters } from "../optim/adamw.ts";
import type { Distributed } from "./distributed.ts";
import { addCommTimes, type CommTimes, emptyCommTimes, type GradientReduction, GradientReducer, type ReducerOptions } from "./grad_reducer.ts";
import type { MpiRequest, SharedSegments } from "./mpi.ts";
import { NodeSharedReducer } from "./node_reducer.ts";
import type { ParameterGather } from "./param_gather.ts";
import { ShardLayout } from "./shards.ts";

export type ZeroStage = 0 | 1;

/** Rank 0 receives the full moments in consecutive chunks: m and v of [offset, offset + m.length). */
export type MomentVisitor = (offset: number, m: Float32Array, v: Float32Array) => void;

export interface DataParallelOptimizer {
  readonly zero: ZeroStage;
  readonly hyper: AdamWHyperparameters;
  readonly paramCount: number;
  /** reduces `grads` during the backward pass; call its waitAll() before gradNorm()/update() */
  readonly reducer: GradientReduction;
  /** updates done so far (the next update uses step + 1 for the bias correction) */
  readonly step: number;
  /** bytes of AdamW moments this rank holds */
  readonly momentBytes: number;
  /** communication of the last update (ZeRO-1: the parameter all-gather; ZeRO-0: none) */
  readonly lastUpdateComm: CommTimes;
  /** L2 norm of the rank-averaged gradient over all parameters, identical on every rank */
  gradNorm(): number;
  /** step += 1, then params -= AdamW(mean over ranks of the gradients · gradScale) with rate lr */
  update(params: Float32Array, lr: number, gradScale?: number): void;
  /** Collective. On rank 0, visits the full m and v chunk by chunk in index order; elsewhere sends this rank's part. */
  streamMomentsToRoot(visit: MomentVisitor): void;
  /** Collective. Like streamMomentsToRoot for one moment ("m" or "v"), e.g. for a checkpoint writer that writes m whole, then v. */
  streamMomentToRoot(which: "m" | "v", visit: (offset: number, values: Float32Array) => void): void;
  /** Collective. The full m and v on rank 0, null elsewhere. */
  gatherMoments(): { m: Float32Array; v: Float32Array } | null;
  /** Collective. Rank 0 passes the full m and v (any run's: they do not depend on N), the others null; rank 0's step is used. */
  loadMoments(full: { m: Float32Array; v: Float32Array } | null, step: number): void;
}

/**
 * The optimizer for `zero`: ZeRO-0 or ZeRO-1 over `dist`, for the gradient buffer `grads`
 * (the model's flat gradients: one float per parameter). With `shared` (ZeRO-1, every rank on
 * this machine, `grads` this rank's segment of it) the gradients are reduced in shared memory
 * (NodeSharedReducer) instead of through MPI; with `sharedParams`, updates of those parameters
 * (one copy every rank trains) end with a barrier instead of the all-gather.
 */
export function createDataParallelOptimizer(dist: Distributed, grads: Float32Array, hyper: Partial<AdamWHyperparameters>, zero: ZeroStage, reducer: ReducerOptions = {}, shared: SharedSegments | null = null, sharedParams: Float32Array | null = null): DataParallelOptimizer {
  if ((shared !== null || sharedParams !== null) && zero !== 1) throw new Error("createDataParallelOptimizer: shared segments and shared parameters are for ZeRO-1");
  if (shared !== null && shared.mine !== grads) throw new Error("createDataParallelOptimizer: with shared segments, grads must be this rank's segment");
  if (zero === 0) return new ReplicatedAdamW(dist, grads, hyper, reducer);
  if (zero === 1) return new ShardedAdamW(dist, grads, hyper, reducer, shared === null ? null : (layout) => new NodeSharedReducer(dist, shared, layout), sharedParams);
  throw new Error(`--zero must be 0 or 1, got ${String(zero)}`);
}

const TAG_M = 11;
const TAG_V = 12;

function checkUpdate(fn: string, params: Float32Array, count: number, lr: number, gradScale: number): void {
  if (!(params instanceof Float32Array) || params.length !== count) throw new Error(`${fn}: params must be a Float32Array of ${count} floats, got ${params?.length}`);
  if (!(Number.isFinite(lr) && lr >= 0)) throw new Error(`${fn}: lr must be a finite number ≥ 0, got ${lr}`);
  if (!Number.isFinite(gradScale)) throw new Error(`${fn}: gradScale must be finite, got ${gradScale}`);
}

/** Throws unless the reducer finished a step (waitAll) since the last update. */
function checkReduced(fn: string, reducer: GradientReduction, updatedAfter: number): void {
  if (reducer.completedSteps <= updatedAfter) throw new Error(`${fn}: the gradients of this step are not reduced yet: call reducer.waitAll() first`);
}

function checkFullMoments(fn: string, full: { m: Float32Array; v: Float32Array } | null, count: number): { m: Float32Array; v: Float32Array } {
  if (full === null || !(full.m instanceof Float32Array) || !(full.v instanceof Float32Array)) throw new Error(`${fn}: rank 0 must pass the full moments m and v`);
  if (full.m.length !== count || full.v.length !== count) throw new Error(`${fn}: the moments hold ${full.m.length} and ${full.v.length} floats, the model has ${count} parameters`);
  return full;
}

function checkStep(fn: string, step: number): void {
  if (!Number.isSafeInteger(step) || step < 0) throw new Error(`${fn}: step must be an integer ≥ 0, got ${step}`);
}

/** Rank 0's step on every rank. */
function broadcastStep(dist: Distributed, step: number): number {
  const out = new Float64Array([step]);
  dist.broadcast(out, 0, "broadcast of the optimizer step");
  return out[0];
}

export class ReplicatedAdamW implements DataParallelOptimizer {
  readonly zero = 0 as const;
  readonly hyper: AdamWHyperparameters;
  readonly paramCount: number;
  readonly reducer: GradientReducer;
  readonly lastUpdateComm = emptyCommTimes();
  private readonly adam: AdamW;
  /** reducer.completedSteps at the last update */
  private reducedAtUpdate = 0;

  constructor(readonly dist: Distributed, readonly grads: Float32Array, hyper: Partial<AdamWHyperparameters> = {}, reducer: ReducerOptions = {}) {
    this.paramCount = grads.length;
    this.adam = new AdamW(grads.length, hyper);
    this.hyper = this.adam.hyper;
    this.reducer = new GradientReducer(dist, grads, null, reducer);
  }

  get step(): number {
    return this.adam.step;
  }

  get momentBytes(): number {
    return 8 * this.paramCount;
  }

  gradNorm(): number {
    checkReduced("ReplicatedAdamW.gradNorm", this.reducer, this.reducedAtUpdate);
    return Math.sqrt(gradNormSquared(this.grads)) / this.dist.size;
  }

  update(params: Float32Array, lr: number, gradScale = 1): void {
    checkUpdate("ReplicatedAdamW.update", params, this.paramCount, lr, gradScale);
    checkReduced("ReplicatedAdamW.update", this.reducer, this.reducedAtUpdate);
    this.adam.update(params, this.grads, lr, gradScale / this.dist.size);
    this.reducedAtUpdate = this.reducer.completedSteps;
  }

  streamMomentsToRoot(visit: MomentVisitor): void {
    if (this.dist.isRoot) visit(0, this.adam.m, this.adam.v);
    this.dist.barrier("moments to rank 0");
  }

  streamMomentToRoot(which: "m" | "v", visit: (offset: number, values: Float32Array) => void): void {
    if (this.dist.isRoot) visit(0, which === "m" ? this.adam.m : this.adam.v);
    this.dist.barrier(`AdamW ${which} to rank 0`);
  }

  gatherMoments(): { m: Float32Array; v: Float32Array } | null {
    let out: { m: Float32Array; v: Float32Array } | null = null;
    this.streamMomentsToRoot((_, m, v) => (out = { m: m.slice(), v: v.slice() }));
    return out;
  }

  loadMoments(full: { m: Float32Array; v: Float32Array } | null, step: number): void {
    const fn = "ReplicatedAdamW.loadMoments";
    if (this.dist.isRoot) {
      const f = checkFullMoments(fn, full, this.paramCount);
      checkStep(fn, step);
      this.adam.m.set(f.m);
      this.adam.v.set(f.v);
    }
    const requests = [...this.dist.startBroadcast(this.adam.m, 0), ...this.dist.startBroadcast(this.adam.v, 0)];
    this.dist.wait(requests, "broadcast of the AdamW moments");
    this.adam.step = broadcastStep(this.dist, step);
  }
}

export class ShardedAdamW implements DataParallelOptimizer {
  readonly zero = 1 as const;
  readonly hyper: AdamWHyperparameters;
  readonly paramCount: number;
  readonly layout: ShardLayout;
  readonly reducer: GradientReduction;
  lastUpdateComm = emptyCommTimes();
  readonly totalUpdateComm = emptyCommTimes();
  /**
   * Parameters every rank shares (one machine, src/train/data_parallel.ts): update() on them
   * updates this rank's shard in place and waits for the others (a barrier) instead of
   * all-gathering the shards. Null: every rank has its own copy.
   */
  readonly sharedParams: Float32Array | null;
  /** set by deferGather: updates of its parameters post the all-gather and return */
  private gather: ParameterGather | null = null;
  /** this rank's shard [shardStart, shardEnd) of the flat vector */
  readonly shardStart: number;
  readonly shardEnd: number;
  /** AdamW over the shard only; null when the shard is empty (more ranks than parameters need) */
  private readonly adam: AdamW | null;
  private stepCount = 0;
  /** reducer.completedSteps at the last update */
  private reducedAtUpdate = 0;

  /**
   * `reduction` makes the gradient reduction for the layout (default: GradientReducer through MPI);
   * `sharedParams`: see the field.
   */
  constructor(readonly dist: Distributed, readonly grads: Float32Array, hyper: Partial<AdamWHyperparameters> = {}, reducer: ReducerOptions = {}, reduction: ((layout: ShardLayout) => GradientReduction) | null = null, sharedParams: Float32Array | null = null) {
    this.paramCount = grads.length;
    if (sharedParams !== null && sharedParams.length !== grads.length) throw new Error(`ShardedAdamW: shared parameters of ${sharedParams.length} floats for ${grads.length} gradients`);
    this.sharedParams = sharedParams;
    this.layout = new ShardLayout(grads.length, dist.size);
    this.shardStart = this.layout.start(dist.rank);
    this.shardEnd = this.layout.end(dist.rank);
    const length = this.shardEnd - this.shardStart;
    this.adam = length > 0 ? new AdamW(length, hyper) : null;
    // AdamW checks the hyperparameters: a rank with an empty shard checks them too.
    this.hyper = this.adam?.hyper ?? new AdamW(1, hyper).hyper;
    this.reducer = reduction?.(this.layout) ?? new GradientReducer(dist, grads, this.layout, reducer);
    if (this.reducer.grads !== grads) throw new Error("ShardedAdamW: the reduction must reduce this optimizer's gradient buffer");
  }

  get step(): number {
    return this.stepCount;
  }

  /**
   * From now on, update() of `gather.params` posts the all-gather of the updated shards and
   * returns without waiting: the caller waits for it part by part (ParameterGather.before, e.g.
   * through the next forward pass) or whole (settle) before it reads the other ranks' shards.
   */
  deferGather(gather: ParameterGather): void {
    if (this.sharedParams !== null) throw new Error("ShardedAdamW.deferGather: shared parameters need no all-gather");
    if (gather.layout.count !== this.layout.count || gather.layout.ranks !== this.layout.ranks) throw new Error("ShardedAdamW.deferGather: the gather's shards are not this optimizer's");
    this.gather = gather;
  }

  get momentBytes(): number {
    return 8 * (this.shardEnd - this.shardStart);
  }

  /** This rank's moments (views of its shard). */
  get shardMoments(): { m: Float32Array; v: Float32Array } {
    return this.adam === null ? { m: new Float32Array(0), v: new Float32Array(0) } : { m: this.adam.m, v: this.adam.v };
  }

  gradNorm(): number {
    checkReduced("ShardedAdamW.gradNorm", this.reducer, this.reducedAtUpdate);
    // A reduction in shared memory has added up the squares in its summing pass already.
    const mine = this.reducer.shardSquares ?? (this.shardEnd > this.shardStart ? gradNormSquared(this.grads.subarray(this.shardStart, this.shardEnd)) : 0);
    return Math.sqrt(this.dist.sumF64([mine])[0]) / this.dist.size;
  }

  update(params: Float32Array, lr: number, gradScale = 1): void {
    checkUpdate("ShardedAdamW.update", params, this.paramCount, lr, gradScale);
    checkReduced("ShardedAdamW.update", this.reducer, this.reducedAtUpdate);
    this.reducedAtUpdate = this.reducer.completedSteps;
    if (this.adam !== null) {
      this.adam.step = this.stepCount;
      this.adam.update(params.subarray(this.shardStart, this.shardEnd), this.grads.subarray(this.shardStart, this.shardEnd), lr, gradScale / this.dist.size);
    }
    this.stepCount += 1;
    const started = performance.now();
    let requests: MpiRequest[] = [];
    // Deferred: the gather's own figures count when it completes (ParameterGather.lastGather).
    const deferred = this.gather !== null && params === this.gather.params; // never the shared parameters: deferGather refuses them
    if (params === this.sharedParams) this.dist.barrier("every shard of the shared parameters updated");
    else if (deferred) this.gather!.start();
    else {
      requests = this.dist.startAllgatherShards(params, this.layout);
      this.dist.wait(requests, "all-gather of the updated parameters");
    }
    const ms = performance.now() - started;
    this.lastUpdateComm = deferred ? emptyCommTimes() : { ms, exposedMs: ms, floats: this.paramCount, operations: requests.length };
    addCommTimes(this.totalUpdateComm, this.lastUpdateComm);
  }

  streamMomentsToRoot(visit: MomentVisitor): void {
    const { m, v } = this.shardMoments;
    if (!this.dist.isRoot) {
      if (m.length === 0) return; // rank 0 expects nothing from an empty shard
      const requests = [...this.dist.startSend(m, 0, TAG_M), ...this.dist.startSend(v, 0, TAG_V)];
      this.dist.wait(requests, "sending the AdamW moments to rank 0");
      return;
    }
    if (m.length > 0) visit(0, m, v);
    const chunk = Math.min(this.layout.shardSize, this.dist.maxElementsPerCall);
    const mChunk = new Float32Array(chunk);
    const vChunk = new Float32Array(chunk);
    for (let r = 1; r < this.dist.size; r++) {
      const start = this.layout.start(r);
      const length = this.layout.length(r);
      for (let offset = 0; offset < length; offset += chunk) {
        const n = Math.min(chunk, length - offset);
        const requests: MpiRequest[] = [this.dist.mpi.irecv(mChunk.subarray(0, n), r, TAG_M), this.dist.mpi.irecv(vChunk.subarray(0, n), r, TAG_V)];
        this.dist.wait(requests, `receiving the AdamW moments of rank ${r}`);
        visit(start + offset, mChunk.subarray(0, n), vChunk.subarray(0, n));
      }
    }
  }

  streamMomentToRoot(which: "m" | "v", visit: (offset: number, values: Float32Array) => void): void {
    const mine = which === "m" ? this.shardMoments.m : this.shardMoments.v;
    const tag = which === "m" ? TAG_M : TAG_V;
    if (!this.dist.isRoot) {
      if (mine.length === 0) return; // rank 0 expects nothing from an empty shard
      this.dist.wait(this.dist.startSend(mine, 0, tag), `sending the AdamW ${which} to rank 0`);
      return;
    }
    if (mine.length > 0) visit(0, mine);
    const chunk = Math.min(this.layout.shardSize, this.dist.maxElementsPerCall);
    const buffer = new Float32Array(chunk);
    for (let r = 1; r < this.dist.size; r++) {
      const start = this.layout.start(r);
      const length = this.layout.length(r);
      for (let offset = 0; offset < length; offset += chunk) {
        const n = Math.min(chunk, length - offset);
        this.dist.wait([this.dist.mpi.irecv(buffer.subarray(0, n), r, tag)], `receiving the AdamW ${which} of rank ${r}`);
        visit(start + offset, buffer.subarray(0, n));
      }
    }
  }

  gatherMoments(): { m: Float32Array; v: Float32Array } | null {
    const full = this.dist.isRoot ? { m: new Float32Array(this.paramCount), v: new Float32Array(this.paramCount) } : null;
    this.streamMomentsToRoot((offset, m, v) => {
      full!.m.set(m, offset);
      full!.v.set(v, offset);
    });
    return full;
  }

  loadMoments(full: { m: Float32Array; v: Float32Array } | null, step: number): void {
    const fn = "ShardedAdamW.loadMoments";
    const { m, v } = this.shardMoments;
    let requests: MpiRequest[] = [];
    if (this.dist.isRoot) {
      const f = checkFullMoments(fn, full, this.paramCount);
      checkStep(fn, step);
      m.set(f.m.subarray(this.shardStart, this.shardEnd));
      v.set(f.v.subarray(this.shardStart, this.shardEnd));
      for (let r = 1; r < this.dist.size; r++) {
        const a = this.layout.start(r);
        const b = this.layout.end(r);
        requests.push(...this.dist.startSend(f.m.subarray(a, b), r, TAG_M), ...this.dist.startSend(f.v.subarray(a, b), r, TAG_V));
      }
    } else {
      requests = [...this.dist.startReceive(m, 0, TAG_M), ...this.dist.startReceive(v, 0, TAG_V)];
    }
    this.dist.wait(requests, "handing out the AdamW moments from rank 0");
    this.stepCount = broadcastStep(this.dist, step);
  }
}

