// ZeRO-1's parameter all-gather overlapped with the next forward pass (docs/distributed.md,
// "Parameter prefetch"). After the update each rank holds fresh values only in its own shard; the
// others' shards must reach it before the next forward pass reads them — but not all at once: the
// embeddings before the encoder, layer l's 12 slices before block l, the final layernorm before the
// lm_head. So the update posts the gather group by group in that order (`start`), and the forward
// pass waits for each group just before it needs it (`before(part)`), progressing what is in
// flight after every kernel (`afterKernel`), like the gradient reduction does in the backward pass.
// Across machines the transfer then hides behind the forward pass's blocks; between ranks on one
// machine it is the cores' own copying either way (Open MPI's shared-memory transport copies
// inside the MPI calls), so there it shows up as exposed time whatever the schedule.
//
// Each group is a list of parameter ranges; every range is cut at the shard boundaries and into
// pieces of at most maxElementsPerCall, and each piece travels by MPI_Ibcast from its owner, in
// place. At most `maxFloatsInFlight` elements are posted at once, later pieces as earlier ones
// complete: pieces needed first are not slowed by ones needed last. Because when a queued piece is
// posted depends on this rank's completions, the gather needs a communicator of its own
// (Distributed.duplicate): no other collective may be posted on it while pieces are queued.
//
// The values are copies, so the result is bit for bit the blocking all-gather's.
// Implements the model's ParameterFence (src/model/gpt2.ts): a forward pass told of a pending
// gather calls before(-1) ahead of the encoder, before(l) ahead of block l and before(L) ahead of
// the lm_head; settle() waits for everything (any other reader of the parameters).
import type { ParameterFence } from "../model/gpt2.ts";
import type { Distributed } from "./distributed.ts";
import { addCommTimes, type CommTimes, DEFAULT_MAX_FLOATS_IN_FLIGHT, emptyCommTimes } from "./grad_reducer.ts";
import type { MpiRequest } from "./mpi.ts";
import type { ShardLayout } from "./shards.ts";

interface Piece {
  start: number;
  end: number;
  owner: number;
  group: number;
}

export class ParameterGather implements ParameterFence {
  /** the figures of the last completed gather, and their sum over all gathers */
  lastGather = emptyCommTimes();
  readonly total = emptyCommTimes();
  /** gathers completed so far */
  completed = 0;
  readonly maxFloatsInFlight: number;
  /** every piece of one gather, in posting order (groups in order, ranges in order) */
  private readonly pieces: Piece[];
  /** per group: the index in `pieces` one past its last piece */
  private readonly groupEnds: number[];
  /** pieces [0, posted) are posted; of those, [0, done) are known complete, in order */
  private posted = 0;
  private done = 0;
  private readonly inFlight: Array<{ index: number; requests: MpiRequest[]; floats: number }> = [];
  private inFlightFloats = 0;
  private active = false;
  private current = emptyCommTimes();
  private startedAt = 0;

  /**
   * `groups[0]` is the part the forward pass reads first (its `before(-1)`), `groups[g]` its
   * `before(g - 1)`; together they must cover [0, params.length) exactly once.
   */
  constructor(readonly dist: Distributed, readonly params: Float32Array, readonly layout: ShardLayout, groups: Array<Array<[number, number]>>, options: { maxFloatsInFlight?: number } = {}) {
    if (layout.count !== params.length || layout.ranks !== dist.size) {
      throw new Error(`ParameterGather: the layout (${layout.count} elements over ${layout.ranks} ranks) does not match the parameters (${params.length}) and the job (${dist.size} ranks)`);
    }
    const cap = options.maxFloatsInFlight ?? DEFAULT_MAX_FLOATS_IN_FLIGHT;
    if (!Number.isSafeInteger(cap) || cap < 1) throw new Error(`ParameterGather: maxFloatsInFlight must be a positive integer, got ${cap}`);
    this.maxFloatsInFlight = cap;
    checkCover(groups, params.length);
    const M = dist.maxElementsPerCall;
    this.pieces = [];
    this.groupEnds = [];
    groups.forEach((ranges, group) => {
      for (const [a, b] of ranges) {
        for (const piece of layout.piecesOf(a, b)) {
          for (let s = piece.start; s < piece.end; s += M) this.pieces.push({ start: s, end: Math.min(piece.end, s + M), owner: piece.rank, group });
        }
      }
      this.groupEnds.push(this.pieces.length);
    });
  }

  /** Whether a gather is in flight (started, not every piece waited for). */
  get pending(): boolean {
    return this.active;
  }

  /** Posts the gather of the freshly updated shards (after the update; none may be in flight). */
  start(): void {
    if (this.active) throw new Error("ParameterGather.start: the previous gather is still in flight (settle() it first)");
    const entered = performance.now();
    this.active = true;
    this.posted = 0;
    this.done = 0;
    this.current = { ms: 0, exposedMs: 0, floats: this.params.length, operations: 0 };
    this.startedAt = entered;
    this.pump();
    this.current.exposedMs += performance.now() - entered;
  }

  /** The forward pass is about to read part `part` (−1 the embeddings, l block l, L the lm_head): waits for its group. */
  before(part: number): void {
    if (!this.active) return;
    const group = part + 1;
    if (!Number.isSafeInteger(group) || group < 0 || group >= this.groupEnds.length) throw new Error(`ParameterGather.before: part ${part} is not one of −1 … ${this.groupEnds.length - 2}`);
    const entered = performance.now();
    this.waitThrough(this.groupEnds[group], `the parameters of ${describePart(part, this.groupEnds.length - 2)}`);
    if (group === this.groupEnds.length - 1) this.finish();
    this.current.exposedMs += performance.now() - entered;
    if (!this.active) this.record();
  }

  /** Progresses the pieces in flight (between the forward pass's kernels); cheap when there are none. */
  afterKernel(): void {
    if (!this.active || this.inFlight.length === 0) return;
    const entered = performance.now();
    this.poll();
    this.current.exposedMs += performance.now() - entered;
  }

  /** Waits for the whole gather (for any reader of the parameters other than the forward pass). */
  settle(): void {
    if (!this.active) return;
    const entered = performance.now();
    this.waitThrough(this.pieces.length, "the parameter all-gather");
    this.finish();
    this.current.exposedMs += performance.now() - entered;
    this.record();
  }

  private waitThrough(end: number, what: string): void {
    while (this.done < end) {
      this.pump();
      const oldest = this.inFlight[0];
      this.dist.wait(oldest.requests, `${what} (MPI_Ibcast of ${oldest.floats} floats)`);
      this.poll();
    }
  }

  private finish(): void {
    if (this.done !== this.pieces.length) throw new Error(`ParameterGather: ${this.pieces.length - this.done} pieces are still in flight`);
    this.current.ms = performance.now() - this.startedAt;
    this.active = false;
  }

  private record(): void {
    this.lastGather = this.current;
    addCommTimes(this.total, this.current);
    this.completed++;
  }

  /** Posts queued pieces, in order, while what is in flight stays within maxFloatsInFlight (always at least one). */
  private pump(): void {
    while (this.posted < this.pieces.length) {
      const piece = this.pieces[this.posted];
      const floats = piece.end - piece.start;
      if (this.inFlight.length > 0 && this.inFlightFloats + floats > this.maxFloatsInFlight) return;
      const request = this.dist.mpi.ibroadcast(this.params.subarray(piece.start, piece.end), piece.owner);
      this.inFlight.push({ index: this.posted, requests: [request], floats }); // one array per piece: polling allocates nothing
      this.inFlightFloats += floats;
      this.posted++;
      this.current.operations++;
    }
  }

  /** One test of each piece in flight; `done` advances over the leading completed ones. */
  private poll(): void {
    for (let i = 0; i < this.inFlight.length; ) {
      const unit = this.inFlight[i];
      if (this.dist.test(unit.requests)) {
        this.inFlightFloats -= unit.floats;
        this.inFlight.splice(i, 1);
      } else i++;
    }
    this.done = this.inFlight.length > 0 ? this.inFlight[0].index : this.posted;
    this.pump();
  }
}

function describePart(part: number, L: number): string {
  if (part < 0) return "the embeddings";
  if (part >= L) return "the final layernorm and the lm_head";
  return `block ${part}`;
}

/** Throws unless the groups' ranges are non-empty, inside [0, n) and cover it exactly once. */
function checkCover(groups: Array<Array<[number, number]>>, n: number): void {
  if (groups.length < 1) throw new Error("ParameterGather: no groups");
  const ranges = groups.flat().map(([a, b]) => [a, b] as [number, number]);
  for (const [a, b] of ranges) {
    if (!Number.isSafeInteger(a) || !Number.isSafeInteger(b) || a < 0 || b <= a || b > n) throw new Error(`ParameterGather: range [${a}, ${b}) is empty or outside the ${n} parameters`);
  }
  ranges.sort((x, y) => x[0] - y[0]);
  let at = 0;
  for (const [a, b] of ranges) {
    if (a !== at) throw new Error(a < at ? `ParameterGather: range [${a}, ${b}) overlaps another` : `ParameterGather: [${at}, ${a}) is in no group`);
    at = b;
  }
  if (at !== n) throw new Error(`ParameterGather: [${at}, ${n}) is in no group`);
}
