// ZeRO-1's partition of the flat parameter vector: rank r owns the contiguous shard
// [r·S, min((r+1)·S, P)) with S = ceil(P / N). When N does not divide P the last shard is shorter
// (padded to S in the layout, the padding never stored or sent; llm.c refuses such P instead), and
// for tiny P the last ranks may own nothing. Shards are contiguous and in rank order, so any
// contiguous range [a, b) meets them in rank order: its per-rank pieces are |[a, b) ∩ shard_r|.

export interface RangePiece {
  rank: number;
  /** global element range [start, end) */
  start: number;
  end: number;
}

export class ShardLayout {
  /** S: elements per shard (the last one may hold fewer) */
  readonly shardSize: number;

  constructor(readonly count: number, readonly ranks: number) {
    if (!Number.isSafeInteger(count) || count < 1) throw new Error(`ShardLayout: count must be a positive integer, got ${count}`);
    if (!Number.isInteger(ranks) || ranks < 1) throw new Error(`ShardLayout: ranks must be a positive integer, got ${ranks}`);
    this.shardSize = Math.ceil(count / ranks);
  }

  start(rank: number): number {
    return Math.min(rank * this.shardSize, this.count);
  }

  end(rank: number): number {
    return Math.min((rank + 1) * this.shardSize, this.count);
  }

  length(rank: number): number {
    return this.end(rank) - this.start(rank);
  }

  /** The rank owning element i. */
  ownerOf(i: number): number {
    if (!Number.isSafeInteger(i) || i < 0 || i >= this.count) throw new Error(`ShardLayout: element ${i} is outside [0, ${this.count})`);
    return Math.floor(i / this.shardSize);
  }

  /** |[a, b) ∩ shard_r| for every rank r. */
  countsIn(a: number, b: number): number[] {
    this.checkRange(a, b);
    return Array.from({ length: this.ranks }, (_, r) => Math.max(0, Math.min(b, this.end(r)) - Math.max(a, this.start(r))));
  }

  /** [a, b) cut at shard boundaries, in rank order; empty pieces left out. */
  piecesOf(a: number, b: number): RangePiece[] {
    this.checkRange(a, b);
    const pieces: RangePiece[] = [];
    if (a === b) return pieces;
    for (let r = this.ownerOf(a); r < this.ranks && this.start(r) < b; r++) {
      pieces.push({ rank: r, start: Math.max(a, this.start(r)), end: Math.min(b, this.end(r)) });
    }
    return pieces;
  }

  checkRange(a: number, b: number): void {
    if (!Number.isSafeInteger(a) || !Number.isSafeInteger(b) || a < 0 || b < a || b > this.count) {
      throw new Error(`ShardLayout: range [${a}, ${b}) is not inside [0, ${this.count})`);
    }
  }
}
