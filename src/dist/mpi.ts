// The MPI boundary: the only file that binds Open MPI (libmpi.so.40) with bun:ffi — no C shim.
// It is loaded only when the launcher's environment says this process is an MPI rank
// (`detectMpiLaunch`); a plain process never imports libmpi.
//
// Facts this file relies on (Open MPI 4.1, Debian openmpi-bin/libopenmpi-dev; see docs/distributed.md):
// - MPI handles are pointers. MPI_COMM_WORLD, MPI_FLOAT, MPI_SUM, MPI_ERRORS_RETURN… are the
//   addresses of data symbols (`ompi_mpi_comm_world`, `ompi_mpi_float`, `ompi_mpi_op_sum`,
//   `ompi_mpi_errors_return`); bun:ffi gives a symbol's address as `.ptr`. MPI_Request is a pointer
//   the library writes into memory we own. MPI_IN_PLACE is (void*)1, MPI_STATUS(ES)_IGNORE is NULL.
// - Counts and displacements are C ints: every wrapper checks them (≤ 2^31-1, and the sums MPI
//   derives from them too); the layer above (distributed.ts) splits larger transfers.
// - A non-blocking call keeps using its buffers and its count/displacement arrays until the request
//   completes: the request object holds references to all of them, and the count arrays are copied
//   into memory of their own (an ArrayBuffer JavaScript never moves or reallocates).
// - With MPI_ERRORS_RETURN set on the communicator (done in `init`), a failing call returns a code
//   instead of aborting: every wrapper checks it and throws an MpiError naming the call and the rank.
// Arguments are checked before any call, like src/ffi.ts: typed-array type and length against the
// counts, ranks and roots in range.
import { dlopen, FFIType, type Pointer, toArrayBuffer } from "bun:ffi";

export const MPI_INSTALL_HINT = "install Open MPI (Debian/Ubuntu: apt-get install openmpi-bin libopenmpi-dev), or set LLMTS_LIBMPI to the path of libmpi.so.40";
const INT_MAX = 2 ** 31 - 1;
const MPI_THREAD_FUNNELED = 1;
const MPI_MAX_ERROR_STRING = 256;
const IN_PLACE = 1 as Pointer;
const { ptr, i32, i64, u32, f64, void: VOID } = FFIType;
/** Open MPI 4.1's mpi.h: the first member of its split-type enum. */
const MPI_COMM_TYPE_SHARED = 0;

export class MpiError extends Error {
  override name = "MpiError";
  constructor(readonly call: string, readonly rank: number, readonly code: number, detail: string) {
    super(`rank ${rank}: ${call} failed: ${detail} (MPI error ${code})`);
  }
}

export class MpiArgumentError extends Error {
  override name = "MpiArgumentError";
}

/** Under an MPI launcher, but Open MPI's library cannot be loaded or started. */
export class MpiUnavailableError extends Error {
  override name = "MpiUnavailableError";
}

/** What the launcher told this process: its rank and the number of ranks. */
export interface MpiLaunch {
  rank: number;
  size: number;
  /** the environment variables that said so */
  source: string;
}

/**
 * The MPI launch this process is part of, or null for a plain process. Open MPI's mpirun sets
 * OMPI_COMM_WORLD_SIZE/RANK; PMIx launchers (srun --mpi=pmix) set PMIX_RANK; PMI-2 launchers
 * (MPICH's mpiexec, srun --mpi=pmi2) set PMI_SIZE/PMI_RANK. Only the first two can start Open MPI;
 * `Mpi.init` checks that the world it joins has the size the launcher announced.
 */
export function detectMpiLaunch(env: Record<string, string | undefined> = process.env): MpiLaunch | null {
  const int = (name: string): number | null => {
    const text = env[name];
    if (text === undefined || text === "") return null;
    const n = Number(text);
    if (!Number.isSafeInteger(n) || n < 0) throw new MpiArgumentError(`${name} is "${text}", not a non-negative integer (is this process started by an MPI launcher?)`);
    return n;
  };
  const ompiSize = int("OMPI_COMM_WORLD_SIZE");
  if (ompiSize !== null) {
    const rank = int("OMPI_COMM_WORLD_RANK");
    if (rank === null || ompiSize < 1 || rank >= ompiSize) throw new MpiArgumentError(`OMPI_COMM_WORLD_SIZE is ${ompiSize} but OMPI_COMM_WORLD_RANK is ${env.OMPI_COMM_WORLD_RANK ?? "unset"}`);
    return { rank, size: ompiSize, source: "OMPI_COMM_WORLD_SIZE/OMPI_COMM_WORLD_RANK" };
  }
  const pmixRank = int("PMIX_RANK");
  if (pmixRank !== null) return { rank: pmixRank, size: -1, source: "PMIX_RANK" };
  const pmiSize = int("PMI_SIZE");
  const pmiRank = int("PMI_RANK");
  if (pmiSize !== null && pmiRank !== null) return { rank: pmiRank, size: pmiSize, source: "PMI_SIZE/PMI_RANK" };
  return null;
}

const mpiSymbols = {
  MPI_Initialized: { args: [ptr], returns: i32 },
  MPI_Finalized: { args: [ptr], returns: i32 },
  MPI_Init_thread: { args: [ptr, ptr, i32, ptr], returns: i32 },
  MPI_Finalize: { args: [], returns: i32 },
  MPI_Abort: { args: [ptr, i32], returns: i32 },
  MPI_Comm_rank: { args: [ptr, ptr], returns: i32 },
  MPI_Comm_size: { args: [ptr, ptr], returns: i32 },
  MPI_Comm_set_errhandler: { args: [ptr, ptr], returns: i32 },
  // (comm, newcomm*) / (comm*)
  MPI_Comm_dup: { args: [ptr, ptr], returns: i32 },
  MPI_Comm_free: { args: [ptr], returns: i32 },
  MPI_Error_string: { args: [i32, ptr, ptr], returns: i32 },
  // (comm, split_type, key, info, newcomm*)
  MPI_Comm_split_type: { args: [ptr, i32, i32, ptr, ptr], returns: i32 },
  // (size as MPI_Aint, disp_unit, info, comm, baseptr*, win*) / (win, rank, size*, disp_unit*, baseptr*) / (win*)
  MPI_Win_allocate_shared: { args: [i64, i32, ptr, ptr, ptr, ptr], returns: i32 },
  MPI_Win_shared_query: { args: [ptr, i32, ptr, ptr, ptr], returns: i32 },
  MPI_Win_free: { args: [ptr], returns: i32 },
  MPI_Wtime: { args: [], returns: f64 },
  MPI_Barrier: { args: [ptr], returns: i32 },
  MPI_Ibarrier: { args: [ptr, ptr], returns: i32 },
  // (sendbuf, recvbuf, count, datatype, op, comm[, request])
  MPI_Allreduce: { args: [ptr, ptr, i32, ptr, ptr, ptr], returns: i32 },
  MPI_Iallreduce: { args: [ptr, ptr, i32, ptr, ptr, ptr, ptr], returns: i32 },
  // (sendbuf, recvbuf, recvcounts[], datatype, op, comm[, request])
  MPI_Reduce_scatter: { args: [ptr, ptr, ptr, ptr, ptr, ptr], returns: i32 },
  MPI_Ireduce_scatter: { args: [ptr, ptr, ptr, ptr, ptr, ptr, ptr], returns: i32 },
  // (sendbuf, recvbuf, recvcount, datatype, op, comm)
  MPI_Reduce_scatter_block: { args: [ptr, ptr, i32, ptr, ptr, ptr], returns: i32 },
  // (sendbuf, recvbuf, count, datatype, op, root, comm, request)
  MPI_Ireduce: { args: [ptr, ptr, i32, ptr, ptr, i32, ptr, ptr], returns: i32 },
  // (sendbuf, sendcount, sendtype, recvbuf, recvcounts[], displs[], recvtype, comm[, request])
  MPI_Allgatherv: { args: [ptr, i32, ptr, ptr, ptr, ptr, ptr, ptr], returns: i32 },
  MPI_Iallgatherv: { args: [ptr, i32, ptr, ptr, ptr, ptr, ptr, ptr, ptr], returns: i32 },
  // (buffer, count, datatype, root, comm[, request])
  MPI_Bcast: { args: [ptr, i32, ptr, i32, ptr], returns: i32 },
  MPI_Ibcast: { args: [ptr, i32, ptr, i32, ptr, ptr], returns: i32 },
  // (buf, count, datatype, dest|source, tag, comm, request)
  MPI_Isend: { args: [ptr, i32, ptr, i32, i32, ptr, ptr], returns: i32 },
  MPI_Irecv: { args: [ptr, i32, ptr, i32, i32, ptr, ptr], returns: i32 },
  // (request*, flag*, status*) / (count, requests[], flag*, statuses[]) / (request*, status*)
  MPI_Test: { args: [ptr, ptr, ptr], returns: i32 },
  MPI_Testall: { args: [i32, ptr, ptr, ptr], returns: i32 },
  MPI_Wait: { args: [ptr, ptr], returns: i32 },
  MPI_Waitall: { args: [i32, ptr, ptr], returns: i32 },
  // Predefined handles: data symbols, never called; only their addresses are used.
  ompi_mpi_comm_world: { args: [], returns: VOID },
  ompi_mpi_float: { args: [], returns: VOID },
  ompi_mpi_double: { args: [], returns: VOID },
  ompi_mpi_int: { args: [], returns: VOID },
  ompi_mpi_byte: { args: [], returns: VOID },
  ompi_mpi_op_sum: { args: [], returns: VOID },
  ompi_mpi_op_max: { args: [], returns: VOID },
  ompi_mpi_op_min: { args: [], returns: VOID },
  ompi_mpi_errors_return: { args: [], returns: VOID },
  ompi_mpi_info_null: { args: [], returns: VOID },
} as const;

const libcSymbols = {
  setenv: { args: [ptr, ptr, i32], returns: i32 },
  sched_yield: { args: [], returns: i32 },
  usleep: { args: [u32], returns: i32 },
} as const;

type MpiLibrary = ReturnType<typeof dlopen<typeof mpiSymbols>>["symbols"];
type Libc = ReturnType<typeof dlopen<typeof libcSymbols>>["symbols"];

export type MpiBuffer = Float32Array | Float64Array | Int32Array | Uint8Array;
export type ReduceOp = "sum" | "max" | "min";

/**
 * Open MPI defaults set (with setenv, before MPI_Init) unless the environment or mpirun's --mca
 * already sets them. libnbc's default MPI_Iallreduce for in-place buffers is a binomial
 * reduce+broadcast, ~2.3× slower than its ring algorithm for 10M floats on 2 local ranks
 * (measured: 34–37 ms vs 14–15 ms; the blocking MPI_Allreduce takes 14–16 ms).
 */
const MCA_DEFAULTS: Record<string, string> = {
  OMPI_MCA_coll_libnbc_iallreduce_algorithm: "1",
  // Binomial MPI_Ireduce: 2 ranks reducing 2×5M floats to their owners took 8–9 ms, libnbc's
  // default choice 20 ms, MPI_Ireduce_scatter of the same 10M floats 29–31 ms.
  OMPI_MCA_coll_libnbc_ireduce_algorithm: "2",
};

function cString(text: string): Uint8Array {
  return new TextEncoder().encode(`${text}\0`);
}

function symbolAddress(library: Record<string, unknown>, name: string): Pointer {
  const address = (library[name] as { ptr?: number | bigint } | undefined)?.ptr;
  if (address === undefined || address === null || address === 0) throw new MpiUnavailableError(`libmpi.so.40 has no symbol ${name}: this is not Open MPI 4.x`);
  return Number(address) as Pointer;
}

/** An Int32Array in memory of its own, which stays at one address while referenced. */
function stableInt32(values: ArrayLike<number>): Int32Array {
  const out = new Int32Array(new ArrayBuffer(4 * Math.max(1, values.length)), 0, values.length);
  for (let i = 0; i < values.length; i++) out[i] = values[i];
  return out;
}

let libc: Libc | null = null;

function loadLibc(): Libc {
  libc ??= dlopen("libc.so.6", libcSymbols).symbols;
  return libc;
}

/** Gives the core to another runnable process (ranks oversubscribing cores), else returns at once. */
export function yieldProcessor(): void {
  loadLibc().sched_yield();
}

/** Sleeps about `microseconds` (a rank waiting long for another leaves the core to the processes that compute). */
export function sleepMicroseconds(microseconds: number): void {
  loadLibc().usleep(microseconds);
}

/**
 * A shared-memory window (MPI_Win_allocate_shared) of one segment of `floats` floats per rank
 * (or, from allocateSharedArray, rank 0's alone): `mine` is this rank's segment (empty when it has
 * none), `addresses[r]` the address of rank r's in this process. The memory stays valid until
 * free() (collective) or MPI_Finalize; views of it must not be used after.
 */
export class SharedSegments {
  private freed = false;
  constructor(readonly floats: number, readonly mine: Float32Array, readonly addresses: BigUint64Array, private readonly release: () => void) {}
  get live(): boolean {
    return !this.freed;
  }
  /** Rank r's segment, as this process sees it. */
  view(r: number): Float32Array {
    if (!Number.isInteger(r) || r < 0 || r >= this.addresses.length) throw new MpiArgumentError(`SharedSegments.view: no segment ${r}`);
    return new Float32Array(toArrayBuffer(Number(this.addresses[r]) as Pointer, 0, 4 * this.floats));
  }
  /** Collective: MPI_Win_free. */
  free(): void {
    if (this.freed) return;
    this.freed = true;
    this.release();
  }
}

/**
 * One non-blocking operation in flight. It holds every buffer and array MPI may still read or
 * write, so none of them can be collected before completion.
 */
export class MpiRequest {
  /** the MPI_Request handle, written by MPI (a pointer) */
  readonly handle = new BigUint64Array(new ArrayBuffer(8));
  done = false;
  private keepAlive: unknown[] | null;
  constructor(readonly call: string, keepAlive: unknown[]) {
    this.keepAlive = keepAlive;
  }
  /** Called once MPI has reported completion: the buffers are the caller's again. */
  release(): void {
    this.done = true;
    this.keepAlive = null;
  }
}

export class Mpi {
  readonly rank: number;
  readonly size: number;
  /** the MPI thread level provided (1 = MPI_THREAD_FUNNELED: only the main thread calls MPI) */
  readonly threadLevel: number;
  private readonly lib: MpiLibrary;
  /** MPI_COMM_WORLD, or the duplicate of it this object was made for (duplicate()) */
  private readonly comm: Pointer;
  /** set on a duplicate: the object of MPI_COMM_WORLD, which alone finalizes MPI */
  private readonly world: Mpi | null = null;
  private readonly types: { f32: Pointer; f64: Pointer; i32: Pointer; u8: Pointer };
  private readonly ops: Record<ReduceOp, Pointer>;
  private readonly flag = new Int32Array(1);
  private readonly infoNull: Pointer;
  /** (on MPI_COMM_WORLD's object) every window not freed yet: finalize frees them first */
  private windows: SharedSegments[] = [];
  private readonly errorText = new Uint8Array(MPI_MAX_ERROR_STRING + 1);
  private readonly errorLength = new Int32Array(1);
  private finalized = false;

  private constructor(lib: MpiLibrary, launch: MpiLaunch) {
    this.lib = lib;
    const raw = lib as unknown as Record<string, unknown>;
    this.comm = symbolAddress(raw, "ompi_mpi_comm_world");
    this.types = { f32: symbolAddress(raw, "ompi_mpi_float"), f64: symbolAddress(raw, "ompi_mpi_double"), i32: symbolAddress(raw, "ompi_mpi_int"), u8: symbolAddress(raw, "ompi_mpi_byte") };
    this.ops = { sum: symbolAddress(raw, "ompi_mpi_op_sum"), max: symbolAddress(raw, "ompi_mpi_op_max"), min: symbolAddress(raw, "ompi_mpi_op_min") };
    const errorsReturn = symbolAddress(raw, "ompi_mpi_errors_return");
    this.infoNull = symbolAddress(raw, "ompi_mpi_info_null");
    const out = new Int32Array(1);
    lib.MPI_Initialized(out);
    if (out[0] !== 0) throw new MpiUnavailableError("MPI is already initialized in this process");
    let rc = lib.MPI_Init_thread(null, null, MPI_THREAD_FUNNELED, out);
    if (rc !== 0) throw new MpiUnavailableError(`rank ${launch.rank}: MPI_Init_thread failed (MPI error ${rc})`);
    this.threadLevel = out[0];
    rc = lib.MPI_Comm_set_errhandler(this.comm, errorsReturn);
    if (rc !== 0) throw new MpiUnavailableError(`rank ${launch.rank}: MPI_Comm_set_errhandler(MPI_ERRORS_RETURN) failed (MPI error ${rc})`);
    this.check("MPI_Comm_rank", lib.MPI_Comm_rank(this.comm, out), launch.rank);
    this.rank = out[0];
    this.check("MPI_Comm_size", lib.MPI_Comm_size(this.comm, out), this.rank);
    this.size = out[0];
    if (this.threadLevel < MPI_THREAD_FUNNELED) {
      throw new MpiUnavailableError(`rank ${this.rank}: Open MPI provides thread level ${this.threadLevel}, llm.ts needs MPI_THREAD_FUNNELED (its kernel threads never call MPI)`);
    }
    if ((launch.size !== -1 && this.size !== launch.size) || this.rank !== launch.rank) {
      throw new MpiUnavailableError(
        `the launcher (${launch.source}) started rank ${launch.rank} of ${launch.size === -1 ? "?" : launch.size}, but Open MPI sees rank ${this.rank} of ${this.size}: ` +
          "start llm.ts with Open MPI's own mpirun (another MPI's launcher makes every process a separate 1-rank world)",
      );
    }
  }

  /**
   * Loads libmpi.so.40 (or $LLMTS_LIBMPI), sets the MCA defaults, MPI_Init_thread with
   * MPI_THREAD_FUNNELED, MPI_ERRORS_RETURN on MPI_COMM_WORLD. Call once per process.
   */
  static init(launch: MpiLaunch): Mpi {
    const path = process.env.LLMTS_LIBMPI || "libmpi.so.40";
    let lib: MpiLibrary;
    try {
      lib = dlopen(path, mpiSymbols).symbols;
    } catch (error) {
      throw new MpiUnavailableError(`this process was started by an MPI launcher (${launch.source}), but ${path} could not be loaded (${(error as Error).message}): ${MPI_INSTALL_HINT}`);
    }
    const c = loadLibc();
    for (const [name, value] of Object.entries(MCA_DEFAULTS)) c.setenv(cString(name), cString(value), 0);
    return new Mpi(lib, launch);
  }

  // ---- errors and argument checks ----
  private check(call: string, rc: number, rank = this.rank): void {
    if (rc === 0) return;
    let detail = "unknown error";
    if (this.lib.MPI_Error_string(rc, this.errorText, this.errorLength) === 0) {
      detail = new TextDecoder().decode(this.errorText.subarray(0, Math.max(0, Math.min(this.errorLength[0], MPI_MAX_ERROR_STRING))));
    }
    throw new MpiError(call, rank, rc, detail);
  }

  private live(call: string): void {
    if (this.finalized || this.world?.finalized === true) throw new MpiArgumentError(`${call}: MPI is finalized`);
  }

  private datatype(call: string, name: string, buffer: unknown): Pointer {
    if (buffer instanceof Float32Array) return this.types.f32;
    if (buffer instanceof Float64Array) return this.types.f64;
    if (buffer instanceof Int32Array) return this.types.i32;
    if (buffer instanceof Uint8Array) return this.types.u8;
    throw new MpiArgumentError(`${call}: ${name} must be a Float32Array, Float64Array, Int32Array or Uint8Array`);
  }

  private sameType(call: string, send: MpiBuffer, recv: MpiBuffer): Pointer {
    const type = this.datatype(call, "recv", recv);
    if (this.datatype(call, "send", send) !== type) throw new MpiArgumentError(`${call}: send is a ${send.constructor.name} but recv is a ${recv.constructor.name}`);
    return type;
  }

  private op(call: string, op: ReduceOp, buffer: MpiBuffer): Pointer {
    const handle = this.ops[op];
    if (handle === undefined) throw new MpiArgumentError(`${call}: op must be "sum", "max" or "min", got ${String(op)}`);
    if (buffer instanceof Uint8Array) throw new MpiArgumentError(`${call}: reductions need numbers (Float32Array, Float64Array, Int32Array), got a Uint8Array`);
    return handle;
  }

  private count(call: string, name: string, value: number): void {
    if (!Number.isInteger(value) || value < 0 || value > INT_MAX) throw new MpiArgumentError(`${call}: ${name} must be an integer from 0 to 2^31-1 (MPI counts are C ints), got ${value}`);
  }

  private rankArg(call: string, name: string, value: number): void {
    if (!Number.isInteger(value) || value < 0 || value >= this.size) throw new MpiArgumentError(`${call}: ${name} must be a rank from 0 to ${this.size - 1}, got ${value}`);
  }

  /** A per-rank int array (counts or displacements): size entries, each a valid count. */
  private perRank(call: string, name: string, values: Int32Array | number[]): void {
    if (values.length !== this.size) throw new MpiArgumentError(`${call}: ${name} has ${values.length} entries, one per rank needs ${this.size}`);
    for (let r = 0; r < values.length; r++) this.count(call, `${name}[${r}]`, values[r]);
  }

  private reduceScatterArgs(call: string, send: MpiBuffer, recv: MpiBuffer, recvCounts: Int32Array | number[]): { type: Pointer; total: number } {
    const type = this.sameType(call, send, recv);
    this.perRank(call, "recvCounts", recvCounts);
    let total = 0;
    for (let r = 0; r < this.size; r++) total += recvCounts[r];
    this.count(call, "the sum of recvCounts", total);
    if (send.length !== total) throw new MpiArgumentError(`${call}: send has ${send.length} elements, the recvCounts need ${total}`);
    if (recv.length !== recvCounts[this.rank]) throw new MpiArgumentError(`${call}: recv has ${recv.length} elements, recvCounts[${this.rank}] is ${recvCounts[this.rank]}`);
    return { type, total };
  }

  /** send null = MPI_IN_PLACE: this rank's part is already at recv[displs[rank]…]. */
  private allgathervArgs(call: string, send: MpiBuffer | null, recv: MpiBuffer, counts: Int32Array | number[], displs: Int32Array | number[]): Pointer {
    const type = send === null ? this.datatype(call, "recv", recv) : this.sameType(call, send, recv);
    this.perRank(call, "counts", counts);
    this.perRank(call, "displs", displs);
    let end = 0;
    for (let r = 0; r < this.size; r++) end = Math.max(end, displs[r] + counts[r]);
    if (recv.length < end) throw new MpiArgumentError(`${call}: recv has ${recv.length} elements, counts and displs reach element ${end}`);
    if (send !== null && send.length !== counts[this.rank]) throw new MpiArgumentError(`${call}: send has ${send.length} elements, counts[${this.rank}] is ${counts[this.rank]}`);
    return type;
  }

  // ---- environment ----
  /** Seconds since an arbitrary time (MPI_Wtime). */
  wtime(): number {
    return this.lib.MPI_Wtime();
  }

  finalize(): void {
    if (this.finalized) return;
    if (this.world === null) {
      for (const window of this.windows) window.free();
      this.windows = [];
    }
    if (this.world !== null) {
      // A duplicate: free the communicator (MPI_Finalize, on the world's object, ends MPI).
      if (!this.world.finalized) this.check("MPI_Comm_free", this.lib.MPI_Comm_free(BigUint64Array.of(BigInt(this.comm))));
    } else this.check("MPI_Finalize", this.lib.MPI_Finalize());
    this.finalized = true;
  }

  /**
   * Collective: a duplicate of MPI_COMM_WORLD (MPI_Comm_dup: the same ranks, the error handler
   * copied). MPI matches the collectives of each communicator separately, so a component that
   * decides *when* it starts its collectives from its own completions (GradientReducer's queue)
   * gets a communicator of its own: its posts need not line up with other collectives.
   */
  duplicate(): Mpi {
    this.live("MPI_Comm_dup");
    if (this.world !== null) return this.world.duplicate();
    const handle = new BigUint64Array(1);
    this.check("MPI_Comm_dup", this.lib.MPI_Comm_dup(this.comm, handle));
    const copy = Object.create(Mpi.prototype) as Mpi;
    Object.assign(copy, this, {
      comm: Number(handle[0]) as Pointer, world: this, finalized: false, windows: [],
      flag: new Int32Array(1), errorText: new Uint8Array(MPI_MAX_ERROR_STRING + 1), errorLength: new Int32Array(1),
    });
    return copy;
  }

  /**
   * Collective: how many ranks of this communicator share memory with this one (the size of its
   * MPI_Comm_split_type(MPI_COMM_TYPE_SHARED) group: the ranks on this machine).
   */
  sharedMemorySize(): number {
    this.live("MPI_Comm_split_type");
    const handle = new BigUint64Array(1);
    this.check("MPI_Comm_split_type", this.lib.MPI_Comm_split_type(this.comm, MPI_COMM_TYPE_SHARED, this.rank, this.infoNull, handle));
    const out = new Int32Array(1);
    try {
      this.check("MPI_Comm_size", this.lib.MPI_Comm_size(Number(handle[0]) as Pointer, out));
    } finally {
      this.check("MPI_Comm_free", this.lib.MPI_Comm_free(handle));
    }
    return out[0];
  }

  /**
   * Collective, on a communicator whose ranks all share memory (sharedMemorySize() === size): a
   * window with a segment of `floats` floats per rank (MPI_Win_allocate_shared), every rank's
   * segment addressable here (MPI_Win_shared_query).
   */
  allocateSharedSegments(floats: number): SharedSegments {
    return this.allocateShared(floats, false);
  }

  /**
   * Collective, like allocateSharedSegments, for one array every rank uses: rank 0's segment of
   * `floats` floats (the others' are empty); `view(0)` on every rank.
   */
  allocateSharedArray(floats: number): SharedSegments {
    return this.allocateShared(floats, true);
  }

  private allocateShared(floats: number, rootOnly: boolean): SharedSegments {
    const call = "MPI_Win_allocate_shared";
    this.live(call);
    if (!Number.isSafeInteger(floats) || floats < 1 || floats > 2 ** 40) throw new MpiArgumentError(`${call}: floats must be an integer from 1 to 2^40, got ${floats}`);
    const base = new BigUint64Array(1), win = new BigUint64Array(1);
    const mineFloats = rootOnly && this.rank !== 0 ? 0 : floats;
    this.check(call, this.lib.MPI_Win_allocate_shared(4 * mineFloats, 4, this.infoNull, this.comm, base, win));
    const handle = Number(win[0]) as Pointer;
    const owners = rootOnly ? 1 : this.size;
    const addresses = new BigUint64Array(owners);
    const size = new BigInt64Array(1), unit = new Int32Array(1), address = new BigUint64Array(1);
    for (let r = 0; r < owners; r++) {
      this.check("MPI_Win_shared_query", this.lib.MPI_Win_shared_query(handle, r, size, unit, address));
      if (size[0] !== BigInt(4 * floats) || unit[0] !== 4 || address[0] === 0n) throw new MpiError("MPI_Win_shared_query", this.rank, 0, `rank ${r}'s segment is ${size[0]} bytes in units of ${unit[0]} at ${address[0]}, expected ${4 * floats} bytes of floats`);
      addresses[r] = address[0];
    }
    if (mineFloats > 0 && addresses[this.rank] !== base[0]) throw new MpiError("MPI_Win_shared_query", this.rank, 0, "this rank's segment is not where MPI_Win_allocate_shared put it");
    const mine = mineFloats > 0 ? new Float32Array(toArrayBuffer(Number(base[0]) as Pointer, 0, 4 * floats)) : new Float32Array(0);
    const segments = new SharedSegments(floats, mine, addresses, () => {
      if (!(this.world ?? this).finalized) this.check("MPI_Win_free", this.lib.MPI_Win_free(BigUint64Array.of(win[0])));
    });
    // Freed at the latest when MPI is finalized (MPI_Win_free must come before MPI_Finalize), also
    // when this communicator is a duplicate nobody finalizes.
    (this.world ?? this).windows.push(segments);
    return segments;
  }

  /** MPI_Abort on MPI_COMM_WORLD: mpirun ends every rank of the job. Never returns. */
  abort(exitCode: number): never {
    const code = Number.isInteger(exitCode) && exitCode > 0 && exitCode < 256 ? exitCode : 1;
    const world = this.world ?? this;
    if (!world.finalized) this.lib.MPI_Abort(world.comm, code);
    process.exit(code);
  }

  // ---- blocking collectives ----
  barrier(): void {
    this.live("MPI_Barrier");
    this.check("MPI_Barrier", this.lib.MPI_Barrier(this.comm));
  }

  /** In place over the whole buffer. */
  allreduce(buffer: Float32Array | Float64Array | Int32Array, op: ReduceOp = "sum"): void {
    const call = "MPI_Allreduce";
    this.live(call);
    const type = this.datatype(call, "buffer", buffer);
    const handle = this.op(call, op, buffer);
    this.count(call, "buffer length", buffer.length);
    this.check(call, this.lib.MPI_Allreduce(IN_PLACE, buffer, buffer.length, type, handle, this.comm));
  }

  /**
   * Element-wise reduction of `send` over ranks, rank r receiving its recvCounts[r] elements (the
   * r-th segment of send, segments in rank order) into `recv`. Equal counts use
   * MPI_Reduce_scatter_block.
   */
  reduceScatter(send: MpiBuffer, recv: MpiBuffer, recvCounts: Int32Array | number[], op: ReduceOp = "sum"): void {
    const call = "MPI_Reduce_scatter";
    this.live(call);
    const { type } = this.reduceScatterArgs(call, send, recv, recvCounts);
    const handle = this.op(call, op, send);
    let equal = true;
    for (let r = 1; r < this.size; r++) equal &&= recvCounts[r] === recvCounts[0];
    if (equal) this.check("MPI_Reduce_scatter_block", this.lib.MPI_Reduce_scatter_block(send, recv, recvCounts[0], type, handle, this.comm));
    else this.check(call, this.lib.MPI_Reduce_scatter(send, recv, stableInt32(recvCounts), type, handle, this.comm));
  }

  allgatherv(send: MpiBuffer | null, recv: MpiBuffer, counts: Int32Array | number[], displs: Int32Array | number[]): void {
    const call = "MPI_Allgatherv";
    this.live(call);
    const type = this.allgathervArgs(call, send, recv, counts, displs);
    const sendCount = send === null ? 0 : send.length;
    this.check(call, this.lib.MPI_Allgatherv(send === null ? IN_PLACE : send, sendCount, type, recv, stableInt32(counts), stableInt32(displs), type, this.comm));
  }

  broadcast(buffer: MpiBuffer, root: number): void {
    const call = "MPI_Bcast";
    this.live(call);
    const type = this.datatype(call, "buffer", buffer);
    this.rankArg(call, "root", root);
    this.count(call, "buffer length", buffer.length);
    this.check(call, this.lib.MPI_Bcast(buffer, buffer.length, type, root, this.comm));
  }

  // ---- non-blocking ----
  private start(call: string, keepAlive: unknown[], post: (handle: BigUint64Array) => number): MpiRequest {
    const request = new MpiRequest(call, keepAlive);
    this.check(call, post(request.handle));
    return request;
  }

  ibarrier(): MpiRequest {
    this.live("MPI_Ibarrier");
    return this.start("MPI_Ibarrier", [], (h) => this.lib.MPI_Ibarrier(this.comm, h));
  }

  iallreduce(buffer: Float32Array | Float64Array | Int32Array, op: ReduceOp = "sum"): MpiRequest {
    const call = "MPI_Iallreduce";
    this.live(call);
    const type = this.datatype(call, "buffer", buffer);
    const handle = this.op(call, op, buffer);
    this.count(call, "buffer length", buffer.length);
    return this.start(call, [buffer], (h) => this.lib.MPI_Iallreduce(IN_PLACE, buffer, buffer.length, type, handle, this.comm, h));
  }

  /**
   * Non-blocking reduction of `buffer` over ranks into `root`'s `buffer` (in place there; the other
   * ranks' buffers are only read).
   */
  ireduce(buffer: Float32Array | Float64Array | Int32Array, root: number, op: ReduceOp = "sum"): MpiRequest {
    const call = "MPI_Ireduce";
    this.live(call);
    const type = this.datatype(call, "buffer", buffer);
    const handle = this.op(call, op, buffer);
    this.rankArg(call, "root", root);
    this.count(call, "buffer length", buffer.length);
    const atRoot = root === this.rank;
    return this.start(call, [buffer], (h) => this.lib.MPI_Ireduce(atRoot ? IN_PLACE : buffer, atRoot ? buffer : null, buffer.length, type, handle, root, this.comm, h));
  }

  ireduceScatter(send: MpiBuffer, recv: MpiBuffer, recvCounts: Int32Array | number[], op: ReduceOp = "sum"): MpiRequest {
    const call = "MPI_Ireduce_scatter";
    this.live(call);
    const { type } = this.reduceScatterArgs(call, send, recv, recvCounts);
    const handle = this.op(call, op, send);
    const counts = stableInt32(recvCounts);
    return this.start(call, [send, recv, counts], (h) => this.lib.MPI_Ireduce_scatter(send, recv, counts, type, handle, this.comm, h));
  }

  iallgatherv(send: MpiBuffer | null, recv: MpiBuffer, counts: Int32Array | number[], displs: Int32Array | number[]): MpiRequest {
    const call = "MPI_Iallgatherv";
    this.live(call);
    const type = this.allgathervArgs(call, send, recv, counts, displs);
    const c = stableInt32(counts);
    const d = stableInt32(displs);
    const sendCount = send === null ? 0 : send.length;
    return this.start(call, [send, recv, c, d], (h) => this.lib.MPI_Iallgatherv(send === null ? IN_PLACE : send, sendCount, type, recv, c, d, type, this.comm, h));
  }

  ibroadcast(buffer: MpiBuffer, root: number): MpiRequest {
    const call = "MPI_Ibcast";
    this.live(call);
    const type = this.datatype(call, "buffer", buffer);
    this.rankArg(call, "root", root);
    this.count(call, "buffer length", buffer.length);
    return this.start(call, [buffer], (h) => this.lib.MPI_Ibcast(buffer, buffer.length, type, root, this.comm, h));
  }

  isend(buffer: MpiBuffer, dest: number, tag: number): MpiRequest {
    const call = "MPI_Isend";
    this.live(call);
    const type = this.datatype(call, "buffer", buffer);
    this.rankArg(call, "dest", dest);
    this.count(call, "tag", tag);
    this.count(call, "buffer length", buffer.length);
    return this.start(call, [buffer], (h) => this.lib.MPI_Isend(buffer, buffer.length, type, dest, tag, this.comm, h));
  }

  /** Receives exactly buffer.length elements (a shorter message leaves the rest untouched, a longer one is an MPI error). */
  irecv(buffer: MpiBuffer, source: number, tag: number): MpiRequest {
    const call = "MPI_Irecv";
    this.live(call);
    const type = this.datatype(call, "buffer", buffer);
    this.rankArg(call, "source", source);
    this.count(call, "tag", tag);
    this.count(call, "buffer length", buffer.length);
    return this.start(call, [buffer], (h) => this.lib.MPI_Irecv(buffer, buffer.length, type, source, tag, this.comm, h));
  }

  /** MPI_Test: progresses MPI and reports whether the request has completed. */
  test(request: MpiRequest): boolean {
    if (request.done) return true;
    // Called in polling loops: no string is built unless the call failed (garbage here adds up to
    // hundreds of MB of heap while a rank waits seconds for another).
    const rc = this.lib.MPI_Test(request.handle, this.flag, null);
    if (rc !== 0) this.check(`MPI_Test (${request.call})`, rc);
    if (this.flag[0] === 0) return false;
    request.release();
    return true;
  }

  /** MPI_Testall over the requests not yet done. */
  testAll(requests: MpiRequest[]): boolean {
    const pending = requests.filter((r) => !r.done);
    if (pending.length === 0) return true;
    const handles = this.packHandles(pending);
    this.check(`MPI_Testall (${describeRequests(pending)})`, this.lib.MPI_Testall(pending.length, handles, this.flag, null));
    if (this.flag[0] === 0) return false;
    for (const r of pending) r.release();
    return true;
  }

  wait(request: MpiRequest): void {
    if (request.done) return;
    this.check(`MPI_Wait (${request.call})`, this.lib.MPI_Wait(request.handle, null));
    request.release();
  }

  waitAll(requests: MpiRequest[]): void {
    const pending = requests.filter((r) => !r.done);
    if (pending.length === 0) return;
    this.check(`MPI_Waitall (${describeRequests(pending)})`, this.lib.MPI_Waitall(pending.length, this.packHandles(pending), null));
    for (const r of pending) r.release();
  }

  /** The requests' handles side by side, as MPI_Testall/MPI_Waitall take them. */
  private packHandles(requests: MpiRequest[]): BigUint64Array {
    const handles = new BigUint64Array(new ArrayBuffer(8 * requests.length));
    for (let i = 0; i < requests.length; i++) handles[i] = requests[i].handle[0];
    return handles;
  }
}

function describeRequests(requests: MpiRequest[]): string {
  const calls = Array.from(new Set(requests.map((r) => r.call)));
  return `${requests.length} request${requests.length === 1 ? "" : "s"}: ${calls.join(", ")}`;
}
