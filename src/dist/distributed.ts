// The collectives a data-parallel trainer needs, on top of the MPI boundary (mpi.ts).
//
// `startDistributed()` returns null in a plain process (libmpi is never loaded) and a
// `Distributed` under an MPI launcher. Every collective here is posted non-blocking and completed
// by a watched wait: MPI_Test in a loop (giving the core away between polls, so oversubscribed
// ranks do not starve each other), and a wait longer than the timeout (LLMTS_MPI_TIMEOUT_S,
// default 600 s) ends the whole job with MPI_Abort and a message naming this rank and the
// collective — the case mpirun cannot see: a rank that is alive but stopped taking part (stuck, or
// it skipped a collective). A rank that dies is mpirun's case: it ends the job itself and names
// the rank. MPI counts are C ints, so large buffers are moved in pieces of at most
// `maxElementsPerCall` elements: 2^22 by default (16 MiB of floats), well inside the ints. On 2
// local ranks 4M-float pieces were never slower than 64M-float ones and sometimes much faster
// (reducing 124M floats to their owners: 128 vs 222 ms in one pair of runs; the machine was
// shared and the figures noisy, see docs/distributed.md).
import { writeSync } from "node:fs";
import { detectMpiLaunch, Mpi, MpiArgumentError, type MpiBuffer, type MpiLaunch, type MpiRequest, type ReduceOp, type SharedSegments, sleepMicroseconds, yieldProcessor } from "./mpi.ts";
import type { ShardLayout } from "./shards.ts";

export const DEFAULT_TIMEOUT_S = 600;
export const DEFAULT_MAX_ELEMENTS_PER_CALL = 2 ** 22;
const INT_MAX = 2 ** 31 - 1;
/** point-to-point tag of the heartbeats exchanged after a timeout */
const TAG_HEARTBEAT = 7001;
/** polls before a waiting rank starts yielding its core between polls */
const SPINS_BEFORE_YIELD = 64;
/**
 * After this long in one wait, a rank sleeps SLEEP_US between polls instead of yielding: it is
 * waiting for another rank to arrive, and a yielding rank still takes its share of a core that
 * the computing ranks (on an oversubscribed or shared machine) need. Transfers progress only
 * inside MPI calls, so the sleep is short next to the transfer of one piece (a 4M-float piece
 * takes milliseconds).
 */
const YIELD_MS = 2;
const SLEEP_US = 50;

export interface DistributedOptions {
  /** a collective not complete after this many seconds ends the job (default: $LLMTS_MPI_TIMEOUT_S or 600) */
  timeoutSeconds?: number;
  /** most elements one MPI call moves (default 2^22); tests lower it to exercise the splitting */
  maxElementsPerCall?: number;
}

/** The timeout from LLMTS_MPI_TIMEOUT_S (seconds, > 0), else the default. */
export function timeoutFromEnvironment(env: Record<string, string | undefined> = process.env): number {
  const text = env.LLMTS_MPI_TIMEOUT_S;
  if (text === undefined || text === "") return DEFAULT_TIMEOUT_S;
  const seconds = Number(text);
  if (!Number.isFinite(seconds) || seconds <= 0) throw new MpiArgumentError(`LLMTS_MPI_TIMEOUT_S must be a number of seconds > 0, got "${text}"`);
  return seconds;
}

/**
 * Null in a plain process; under an MPI launcher, loads Open MPI, joins MPI_COMM_WORLD and returns
 * this rank's view of it. Throws MpiUnavailableError (saying what to install) when libmpi cannot
 * be loaded.
 */
export function startDistributed(options: DistributedOptions = {}): Distributed | null {
  const launch = detectMpiLaunch();
  if (launch === null) return null;
  const timeoutSeconds = options.timeoutSeconds ?? timeoutFromEnvironment();
  return new Distributed(Mpi.init(launch), launch, { ...options, timeoutSeconds });
}

export class Distributed {
  readonly rank: number;
  readonly size: number;
  readonly isRoot: boolean;
  readonly timeoutMs: number;
  readonly maxElementsPerCall: number;
  private sharedMemory: boolean | undefined = undefined;

  constructor(readonly mpi: Mpi, readonly launch: MpiLaunch, options: DistributedOptions = {}) {
    this.rank = mpi.rank;
    this.size = mpi.size;
    this.isRoot = mpi.rank === 0;
    const timeoutSeconds = options.timeoutSeconds ?? DEFAULT_TIMEOUT_S;
    if (!(Number.isFinite(timeoutSeconds) && timeoutSeconds > 0)) throw new MpiArgumentError(`Distributed: timeoutSeconds must be > 0, got ${timeoutSeconds}`);
    this.timeoutMs = timeoutSeconds * 1000;
    const max = options.maxElementsPerCall ?? DEFAULT_MAX_ELEMENTS_PER_CALL;
    if (!Number.isInteger(max) || max < 1 || max > INT_MAX) throw new MpiArgumentError(`Distributed: maxElementsPerCall must be an integer from 1 to 2^31-1, got ${max}`);
    this.maxElementsPerCall = max;
  }

  /**
   * Collective: the same ranks on a communicator of their own (MPI_Comm_dup), for a component
   * whose collectives are started at times of its own choosing (see Mpi.duplicate).
   */
  duplicate(): Distributed {
    return new Distributed(this.mpi.duplicate(), this.launch, { timeoutSeconds: this.timeoutMs / 1000, maxElementsPerCall: this.maxElementsPerCall });
  }

  // ---- completion ----
  /** One progress pass (MPI_Test on each pending request); true when all have completed. */
  test(requests: MpiRequest[]): boolean {
    let all = true;
    for (const request of requests) if (!request.done && !this.mpi.test(request)) all = false;
    return all;
  }

  /**
   * Polls until every request has completed and returns the milliseconds spent. A wait longer than
   * the timeout ends the job (see the file comment).
   */
  wait(requests: MpiRequest[], what: string): number {
    const started = performance.now();
    let spins = 0;
    while (!this.test(requests)) {
      spins++;
      if (spins < SPINS_BEFORE_YIELD) continue;
      if (performance.now() - started < YIELD_MS) yieldProcessor();
      else sleepMicroseconds(SLEEP_US);
      if ((spins & 63) === 0 && performance.now() - started > this.timeoutMs) {
        const silent = this.silentRanks();
        const who = silent.length === 0 ? "every rank answered, so one of them skipped this collective or posted another one" : `${silent.length === 1 ? "rank" : "ranks"} ${silent.join(", ")} did not answer (stuck, or gone)`;
        this.abort(`${what} has not completed after ${formatSeconds(this.timeoutMs)}: ${who}; ending the job (LLMTS_MPI_TIMEOUT_S sets the limit)`, 1);
      }
    }
    return performance.now() - started;
  }

  /**
   * After a timeout: every rank that is also waiting has timed out about now, so each sends every
   * other rank a heartbeat and listens for theirs for a grace period (the timeout, at most 10 s).
   * The ranks not heard from are the ones that stopped taking part.
   */
  private silentRanks(): number[] {
    const others = Array.from({ length: this.size }, (_, r) => r).filter((r) => r !== this.rank);
    const heard = others.map(() => new Float64Array(1));
    const receives = others.map((r, i) => this.mpi.irecv(heard[i], r, TAG_HEARTBEAT));
    const sends = others.map((r) => this.mpi.isend(Float64Array.of(this.rank), r, TAG_HEARTBEAT));
    const deadline = performance.now() + Math.min(this.timeoutMs, 10_000);
    while (performance.now() < deadline && !this.test(receives)) yieldProcessor();
    this.test(sends);
    return others.filter((_, i) => !receives[i].done);
  }

  // ---- whole-buffer collectives (blocking, watched) ----
  barrier(what = "barrier"): void {
    this.wait([this.mpi.ibarrier()], `${what} (MPI_Ibarrier)`);
  }

  /** In place: every rank ends with the element-wise reduction over ranks. */
  allreduce(buffer: Float32Array | Float64Array | Int32Array, op: ReduceOp = "sum", what = "allreduce"): void {
    this.wait(this.startAllreduce(buffer, op), `${what} (MPI_Iallreduce of ${buffer.length} elements)`);
  }

  startAllreduce(buffer: Float32Array | Float64Array | Int32Array, op: ReduceOp = "sum"): MpiRequest[] {
    return this.pieces(buffer.length).map(([a, b]) => this.mpi.iallreduce(buffer.subarray(a, b), op));
  }

  /** Root's buffer to every rank. */
  broadcast(buffer: MpiBuffer, root = 0, what = "broadcast"): void {
    this.wait(this.startBroadcast(buffer, root), `${what} (MPI_Ibcast of ${buffer.length} elements from rank ${root})`);
  }

  startBroadcast(buffer: MpiBuffer, root = 0): MpiRequest[] {
    return this.pieces(buffer.length).map(([a, b]) => this.mpi.ibroadcast(buffer.subarray(a, b), root));
  }

  /** MPI_Iallgatherv + wait; send null = in place (this rank's part already at recv[displs[rank]…]). */
  allgatherv(send: MpiBuffer | null, recv: MpiBuffer, counts: number[], displs: number[], what = "allgatherv"): void {
    this.wait([this.mpi.iallgatherv(send, recv, counts, displs)], `${what} (MPI_Iallgatherv)`);
  }

  /** MPI_Ireduce_scatter + wait: rank r gets the sum over ranks of the r-th segment of send. */
  reduceScatter(send: MpiBuffer, recv: MpiBuffer, recvCounts: number[], what = "reduce-scatter"): void {
    this.wait([this.mpi.ireduceScatter(send, recv, recvCounts)], `${what} (MPI_Ireduce_scatter)`);
  }

  /** Every rank's values (each rank gives `values.length` of them, the same count), rank after rank. */
  allgatherF64(values: Float64Array): Float64Array {
    const n = values.length;
    const out = new Float64Array(n * this.size);
    out.set(values, this.rank * n);
    const counts = Array.from({ length: this.size }, () => n);
    const displs = counts.map((_, r) => r * n);
    this.allgatherv(null, out, counts, displs, "allgather of float64 values");
    return out;
  }

  /**
   * Σ over ranks of each value, added in rank order on every rank (bit-identical everywhere and
   * independent of MPI's reduction algorithm).
   */
  sumF64(values: number[]): number[] {
    const all = this.allgatherF64(Float64Array.from(values));
    return values.map((_, i) => {
      let sum = 0;
      for (let r = 0; r < this.size; r++) sum += all[r * values.length + i];
      return sum;
    });
  }

  /** The mean over ranks of one number (e.g. a validation loss). */
  meanF64(value: number): number {
    return this.sumF64([value])[0] / this.size;
  }

  /** Root's JSON-serialisable value on every rank. */
  broadcastJson<T>(value: T | null, root = 0): T {
    const length = new Float64Array(1);
    let bytes: Uint8Array | null = null;
    if (this.rank === root) {
      bytes = new TextEncoder().encode(JSON.stringify(value));
      length[0] = bytes.length;
    }
    this.broadcast(length, root, "broadcast of a JSON length");
    const buffer = new Uint8Array(new ArrayBuffer(Math.max(1, length[0])), 0, length[0]);
    if (bytes !== null) buffer.set(bytes);
    this.broadcast(buffer, root, "broadcast of JSON");
    return JSON.parse(new TextDecoder().decode(buffer)) as T;
  }

  /**
   * Throws on every rank (the same error) unless every rank passes the same `text` — e.g. a run
   * spec, or the data files' names and sizes. Compares 64-bit hashes.
   */
  agree(what: string, text: string): void {
    const hash = Bun.hash(text);
    const mine = new Float64Array([Number(BigInt(hash) >> 32n), Number(BigInt(hash) & 0xffffffffn)]);
    const all = this.allgatherF64(mine);
    const differ: number[] = [];
    for (let r = 1; r < this.size; r++) if (all[2 * r] !== all[0] || all[2 * r + 1] !== all[1]) differ.push(r);
    if (differ.length > 0) {
      const list = differ.length === 1 ? `rank ${differ[0]} differs` : `ranks ${differ.join(", ")} differ`;
      throw new Error(`the ranks disagree on ${what}: ${list} from rank 0 (rank ${this.rank} has ${text.length > 300 ? `${text.slice(0, 300)}…` : text})`);
    }
  }

  // ---- shard collectives (ZeRO-1) ----
  /**
   * Starts the reduction of buffer[a, b) over ranks, each element summed into its owner's buffer
   * (in place there; elsewhere the buffer is only read): [a, b) is cut at shard boundaries and each
   * piece is an MPI_Ireduce to its owner. This is a reduce-scatter of [a, b) with per-rank counts
   * |[a, b) ∩ shard_r| that needs no receive buffer (see docs/distributed.md for why it is not
   * MPI_Ireduce_scatter).
   */
  startReduceToOwners(buffer: Float32Array, layout: ShardLayout, a: number, b: number): MpiRequest[] {
    this.checkLayout("startReduceToOwners", buffer, layout);
    const requests: MpiRequest[] = [];
    for (const piece of layout.piecesOf(a, b)) {
      for (const [s, e] of this.pieces(piece.end - piece.start, piece.start)) requests.push(this.mpi.ireduce(buffer.subarray(s, e), piece.rank));
    }
    return requests;
  }

  /**
   * Starts the all-gather of every rank's shard of `buffer` into every rank's `buffer` (in place,
   * MPI_Iallgatherv). Displacements are C ints, so the vector must have fewer than 2^31 elements.
   */
  startAllgatherShards(buffer: Float32Array, layout: ShardLayout): MpiRequest[] {
    this.checkLayout("startAllgatherShards", buffer, layout);
    if (layout.count > INT_MAX) throw new MpiArgumentError(`startAllgatherShards: ${layout.count} elements, MPI displacements (C ints) reach only 2^31-1`);
    const requests: MpiRequest[] = [];
    const M = this.maxElementsPerCall;
    for (let offset = 0; offset < layout.shardSize; offset += M) {
      const counts = Array.from({ length: this.size }, (_, r) => Math.max(0, Math.min(M, layout.length(r) - offset)));
      const displs = counts.map((_, r) => layout.start(r) + Math.min(offset, layout.length(r)));
      requests.push(this.mpi.iallgatherv(null, buffer, counts, displs));
    }
    return requests;
  }

  /** Collective (the first time): whether every rank of this group is on this machine (one shared-memory group). */
  sharesMemory(): boolean {
    this.sharedMemory ??= this.size > 1 && this.mpi.sharedMemorySize() === this.size;
    return this.sharedMemory;
  }

  /** Collective: one shared-memory segment of `floats` floats per rank (sharesMemory() must hold). */
  allocateSharedSegments(floats: number): SharedSegments {
    if (!this.sharesMemory()) throw new MpiArgumentError("allocateSharedSegments: the ranks are not all on one machine");
    return this.mpi.allocateSharedSegments(floats);
  }

  /** Collective: one shared array of `floats` floats for every rank (its view(0); sharesMemory() must hold). */
  allocateSharedArray(floats: number): SharedSegments {
    if (!this.sharesMemory()) throw new MpiArgumentError("allocateSharedArray: the ranks are not all on one machine");
    return this.mpi.allocateSharedArray(floats);
  }

  /** Sends `buffer` to rank `dest` in pieces; the receiver posts `startReceive` of the same length. */
  startSend(buffer: Float32Array, dest: number, tag: number): MpiRequest[] {
    return this.pieces(buffer.length).map(([a, b]) => this.mpi.isend(buffer.subarray(a, b), dest, tag));
  }

  startReceive(buffer: Float32Array, source: number, tag: number): MpiRequest[] {
    return this.pieces(buffer.length).map(([a, b]) => this.mpi.irecv(buffer.subarray(a, b), source, tag));
  }

  // ---- ending ----
  /**
   * Ends the whole job: prints "rank r: message" to stderr (synchronously, so it is out before the
   * job dies) and calls MPI_Abort; mpirun then stops every rank and exits non-zero.
   */
  abort(message: string, exitCode = 1): never {
    try {
      writeSync(2, `rank ${this.rank}: ${message}\n`);
    } catch {
      // stderr closed: MPI_Abort still ends the job
    }
    return this.mpi.abort(exitCode);
  }

  /** Waits for every rank, then MPI_Finalize (every rank must call it before exiting normally). */
  finalize(): void {
    this.barrier("finalize");
    this.mpi.finalize();
  }

  // ---- helpers ----
  /** [start, start + n) as consecutive [a, b) pieces of at most maxElementsPerCall elements. */
  private pieces(n: number, start = 0): Array<[number, number]> {
    const out: Array<[number, number]> = [];
    const M = this.maxElementsPerCall;
    for (let a = start; a < start + n; a += M) out.push([a, Math.min(start + n, a + M)]);
    if (n === 0) out.push([start, start]);
    return out;
  }

  private checkLayout(fn: string, buffer: Float32Array, layout: ShardLayout): void {
    if (!(buffer instanceof Float32Array)) throw new MpiArgumentError(`${fn}: buffer must be a Float32Array`);
    if (layout.ranks !== this.size) throw new MpiArgumentError(`${fn}: the layout has ${layout.ranks} shards, the job has ${this.size} ranks`);
    if (buffer.length !== layout.count) throw new MpiArgumentError(`${fn}: buffer has ${buffer.length} elements, the layout ${layout.count}`);
  }
}

function formatSeconds(ms: number): string {
  const s = ms / 1000;
  return `${Number.isInteger(s) ? s : s.toFixed(1)} s`;
}

/**
 * Runs `main` for this rank. An error on any rank prints "rank r: message" and ends the whole job
 * (MPI_Abort) with exitCode(error); otherwise every rank finalizes MPI.
 */
export async function runOnRank(dist: Distributed, main: (dist: Distributed) => unknown, exitCode: (error: unknown) => number = () => 1): Promise<void> {
  try {
    await main(dist);
  } catch (error) {
    dist.abort(error instanceof Error ? error.message : String(error), exitCode(error));
  }
  dist.finalize();
}
