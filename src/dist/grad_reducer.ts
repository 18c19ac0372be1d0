// Gradient reduction overlapped with the backward pass. The caller owns the flat gradient buffer
// (llm.c's tensor-major order) and says when a contiguous range of it is final for this step —
// e.g. the 12 slices of layer l once its backward is done — with `ready(a, b)`; the reducer posts
// the range's non-blocking reduction at once and progresses everything in flight (MPI_Test) on
// every call, so `progress()` between kernels keeps messages moving while the caller computes.
// `waitAll()` before the optimizer update posts whatever was never readied, waits, and ends the
// step.
//
// - ZeRO-0 (no layout): MPI_Iallreduce in place; afterwards every rank holds the sum over ranks.
// - ZeRO-1 (a ShardLayout): each range is reduced to the owners of its pieces (MPI_Ireduce, in
//   place at the owner); afterwards rank r's shard [r·S, (r+1)·S) of the buffer holds the sum over
//   ranks, and the rest of the buffer holds stale local gradients the update must not read.
// Sums, not means: the optimizer folds the 1/N into AdamW's gradient scale (one rounding, no extra
// pass over the gradients).
//
// Every rank must ready the same ranges in the same order (MPI matches collectives by order); the
// reducer checks that at `waitAll` (one 2-number allgather) and throws when the ranks disagree.
// With gradient accumulation, ready ranges only during the last micro-batch's backward.
import type { Distributed } from "./distributed.ts";
import type { MpiRequest } from "./mpi.ts";
import type { ShardLayout } from "./shards.ts";

export interface CommTimes {
  /** wall time during which at least one reduction was in flight, as observed by the polls (ms) */
  ms: number;
  /** time the caller spent inside the reducer — posting, testing, waiting — i.e. not computing (ms) */
  exposedMs: number;
  /** gradient elements reduced */
  floats: number;
  /** MPI operations posted */
  operations: number;
}

export function emptyCommTimes(): CommTimes {
  return { ms: 0, exposedMs: 0, floats: 0, operations: 0 };
}

export function addCommTimes(into: CommTimes, add: CommTimes): void {
  into.ms += add.ms;
  into.exposedMs += add.exposedMs;
  into.floats += add.floats;
  into.operations += add.operations;
}

export class GradientReducer {
  /** this step's figures so far, the last completed step's, and the sum over all steps */
  current = emptyCommTimes();
  lastStep = emptyCommTimes();
  readonly total = emptyCommTimes();
  /** waitAll() calls so far: the optimizer checks it has a fresh reduction before it updates */
  completedSteps = 0;
  private pending: MpiRequest[] = [];
  /** ranges readied this step, in posting order */
  private readied: Array<[number, number]> = [];
  private busySince = 0;
  private sequenceHashA = 0x811c9dc5;
  private sequenceHashB = 0x2545f491;

  /** `layout` null: ZeRO-0 (allreduce); a layout: ZeRO-1 (reduce to owners). */
  constructor(readonly dist: Distributed, readonly grads: Float32Array, readonly layout: ShardLayout | null) {
    if (!(grads instanceof Float32Array) || grads.length < 1) throw new Error("GradientReducer: grads must be a non-empty Float32Array");
    if (layout !== null && (layout.count !== grads.length || layout.ranks !== dist.size)) {
      throw new Error(`GradientReducer: the layout (${layout.count} elements over ${layout.ranks} ranks) does not match the gradients (${grads.length}) and the job (${dist.size} ranks)`);
    }
  }

  /** Posts the reduction of grads[start, end), final for this step on this rank. */
  ready(start: number, end: number): void {
    const entered = performance.now();
    this.post(start, end);
    this.poll();
    this.current.exposedMs += performance.now() - entered;
  }

  /** Progresses the reductions in flight; cheap when there are none. */
  progress(): void {
    if (this.pending.length === 0) return;
    const entered = performance.now();
    this.poll();
    this.current.exposedMs += performance.now() - entered;
  }

  /** Ranges not readied yet this step, in index order. */
  unreadied(): Array<[number, number]> {
    const sorted = [...this.readied].sort((x, y) => x[0] - y[0]);
    const gaps: Array<[number, number]> = [];
    let at = 0;
    for (const [a, b] of sorted) {
      if (a > at) gaps.push([at, a]);
      at = Math.max(at, b);
    }
    if (at < this.grads.length) gaps.push([at, this.grads.length]);
    return gaps;
  }

  /**
   * Posts the ranges never readied (in index order), waits for everything, checks that every rank
   * posted the same ranges in the same order, and ends the step. Returns the step's figures.
   */
  waitAll(): CommTimes {
    const entered = performance.now();
    for (const [a, b] of this.unreadied()) this.post(a, b);
    if (this.pending.length > 0) {
      this.dist.wait(this.pending, `gradient reduction (${this.pending.length} operations, ${this.current.floats} floats)`);
      this.finishBusy(performance.now());
    }
    const checkStarted = performance.now();
    const hashes = this.dist.allgatherF64(new Float64Array([this.sequenceHashA >>> 0, this.sequenceHashB >>> 0]));
    const now = performance.now();
    this.current.ms += now - checkStarted;
    this.current.exposedMs += now - entered;
    const step = this.current;
    this.current = emptyCommTimes();
    this.readied = [];
    this.sequenceHashA = 0x811c9dc5;
    this.sequenceHashB = 0x2545f491;
    this.lastStep = step;
    addCommTimes(this.total, step);
    this.completedSteps++;
    for (let r = 1; r < this.dist.size; r++) {
      if (hashes[2 * r] !== hashes[0] || hashes[2 * r + 1] !== hashes[1]) {
        throw new Error(`the ranks posted different gradient ranges (rank ${r} differs from rank 0): every rank must ready the same ranges in the same order; the reduced gradients are wrong`);
      }
    }
    return step;
  }

  private post(start: number, end: number): void {
    const n = this.grads.length;
    if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || start < 0 || end <= start || end > n) {
      throw new Error(`GradientReducer.ready: range [${start}, ${end}) is empty or outside the ${n} gradients`);
    }
    for (const [a, b] of this.readied) {
      if (start < b && a < end) throw new Error(`GradientReducer.ready: range [${start}, ${end}) overlaps [${a}, ${b}), readied earlier this step`);
    }
    // In flight from the moment of posting: on shared memory a post may already move data.
    const posted = performance.now();
    const requests = this.layout === null ? this.dist.startAllreduce(this.grads.subarray(start, end)) : this.dist.startReduceToOwners(this.grads, this.layout, start, end);
    if (this.pending.length === 0) this.busySince = posted;
    for (const r of requests) this.pending.push(r);
    this.readied.push([start, end]);
    this.current.floats += end - start;
    this.current.operations += requests.length;
    this.sequenceHashA = mix(mix(this.sequenceHashA, start), end);
    this.sequenceHashB = mix(mix(this.sequenceHashB, end), start);
  }

  private poll(): void {
    if (this.pending.length === 0) return;
    if (this.dist.test(this.pending)) this.finishBusy(performance.now());
    else this.pending = this.pending.filter((r) => !r.done);
  }

  private finishBusy(now: number): void {
    this.current.ms += now - this.busySince;
    this.pending = [];
  }
}

/** FNV-1a-style mixing of a (safe) integer into a 32-bit hash. */
function mix(hash: number, value: number): number {
  let h = hash;
  let v = value;
  for (let i = 0; i < 7; i++) {
    h = Math.imul(h ^ (v & 0xff), 0x01000193);
    v = Math.floor(v / 256);
  }
  return h >>> 0;
}
