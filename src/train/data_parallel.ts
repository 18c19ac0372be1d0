// What `bun run train` does differently under `mpirun -np N` (N > 1): one model trained by N
// data-parallel ranks (docs/distributed.md). The trainer (trainer.ts) keeps its step; this file
// holds the parts that talk to the other ranks:
//
// - the backward hooks of a step's last micro-batch: as soon as the lm_head, then each block, is
//   done, its gradient slices are readied for reduction (GradientReducer), which progresses after
//   every kernel call; earlier micro-batches accumulate locally and communicate nothing;
// - wte's gradient (a third of d12's parameters) is readied right after the lm_head, and the
//   encoder's sparse rows of the last micro-batch travel separately (EmbeddingGradientExchange),
//   while the rows every rank receives (N·B·T of them) are few next to wte's Vp; otherwise the
//   encoder runs as usual and wte is reduced after it;
// - the update through ZeRO-0 (replicated AdamW) or ZeRO-1 (each rank's 1/N of the moments, then
//   an all-gather of the parameters), the gradient norm of the global gradient, the global loss;
// - ZeRO-1 with every rank on this machine: the gradients in a shared-memory window, summed by
//   their owners after the backward pass (NodeSharedReducer), and one copy of the parameters in
//   shared memory, updated in place shard by shard (no all-gather); LLMTS_DP_REDUCE=mpi opts out;
// - ZeRO-1 through MPI: the parameter all-gather after the update is posted group by group and
//   waited for by the next forward pass just before each block (ParameterGather); anything else
//   reading the parameters waits for all of it (GPT2.settleParameters); LLMTS_DP_PREFETCH=0 waits
//   at the update instead;
// - checkpoints: rank 0 writes the file, receiving the moments shard by shard (never the whole
//   1 GB of d12's moments at once under ZeRO-1);
// - the stop vote: every rank leaves the loop after the same step when any rank was signalled.
import { statfsSync } from "node:fs";
import { availableParallelism } from "node:os";
import { UsageError } from "../base/errors.ts";
import type { Distributed } from "../dist/distributed.ts";
import { EmbeddingGradientExchange } from "../dist/embedding_grads.ts";
import { addCommTimes, type CommTimes, emptyCommTimes } from "../dist/grad_reducer.ts";
import type { SharedSegments } from "../dist/mpi.ts";
import { ParameterGather } from "../dist/param_gather.ts";
import { createDataParallelOptimizer, type DataParallelOptimizer, ShardedAdamW, type ZeroStage } from "../dist/zero.ts";
import { parseThreadCount } from "../ffi.ts";
import type { MomentStream } from "../io/llmts_checkpoint.ts";
import type { BackwardHooks, GPT2 } from "../model/gpt2.ts";
import { BLOCK_TENSOR_NAMES, parameterLayout } from "../model/weights.ts";
import type { AdamWHyperparameters } from "../optim/adamw.ts";

/**
 * The embedding-row exchange is used while every rank's received rows (N·B·T rows of C floats)
 * are at most this fraction of wte (Vp rows). A rule of thumb, not a measured break-even: the
 * exchange moves N·B·T·C floats to every rank and adds them in TypeScript, against the Vp·C-float
 * wte reduction it takes off the end of the backward pass; at an eighth of Vp the rows are still
 * well below that, and the addition loop stays in the milliseconds.
 */
export const EMBEDDING_EXCHANGE_MAX_ROWS_FRACTION = 1 / 8;

export interface DataParallelOptions {
  /** use the embedding-row exchange (default: LLMTS_WTE_EXCHANGE, else by EMBEDDING_EXCHANGE_MAX_ROWS_FRACTION) */
  embeddingExchange?: boolean;
  /** how ZeRO-1 reduces the gradients (default: LLMTS_DP_REDUCE, else "auto") */
  reduce?: ReduceTransport;
  /** ZeRO-1 through MPI: overlap the parameter all-gather with the next forward pass (default: LLMTS_DP_PREFETCH, else true) */
  prefetch?: boolean;
}

/** LLMTS_DP_PREFETCH: "1" (default) overlap ZeRO-1's parameter all-gather with the next forward pass, "0" wait for it at the update. */
export function prefetchFromEnvironment(env: Record<string, string | undefined> = process.env): boolean {
  const text = env.LLMTS_DP_PREFETCH;
  if (text === undefined || text === "" || text === "1") return true;
  if (text === "0") return false;
  throw new UsageError(`LLMTS_DP_PREFETCH must be 0 or 1, got "${text}"`);
}

/**
 * "shared": ranks on one machine add each other's gradients in shared memory (NodeSharedReducer);
 * "mpi": through MPI messages, overlapped with the backward pass (GradientReducer); "auto":
 * shared when ZeRO-1 and every rank is on this machine, else mpi. ZeRO-0 always uses mpi.
 */
export type ReduceTransport = "auto" | "shared" | "mpi";

/** LLMTS_DP_REDUCE: auto (default), shared or mpi. */
export function reduceTransportFromEnvironment(env: Record<string, string | undefined> = process.env): ReduceTransport {
  const text = env.LLMTS_DP_REDUCE;
  if (text === undefined || text === "" || text === "auto") return "auto";
  if (text === "shared" || text === "mpi") return text;
  throw new UsageError(`LLMTS_DP_REDUCE must be auto, shared or mpi, got "${text}"`);
}

/**
 * LLMTS_WTE_EXCHANGE: "1" always exchange the embedding rows, "0" never (reduce wte after the
 * encoder), unset or "auto" decide by the row count. Both give the same gradients up to the order
 * of float32 additions; which is faster depends on the network.
 */
export function embeddingExchangeFromEnvironment(env: Record<string, string | undefined> = process.env): boolean | undefined {
  const text = env.LLMTS_WTE_EXCHANGE;
  if (text === undefined || text === "" || text === "auto") return undefined;
  if (text === "1" || text === "0") return text === "1";
  throw new UsageError(`LLMTS_WTE_EXCHANGE must be 0, 1 or auto, got "${text}"`);
}

/** Ranks mpirun started on this node (OMPI_COMM_WORLD_LOCAL_SIZE), 1 when unknown. */
export function ranksOnThisNode(env: Record<string, string | undefined> = process.env): number {
  const n = Number(env.OMPI_COMM_WORLD_LOCAL_SIZE);
  return Number.isSafeInteger(n) && n >= 1 ? n : 1;
}

/** Kernel threads of a rank when --threads is not given: LLMTS_THREADS, else the node's cores shared among its ranks. */
export function defaultThreadsPerRank(env: Record<string, string | undefined> = process.env): number {
  if (env.LLMTS_THREADS !== undefined && env.LLMTS_THREADS !== "") return parseThreadCount(env.LLMTS_THREADS, "LLMTS_THREADS");
  return Math.max(1, Math.floor(Math.min(64, availableParallelism()) / ranksOnThisNode(env)));
}

/**
 * Whether Open MPI's backing directory for shared windows (OMPI_MCA_osc_sm_backing_directory,
 * /dev/shm by default) has room for ZeRO-1's windows on one machine: every rank's gradients and
 * one copy of the parameters, 4·P·(N+1) bytes (+5%). A tmpfs too small would let the windows be
 * created and then end the job with SIGBUS when their pages are first written (containers often
 * give /dev/shm 64 MB).
 */
export function sharedWindowRoom(ranks: number, params: number, env: Record<string, string | undefined> = process.env, free: (dir: string) => number = freeBytes): { fits: boolean; text: string } {
  const dir = env.OMPI_MCA_osc_sm_backing_directory || "/dev/shm";
  const need = Math.ceil(4 * params * (ranks + 1) * 1.05);
  let available: number;
  try {
    available = free(dir);
  } catch (error) {
    return { fits: false, text: `the shared-memory windows need ${gb(need)} in ${dir} (Open MPI's osc_sm_backing_directory), which cannot be read (${(error as Error).message})` };
  }
  const fits = available >= need;
  return { fits, text: `the shared-memory windows need ${gb(need)} in ${dir} (Open MPI's osc_sm_backing_directory), ${gb(available)} free${fits ? "" : ": enlarge it (docker run --shm-size) or point OMPI_MCA_osc_sm_backing_directory at a larger local tmpfs"}` };
}

function freeBytes(dir: string): number {
  const stats = statfsSync(dir);
  return stats.bavail * stats.bsize;
}

const gb = (bytes: number) => `${(bytes / 1e9).toFixed(2)} GB`;

export class DataParallelTraining {
  readonly optimizer: DataParallelOptimizer;
  readonly exchange: EmbeddingGradientExchange | null;
  /** ZeRO-1 on one machine: the ranks' gradient buffers, one shared-memory segment each (else null) */
  readonly shared: SharedSegments | null;
  /** why ZeRO-1 on one machine does not reduce in shared memory after all (not enough room for the windows), else null */
  readonly sharedMemoryNote: string | null;
  /** the hooks of a step's last backward pass */
  readonly hooks: BackwardHooks;
  /** ZeRO-1 through MPI with prefetch: the all-gather the next forward pass waits for part by part (else null) */
  readonly gather: ParameterGather | null;
  /**
   * The last step's communication: gradient reduction, embedding rows and (ZeRO-1) the parameter
   * all-gather — with prefetch, the one that arrived during this step's forward pass (the previous
   * update's) plus this update's posting.
   */
  lastStep: CommTimes = emptyCommTimes();
  private gathersCounted = 0;
  private readonly headRanges: Array<[number, number]>;
  private readonly layerRanges: Array<Array<[number, number]>>;

  constructor(readonly dist: Distributed, readonly model: GPT2, hyper: Partial<AdamWHyperparameters>, readonly zero: ZeroStage, B: number, T: number, options: DataParallelOptions = {}) {
    const config = model.config;
    const { offsets, sizes, total } = parameterLayout(config);
    // The optimizer (its gradient reducer above all, which starts queued reductions as earlier ones
    // complete) works on a communicator of its own, so its collectives never have to line up with
    // the ones this class starts on `dist` (the row exchange, the loss, the stop vote).
    const optimizerGroup = dist.duplicate();
    const transport = options.reduce ?? reduceTransportFromEnvironment();
    if (transport === "shared" && (zero !== 1 || !optimizerGroup.sharesMemory())) {
      throw new UsageError(`LLMTS_DP_REDUCE=shared needs --zero 1 and every rank on one machine (here: --zero ${zero}, ${optimizerGroup.sharesMemory() ? "one machine" : "several machines"})`);
    }
    // Collective decisions: sharesMemory() is the same on every rank (one split of the group), and
    // so is whether Open MPI's backing directory holds the windows (every rank must see room).
    let useShared = zero === 1 && transport !== "mpi" && optimizerGroup.sharesMemory();
    this.sharedMemoryNote = null;
    if (useShared) {
      const room = sharedWindowRoom(dist.size, total);
      if (optimizerGroup.sumF64([room.fits ? 1 : 0])[0] !== optimizerGroup.size) {
        if (transport === "shared") throw new UsageError(`LLMTS_DP_REDUCE=shared: ${room.text}`);
        this.sharedMemoryNote = `${room.text}; reducing through MPI instead`;
        useShared = false;
      }
    }
    this.shared = useShared ? optimizerGroup.allocateSharedSegments(total) : null;
    // Every rank starts from rank 0's parameters: on one machine (ZeRO-1) every rank trains the
    // same parameters in shared memory, each owner updating its shard in place (no all-gather);
    // otherwise rank 0 broadcasts them into every rank's own copy.
    if (this.shared !== null) {
      model.useGradientBuffer(this.shared.mine);
      const params = optimizerGroup.allocateSharedArray(total).view(0);
      if (dist.isRoot) params.set(model.params);
      optimizerGroup.barrier("rank 0 wrote the shared parameters");
      model.useParameterBuffer(params);
    } else {
      dist.broadcast(model.params, 0, "broadcast of the initial parameters");
    }
    this.optimizer = createDataParallelOptimizer(optimizerGroup, model.grads, hyper, zero, {}, this.shared, this.shared === null ? null : model.params);
    const rows = dist.size * B * T;
    // In shared memory the encoder's rows are summed with everything else at the end of the step.
    const useExchange = this.shared === null && (options.embeddingExchange ?? embeddingExchangeFromEnvironment() ?? rows <= config.Vp * EMBEDDING_EXCHANGE_MAX_ROWS_FRACTION);
    if (useExchange) {
      const owned = this.optimizer instanceof ShardedAdamW ? { start: this.optimizer.shardStart, end: this.optimizer.shardEnd } : { start: 0, end: total };
      this.exchange = new EmbeddingGradientExchange(dist, { C: config.C, Vp: config.Vp, maxT: config.maxT, wteOffset: offsets.wte, wpeOffset: offsets.wpe }, owned, B * T);
    } else this.exchange = null;
    // After the lm_head: lnf, and (with the exchange) wte and wpe, which hold everything but this
    // micro-batch's encoder rows. Without the exchange wte and wpe are reduced last (waitAll).
    this.headRanges = [[offsets.lnfw, total]];
    if (this.exchange !== null) this.headRanges.unshift([offsets.wte, offsets.wpe + sizes.wpe]);
    this.layerRanges = Array.from({ length: config.L }, (_, l) =>
      BLOCK_TENSOR_NAMES.map((name): [number, number] => {
        const perLayer = sizes[name] / config.L;
        return [offsets[name] + l * perLayer, offsets[name] + (l + 1) * perLayer];
      }),
    );
    // The forward pass reads the embeddings first, then block after block, then lnf (wte again).
    const prefetch = zero === 1 && this.shared === null && (options.prefetch ?? prefetchFromEnvironment());
    if (prefetch && this.optimizer instanceof ShardedAdamW) {
      const groups = [[[offsets.wte, offsets.wpe + sizes.wpe] as [number, number]], ...this.layerRanges, [[offsets.lnfw, total] as [number, number]]];
      // A communicator of its own: pieces are posted as earlier ones complete (see ParameterGather).
      this.gather = new ParameterGather(dist.duplicate(), model.params, this.optimizer.layout, groups);
      this.optimizer.deferGather(this.gather);
    } else this.gather = null;
    const reducer = this.optimizer.reducer;
    const exchange = this.exchange;
    this.hooks = {
      afterHead: () => {
        for (const [a, b] of this.headRanges) reducer.ready(a, b);
      },
      afterLayer: (l) => {
        for (const [a, b] of this.layerRanges[l]) reducer.ready(a, b);
      },
      afterKernel: () => reducer.progress(),
      ...(exchange === null ? {} : { encoder: (dout: Float32Array, inputs: Int32Array, b: number, t: number) => exchange.start(inputs, dout, b, t) }),
    };
  }

  /**
   * After the last backward pass of a step: waits for the reduction and adds the exchanged
   * embedding rows. The gradient buffer then holds sums over ranks (ZeRO-1: in this rank's shard only).
   */
  reduce(): void {
    const reduced = this.optimizer.reducer.waitAll();
    const rows = this.exchange?.finish(this.model.grads) ?? emptyCommTimes();
    this.lastStep = emptyCommTimes();
    addCommTimes(this.lastStep, reduced);
    addCommTimes(this.lastStep, rows);
    // The previous update's all-gather, which arrived during this step's forward pass.
    if (this.gather !== null && this.gather.completed > this.gathersCounted) {
      addCommTimes(this.lastStep, this.gather.lastGather);
      this.gathersCounted = this.gather.completed;
    }
  }

  /**
   * AdamW on the mean over ranks × gradScale; ZeRO-1 then all-gathers the parameters — with
   * prefetch it posts the all-gather and the model waits for it as its next forward pass goes.
   */
  update(lr: number, gradScale: number): void {
    this.optimizer.update(this.model.params, lr, gradScale);
    addCommTimes(this.lastStep, this.optimizer.lastUpdateComm);
    if (this.gather?.pending) this.model.deferParameters(this.gather);
  }

  /** The mean over ranks of one value (identical bits on every rank). */
  mean(value: number): number {
    return this.dist.meanF64(value);
  }

  /** True on every rank when any rank asks to stop (a signal reaches the ranks at slightly different times). */
  anyRank(wants: boolean): boolean {
    return this.dist.sumF64([wants ? 1 : 0])[0] > 0;
  }

  /**
   * Collective: rank 0 runs `write` with the full moments as a stream (rank by rank, in index
   * order); the other ranks send theirs.
   */
  writeCheckpoint(write: (moments: MomentStream) => void): void {
    if (this.dist.isRoot) {
      write((which, emit) => this.optimizer.streamMomentToRoot(which, (_, values) => emit(values)));
      return;
    }
    this.optimizer.streamMomentToRoot("m", () => {});
    this.optimizer.streamMomentToRoot("v", () => {});
  }
}
