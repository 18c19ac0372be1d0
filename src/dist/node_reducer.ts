// ZeRO-1's gradient reduction when every rank is on one machine: the ranks' gradient buffers are
// the segments of one shared-memory window (MPI_Win_allocate_shared, `Distributed.
// allocateSharedSegments`), so the owner of a shard adds the ranks' gradients over it directly —
// one pass of N reads and one write per element (kernels/segments.zig) — instead of receiving them
// through MPI (a copy into a temporary, then the sum). On one machine a message-passing reduction
// is the ranks' own cores copying anyway; this is the same work without the copy (measured on the
// project's 2-core VM, d12's 124M floats on 2 ranks: MPI's reduce to the owners 194 ms, this 57 ms,
// of which ~13 ms are the page faults of mapping the other rank's released pages again).
//
// Like GradientReducer it works during the backward pass: the caller readies ranges as they become
// final (`ready`, the same ranges in the same order on every rank), and each rank publishes how
// many it has readied this step in a shared array of counters (one per rank, written only by
// its rank). A range every rank has readied is final everywhere, so whenever this rank is called
// (`ready`, `progress` between kernels) it sums its shard's part of every such range at once:
// rank r sums [r·S, (r+1)·S) ∩ range over the segments in rank order into its own segment, and
// drops the other segments' pages of it from its page tables again (the data stays: reading
// another rank's gradients does not grow this rank's resident set). waitAll() then
//   1. barrier: every rank's gradients are final;
//   2. sums what is left of its shard (ranges never readied — wte and wpe, which the encoder
//      finishes last — and ranges the other ranks readied too late), resets its counter;
//   3. barrier: no rank reads another's segment any more, so each may zero its own for the next
//      step (and every counter is 0 again).
// Each element's sum is the float32 sum in rank order, wherever it was done; the squares of the
// sums (the shard's part of the gradient norm) come from the same passes and are added in a fixed
// order (readied ranges in readying order, then the rest in index order), so the result does not
// depend on when a range was summed. The additions take the cores that compute either way (all of
// the time spent in them counts as exposed); what the per-range schedule buys is that most of
// them happen during the backward pass, while the segments were just written, instead of after it.
// Across machines the trainer keeps GradientReducer.
import { sumSegments } from "../ffi.ts";
import type { Distributed } from "./distributed.ts";
import { addCommTimes, type CommTimes, emptyCommTimes, gapsBetween, type GradientReduction } from "./grad_reducer.ts";
import type { SharedSegments } from "./mpi.ts";
import type { ShardLayout } from "./shards.ts";

export class NodeSharedReducer implements GradientReduction {
  readonly grads: Float32Array;
  readonly total = emptyCommTimes();
  completedSteps = 0;
  /** Σ g² over this rank's shard of the last step's sums (float64), from the summing passes themselves */
  shardSquares: number | null = null;
  /** ranges of the last step summed during the backward pass / at waitAll (this rank's view) */
  lastEarly = 0;
  lastLate = 0;
  /** per rank: ranges readied this step (shared memory; rank r writes only entry r) */
  private readonly counters: Int32Array;
  private readonly counterWindow: SharedSegments;
  private readonly shardStart: number;
  private readonly shardEnd: number;
  /** this step's readied ranges in readying order, and the squares of those summed (null: not yet) */
  private readied: Array<[number, number]> = [];
  private squares: Array<number | null> = [];
  /** readied ranges [0, summedThrough) are summed */
  private summedThrough = 0;
  private current = emptyCommTimes();
  /** since when readied ranges wait for their sums (−1: none waits) */
  private busySince = -1;

  /** Collective (allocates the counters in shared memory). */
  constructor(readonly dist: Distributed, readonly segments: SharedSegments, readonly layout: ShardLayout) {
    if (segments.floats !== layout.count) throw new Error(`NodeSharedReducer: segments of ${segments.floats} floats for ${layout.count} parameters`);
    if (layout.ranks !== dist.size || segments.addresses.length !== dist.size) throw new Error(`NodeSharedReducer: ${segments.addresses.length} segments and a layout of ${layout.ranks} shards for ${dist.size} ranks`);
    this.grads = segments.mine;
    this.shardStart = layout.start(dist.rank);
    this.shardEnd = layout.end(dist.rank);
    this.counterWindow = dist.allocateSharedArray(dist.size);
    const view = this.counterWindow.view(0);
    this.counters = new Int32Array(view.buffer, view.byteOffset, dist.size);
    Atomics.store(this.counters, dist.rank, 0);
    dist.barrier("the reduction's counters are zero");
  }

  /** grads[start, end) is final on this rank for this step; sums whatever every rank has readied. */
  ready(start: number, end: number): void {
    const entered = performance.now();
    if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || start < 0 || end <= start || end > this.grads.length) {
      throw new Error(`NodeSharedReducer.ready: range [${start}, ${end}) is empty or outside the ${this.grads.length} gradients`);
    }
    for (const [a, b] of this.readied) {
      if (start < b && a < end) throw new Error(`NodeSharedReducer.ready: range [${start}, ${end}) overlaps [${a}, ${b}), readied earlier this step`);
    }
    if (this.busySince < 0) this.busySince = entered;
    this.readied.push([start, end]);
    this.squares.push(null);
    // Store after the kernels that wrote the range returned: a rank that reads the counter reads the range after it.
    Atomics.store(this.counters, this.dist.rank, this.readied.length);
    this.sumFinal();
    this.current.exposedMs += performance.now() - entered;
  }

  progress(): void {
    if (this.summedThrough === this.readied.length) return;
    const entered = performance.now();
    this.sumFinal();
    this.current.exposedMs += performance.now() - entered;
  }

  waitAll(): CommTimes {
    if (!this.segments.live || !this.counterWindow.live) throw new Error("NodeSharedReducer: the shared segments were freed");
    const entered = performance.now();
    // In flight from here to the end: the ranges never readied, and any readied ones not summed yet.
    if (this.busySince < 0) this.busySince = entered;
    this.dist.barrier("the gradients of every rank are final");
    this.lastEarly = this.summedThrough;
    for (let k = this.summedThrough; k < this.readied.length; k++) this.squares[k] = this.sumShardPart(this.readied[k][0], this.readied[k][1]);
    this.summedThrough = this.readied.length;
    const rest = gapsBetween(this.readied, this.grads.length).map(([a, b]) => this.sumShardPart(a, b));
    this.lastLate = this.readied.length - this.lastEarly + rest.length;
    let total = 0;
    for (const s of this.squares) total += s!;
    for (const s of rest) total += s;
    this.shardSquares = total;
    Atomics.store(this.counters, this.dist.rank, 0);
    this.dist.barrier("every shard is summed");
    const now = performance.now();
    this.current.ms += now - this.busySince;
    this.current.exposedMs += now - entered;
    this.current.operations += 2; // the barriers
    const times = { ...this.current, floats: this.layout.count };
    this.current = emptyCommTimes();
    this.readied = [];
    this.squares = [];
    this.summedThrough = 0;
    this.busySince = -1;
    addCommTimes(this.total, times);
    this.completedSteps++;
    return times;
  }

  /** Sums this rank's part of every readied range that every rank has readied (in readying order). */
  private sumFinal(): void {
    let everywhere = this.readied.length;
    for (let r = 0; r < this.dist.size && everywhere > this.summedThrough; r++) {
      if (r !== this.dist.rank) everywhere = Math.min(everywhere, Atomics.load(this.counters, r));
    }
    for (let k = this.summedThrough; k < everywhere; k++) this.squares[k] = this.sumShardPart(this.readied[k][0], this.readied[k][1]);
    this.summedThrough = Math.max(this.summedThrough, everywhere);
    if (this.summedThrough === this.readied.length && this.busySince >= 0) {
      this.current.ms += performance.now() - this.busySince;
      this.busySince = -1;
    }
  }

  /** Sums [a, b) ∩ this rank's shard over the segments in rank order; returns the squares of the sums. */
  private sumShardPart(a: number, b: number): number {
    const start = Math.max(a, this.shardStart), end = Math.min(b, this.shardEnd);
    if (end <= start) return 0;
    return sumSegments(this.segments.addresses, this.dist.rank, start, end - start, this.segments.floats, true);
  }
}
