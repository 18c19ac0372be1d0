// Bandwidth of the collectives data parallelism uses, between the ranks of one mpirun:
//   mpirun --allow-run-as-root -np 2 -x NO_COLOR=1 bun bench/mpi_collectives.ts [--sizes 10e6,124e6] [--runs 5] [--json]
//     [--max-per-call N]  (elements per MPI call, default 2^22: the split transfers of src/dist)
// For each size n (floats; 124M ≈ all of d12's gradients) and operation, the median wall time
// over --runs (after one warm-up) on rank 0, and two bandwidths (NCCL's conventions, S = 4n bytes):
//   algbw = S / t;  busbw = algbw · 2(N-1)/N for allreduce, · (N-1)/N for reduce-scatter and
//   all-gather (the bytes each rank's link must carry, comparable across N).
// Operations: MPI_Allreduce (blocking, in place); Iallreduce (what ZeRO-0's reducer posts, libnbc
// ring); MPI_Reduce_scatter_block; reduce to owners (what ZeRO-1's reducer posts: one MPI_Ireduce
// per shard, in place at its owner); all-gather of shards (ZeRO-1's parameter all-gather, in place).
import { parseBenchArgs } from "./args.ts";
import { startDistributed } from "../src/dist/distributed.ts";
import { ShardLayout } from "../src/dist/shards.ts";

const { values } = parseBenchArgs({ options: { sizes: { type: "string", default: "10e6,124e6" }, runs: { type: "string", default: "5" }, json: { type: "boolean", default: false }, "max-per-call": { type: "string" } } });
const dist = startDistributed(values["max-per-call"] === undefined ? {} : { maxElementsPerCall: Number(values["max-per-call"]) });
if (dist === null) {
  console.error("bench/mpi_collectives.ts runs under mpirun: mpirun --allow-run-as-root -np 2 -x NO_COLOR=1 bun bench/mpi_collectives.ts");
  process.exit(2);
}
const sizes = values.sizes!.split(",").map(Number);
const runs = Number(values.runs);
if (!sizes.every((n) => Number.isSafeInteger(n) && n >= dist.size) || !Number.isInteger(runs) || runs < 1) {
  console.error(`--sizes must be integers ≥ ${dist.size} (got ${values.sizes}) and --runs a positive integer (got ${values.runs})`);
  process.exit(2);
}
const N = dist.size;

interface Operation {
  name: string;
  /** factor from algbw to busbw */
  bus: number;
  run: (buffer: Float32Array, layout: ShardLayout, recv: Float32Array) => void;
}

const OPERATIONS: Operation[] = [
  { name: "MPI_Allreduce", bus: (2 * (N - 1)) / N, run: (b) => dist.mpi.allreduce(b) },
  { name: "Iallreduce (ZeRO-0)", bus: (2 * (N - 1)) / N, run: (b) => dist.wait(dist.startAllreduce(b), "bench") },
  { name: "MPI_Reduce_scatter_block", bus: (N - 1) / N, run: (b, l, recv) => dist.mpi.reduceScatter(b.subarray(0, l.shardSize * N), recv, Array.from({ length: N }, () => l.shardSize)) },
  { name: "reduce to owners (ZeRO-1)", bus: (N - 1) / N, run: (b, l) => dist.wait(dist.startReduceToOwners(b, l, 0, b.length), "bench") },
  { name: "all-gather shards (ZeRO-1)", bus: (N - 1) / N, run: (b, l) => dist.wait(dist.startAllgatherShards(b, l), "bench") },
];

const rows: Array<Record<string, number | string>> = [];
for (const n of sizes) {
  const layout = new ShardLayout(n - (n % N), N); // equal shards, so Reduce_scatter_block fits
  const buffer = new Float32Array(layout.count).fill(1);
  const recv = new Float32Array(layout.shardSize);
  for (const op of OPERATIONS) {
    const times: number[] = [];
    for (let i = 0; i <= runs; i++) {
      dist.barrier("bench");
      const started = performance.now();
      op.run(buffer, layout, recv);
      if (i > 0) times.push(performance.now() - started);
      buffer.fill(1); // sums grow otherwise; the fill is outside the timed part
    }
    const ms = times.sort((a, b) => a - b)[Math.floor(times.length / 2)];
    const algbw = (4 * layout.count) / (ms / 1000) / 1e9;
    rows.push({ bench: "mpi_collectives", op: op.name, ranks: N, floats: layout.count, ms_median: +ms.toFixed(2), ms_min: +times[0].toFixed(2), algbw_gb_s: +algbw.toFixed(2), busbw_gb_s: +(algbw * op.bus).toFixed(2) });
  }
}
if (dist.isRoot) {
  if (values.json) for (const row of rows) console.log(JSON.stringify(row));
  else {
    console.log(`${N} ranks, median of ${runs} runs (min in brackets); busbw = bytes each rank's link carries per second`);
    for (const r of rows) console.log(`${String(r.op).padEnd(28)} ${(Number(r.floats) / 1e6).toFixed(0).padStart(4)}M floats  ${String(r.ms_median).padStart(8)} ms (${r.ms_min})  algbw ${String(r.algbw_gb_s).padStart(5)} GB/s  busbw ${String(r.busbw_gb_s).padStart(5)} GB/s`);
  }
}
dist.finalize();
