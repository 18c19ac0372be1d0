// ZeRO-1's gradient reduction when every rank is on one machine: the ranks' gradient buffers are
// the segments of one shared-memory window (MPI_Win_allocate_shared, `Distributed.
// allocateSharedSegments`), so the owner of a shard adds the ranks' gradients over it directly —
// one pass of N reads and one write per element (kernels/segments.zig) — instead of receiving them
// through MPI (a copy into a temporary, then the sum). On one machine a message-passing reduction
// is the ranks' own cores copying anyway; this is the same work without the copy (measured on the
// project's 2-core VM, d12's 124M floats on 2 ranks: MPI's reduce to the owners 194 ms, this 57 ms,
// of which ~13 ms are the page faults of mapping the other rank's released pages again).
//
// The step: every rank runs its backward pass into its own segment; waitAll() then
//   1. barrier: every rank's gradients are final;
//   2. each rank sums its shard [r·S, (r+1)·S) over the segments in rank order, into its own
//      segment, and drops the other segments' pages of the shard from its page tables again (the
//      data stays: reading another rank's gradients does not grow this rank's resident set); the
//      same pass adds up the squares of the sums, the shard's part of the gradient norm;
//   3. barrier: no rank reads another's segment any more, so each may zero its own for the next step.
// The sums are the same numbers GradientReducer's reduce to the owners produces, up to the order
// of the additions (rank order here). Nothing is overlapped with the backward pass: on one machine
// the additions take the cores that compute either way, so all of it counts as exposed.
// ready() and progress() have nothing to do. Across machines the trainer keeps GradientReducer.
import { sumSegments } from "../ffi.ts";
import type { Distributed } from "./distributed.ts";
import { addCommTimes, type CommTimes, emptyCommTimes, type GradientReduction } from "./grad_reducer.ts";
import type { SharedSegments } from "./mpi.ts";
import type { ShardLayout } from "./shards.ts";

export class NodeSharedReducer implements GradientReduction {
  readonly grads: Float32Array;
  readonly total = emptyCommTimes();
  completedSteps = 0;
  /** Σ g² over this rank's shard of the last step's sums (float64), from the summing pass itself */
  shardSquares: number | null = null;

  constructor(readonly dist: Distributed, readonly segments: SharedSegments, readonly layout: ShardLayout) {
    if (segments.floats !== layout.count) throw new Error(`NodeSharedReducer: segments of ${segments.floats} floats for ${layout.count} parameters`);
    if (layout.ranks !== dist.size || segments.addresses.length !== dist.size) throw new Error(`NodeSharedReducer: ${segments.addresses.length} segments and a layout of ${layout.ranks} shards for ${dist.size} ranks`);
    this.grads = segments.mine;
  }

  ready(_start: number, _end: number): void {}

  progress(): void {}

  waitAll(): CommTimes {
    if (!this.segments.live) throw new Error("NodeSharedReducer: the shared segments were freed");
    const started = performance.now();
    this.dist.barrier("the gradients of every rank are final");
    const start = this.layout.start(this.dist.rank), length = this.layout.length(this.dist.rank);
    this.shardSquares = length > 0 ? sumSegments(this.segments.addresses, this.dist.rank, start, length, this.segments.floats, true) : 0;
    this.dist.barrier("every shard is summed");
    const ms = performance.now() - started;
    const times: CommTimes = { ms, exposedMs: ms, floats: this.layout.count, operations: 2 };
    addCommTimes(this.total, times);
    this.completedSteps++;
    return times;
  }
}
