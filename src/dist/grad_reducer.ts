// Gradient reduction overlapped with the backward pass. The caller owns the flat gradient buffer
// (llm.c's tensor-major order) and says when a contiguous range of it is final for this step —
// e.g. the 12 slices of layer l once its backward is done — with `ready(a, b)`; the reducer posts
// the range's non-blocking reduction at once and progresses everything in flight (MPI_Test) on
// every call, so `progress()` between kernels keeps messages moving while the caller computes.
// `waitAll()` before the optimizer update posts whatever was never readied, waits, and ends the
// step.
//
// At most `maxFloatsInFlight` gradient elements (16M by default) are in flight at once: readied
// ranges are cut into units of at most one MPI call (maxElementsPerCall, and at shard boundaries),
// queued in readying order, and posted as earlier units complete. MPI's temporaries (a ring
// allreduce's receive buffers, a reduce's at the owner) grow with what is in flight: unbounded,
// d12's 124M gradients in 4M-float pieces peaked at ~240 MB of them per rank. Because when a
// queued unit is posted depends on this rank's completions, the reducer's collectives would not
// interleave with other collectives on the same communicator in the same order on every rank:
// give the reducer a communicator of its own (Distributed.duplicate), as the trainer does.
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

/** Gradient elements in flight at once by default: 16M floats (64 MiB), four of MPI's 4M-float pieces. */
export const DEFAULT_MAX_FLOATS_IN_FLIGHT = 2 ** 24;

export interface ReducerOptions {
  /** most gradient elements in flight at once (default DEFAULT_MAX_FLOATS_IN_FLIGHT; at least one unit always is) */
  maxFloatsInFlight?: number;
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

/**
 * What the optimizers need of a gradient reduction: ranges readied during the backward pass,
 * progress between kernels, and the end of the step. GradientReducer (messages through MPI) and
 * NodeSharedReducer (ranks on one machine adding each other's gradients in shared memory).
 */
export interface GradientReduction {
  /** the gradient buffer it reduces */
  readonly grads: Float32Array;
  /** steps ended by waitAll */
  readonly completedSteps: number;
  /** communication summed over all steps */
  readonly total: CommTimes;
  /** Σ g² over this rank's shard of the last reduced step, when the reduction computed it (else null: compute it) */
  readonly shardSquares: number | null;
  ready(start: number, end: number): void;
  progress(): void;
  /** Ends the step: afterwards the buffer holds sums over ranks (ZeRO-1: in this rank's shard). */
  waitAll(): CommTimes;
}

export class GradientReducer implements GradientReduction {
  readonly shardSquares = null;
  /** this step's figures so far, the last completed step's, and the sum over all steps */
  current = emptyCommTimes();
  lastStep = emptyCommTimes();
  readonly total = emptyCommTimes();
  /** waitAll() calls so far: the optimizer checks it has a fresh reduction before it updates */
  completedSteps = 0;
  /**
   * Readied units ([start, end) of at most maxElementsPerCall elements, inside one shard) not
   * posted yet, and the posted ones still in flight with their sizes: at most maxFloatsInFlight
   * gradient elements are in flight at once (MPI's temporaries grow with what is in flight).
   */
  private queue: Array<[number, number]> = [];
  private inFlight: Array<{ requests: MpiRequest[]; floats: number }> = [];
  private inFlightFloats = 0;
  readonly maxFloatsInFlight: number;
  /** ranges readied this step, in posting order */
  private readied: Array<[number, number]> = [];
  private busySince = 0;
  private sequenceHashA = 0x811c9dc5;
  private sequenceHashB = 0x2545f491;

  /** `layout` null: ZeRO-0 (allreduce); a layout: ZeRO-1 (reduce to owners). */
  constructor(readonly dist: Distributed, readonly grads: Float32Array, readonly layout: ShardLayout | null, options: ReducerOptions = {}) {
    if (!(grads instanceof Float32Array) || grads.length < 1) throw new Error("GradientReducer: grads must be a non-empty Float32Array");
    const cap = options.maxFloatsInFlight ?? DEFAULT_MAX_FLOATS_IN_FLIGHT;
    if (!Number.isSafeInteger(cap) || cap < 1) throw new Error(`GradientReducer: maxFloatsInFlight must be a positive integer, got ${cap}`);
    this.maxFloatsInFlight = cap;
    if (layout !== null && (layout.count !== grads.length || layout.ranks !== dist.size)) {
      throw new Error(`GradientReducer: the layout (${layout.count} elements over ${layout.ranks} ranks) does not match the gradients (${grads.length}) and the job (${dist.size} ranks)`);
    }
  }

  /** Posts the reduction of grads[start, end), final for this step on this rank. */
  ready(start: number, end: number): void {
    const entered = performance.now();
    this.post(start, end);
    this.pump();
    this.poll();
    this.current.exposedMs += performance.now() - entered;
  }

  /** Progresses the reductions in flight; cheap when there are none. */
  progress(): void {
    if (this.inFlight.length === 0) return;
    const entered = performance.now();
    this.poll();
    this.current.exposedMs += performance.now() - entered;
  }

  /** Ranges not readied yet this step, in index order. */
  unreadied(): Array<[number, number]> {
    return gapsBetween(this.readied, this.grads.length);
  }

  /**
   * Posts the ranges never readied (in index order), waits for everything, checks that every rank
   * posted the same ranges in the same order, and ends the step. Returns the step's figures.
   */
  waitAll(): CommTimes {
    const entered = performance.now();
    for (const [a, b] of this.unreadied()) this.post(a, b);
    this.pump();
    while (this.inFlight.length > 0) {
      const oldest = this.inFlight[0];
      this.dist.wait(oldest.requests, `gradient reduction (${oldest.requests.length} operations of ${oldest.floats} floats; ${this.queue.length} more queued, ${this.current.floats} floats this step)`);
      this.poll();
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
    // Units: pieces MPI takes in one call, cut at shard boundaries (ZeRO-1) so that each is one operation per owner.
    const M = this.dist.maxElementsPerCall;
    const cuts = this.layout === null ? [{ start, end }] : this.layout.piecesOf(start, end);
    for (const piece of cuts) for (let a = piece.start; a < piece.end; a += M) this.queue.push([a, Math.min(piece.end, a + M)]);
    this.readied.push([start, end]);
    this.current.floats += end - start;
    this.sequenceHashA = mix(mix(this.sequenceHashA, start), end);
    this.sequenceHashB = mix(mix(this.sequenceHashB, end), start);
  }

  /** Posts queued units, in order, while what is in flight stays within maxFloatsInFlight (always at least one unit). */
  private pump(): void {
    while (this.queue.length > 0) {
      const [a, b] = this.queue[0];
      if (this.inFlight.length > 0 && this.inFlightFloats + (b - a) > this.maxFloatsInFlight) return;
      this.queue.shift();
      // In flight from the moment of posting: on shared memory a post may already move data.
      const posted = performance.now();
      const requests = this.layout === null ? this.dist.startAllreduce(this.grads.subarray(a, b)) : this.dist.startReduceToOwners(this.grads, this.layout, a, b);
      if (this.inFlight.length === 0) this.busySince = posted;
      this.inFlight.push({ requests, floats: b - a });
      this.inFlightFloats += b - a;
      this.current.operations += requests.length;
    }
  }

  /** One progress pass over what is in flight; completed units make room for queued ones. */
  private poll(): void {
    if (this.inFlight.length === 0) return;
    const still: Array<{ requests: MpiRequest[]; floats: number }> = [];
    for (const unit of this.inFlight) {
      if (this.dist.test(unit.requests)) this.inFlightFloats -= unit.floats;
      else still.push(unit);
    }
    this.inFlight = still;
    if (still.length === 0) this.current.ms += performance.now() - this.busySince;
    this.pump();
  }
}

/** The parts of [0, n) no range of `ranges` covers, in index order. */
export function gapsBetween(ranges: Array<[number, number]>, n: number): Array<[number, number]> {
  const sorted = [...ranges].sort((x, y) => x[0] - y[0]);
  const gaps: Array<[number, number]> = [];
  let at = 0;
  for (const [a, b] of sorted) {
    if (a > at) gaps.push([at, a]);
    at = Math.max(at, b);
  }
  if (at < n) gaps.push([at, n]);
  return gaps;
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
