// Collectives under real Open MPI against float64 references: the raw wrappers of src/dist/mpi.ts
// (blocking and non-blocking) and the split, watched collectives of src/dist/distributed.ts.
//
// Bound for a float32 sum over N ranks, whatever order MPI adds in: a sum of N terms computed in
// any order (any binary tree) differs from the exact sum by at most (N-1)·u·Σ|x_r| with
// u = 2^-24 (each of the N-1 additions rounds once, and every partial sum is bounded by Σ|x_r|).
// For N = 2 there is a single addition, so the result must be exactly fl(x_0 + x_1).
import { MpiArgumentError } from "../../src/dist/mpi.ts";
import { ShardLayout } from "../../src/dist/shards.ts";
import { type Harness, runChecks, sameOnAllRanks, spreadF32 } from "./harness.ts";

const U32 = 2 ** -24;
const U64 = 2 ** -53;

/** Worst |got - exact| / ((N-1)·u·Σ|x|) over elements; ≤ 1 passes. Exactness for N = 2. */
function sumError(got: Float32Array | Float64Array, inputs: Array<Float32Array | Float64Array>, offset: number, u: number): { ratio: number; exact: boolean } {
  const N = inputs.length;
  let ratio = 0;
  let exact = true;
  for (let i = 0; i < got.length; i++) {
    let sum = 0;
    let abs = 0;
    for (const x of inputs) {
      sum += x[offset + i];
      abs += Math.abs(x[offset + i]);
    }
    const err = Math.abs(got[i] - sum);
    // A float64 reference of float64 inputs carries a rounding error of the same size as MPI's
    // own sum, so the two can differ by twice it; a float64 sum of float32 inputs is exact enough.
    const bound = (got instanceof Float64Array ? 2 : 1) * (N - 1) * u * abs;
    ratio = Math.max(ratio, bound === 0 ? (err === 0 ? 0 : Infinity) : err / bound);
    if (N === 2) {
      const want = got instanceof Float32Array ? Math.fround(inputs[0][offset + i] + inputs[1][offset + i]) : inputs[0][offset + i] + inputs[1][offset + i];
      if (!Object.is(got[i], want)) exact = false;
    }
  }
  return { ratio, exact };
}

function checkSum(h: Harness, name: string, got: Float32Array | Float64Array, inputs: Array<Float32Array | Float64Array>, offset = 0): void {
  const u = got instanceof Float32Array ? U32 : U64;
  const { ratio, exact } = sumError(got, inputs, offset, u);
  h.check(`${name}: within (N-1)·u·Σ|x| of the float64 sum`, ratio <= 1, () => `error reaches ${ratio.toFixed(3)}× the bound`);
  if (inputs.length === 2) h.check(`${name}: exactly fl(x0 + x1) on 2 ranks`, exact);
}

function everyRank<T>(N: number, make: (r: number) => T): T[] {
  return Array.from({ length: N }, (_, r) => make(r));
}

await runChecks((h) => {
  const { dist } = h;
  const { mpi } = dist;
  const N = dist.size;
  const me = dist.rank;
  const n = 10007;

  // ---- raw blocking wrappers ----
  {
    const inputs = everyRank(N, (r) => spreadF32(n, 100 + r));
    const buf = inputs[me].slice();
    mpi.allreduce(buf, "sum");
    checkSum(h, "MPI_Allreduce f32 sum", buf, inputs);
    h.check("MPI_Allreduce f32: the same bits on every rank", sameOnAllRanks(dist, buf));
  }
  {
    const inputs = everyRank(N, (r) => Float64Array.from(spreadF32(n, 200 + r), (x, i) => x * (1 + i * 1e-9)));
    const sum = inputs[me].slice();
    mpi.allreduce(sum, "sum");
    checkSum(h, "MPI_Allreduce f64 sum", sum, inputs);
    const max = inputs[me].slice();
    mpi.allreduce(max, "max");
    h.check("MPI_Allreduce f64 max", max.every((x, i) => x === Math.max(...inputs.map((a) => a[i]))));
    const min = inputs[me].slice();
    mpi.allreduce(min, "min");
    h.check("MPI_Allreduce f64 min", min.every((x, i) => x === Math.min(...inputs.map((a) => a[i]))));
  }
  {
    // Uneven counts, one rank receiving nothing; then equal counts (MPI_Reduce_scatter_block).
    for (const counts of [everyRank(N, (r) => (r === 1 ? 0 : 37 + 11 * r)), everyRank(N, () => 64)]) {
      const total = counts.reduce((a, b) => a + b, 0);
      const inputs = everyRank(N, (r) => spreadF32(total, 300 + r));
      const recv = new Float32Array(counts[me]);
      mpi.reduceScatter(inputs[me], recv, counts);
      const offset = counts.slice(0, me).reduce((a, b) => a + b, 0);
      checkSum(h, `MPI_Reduce_scatter counts [${counts}]`, recv, inputs, offset);
    }
  }
  {
    const counts = everyRank(N, (r) => 5 + 3 * r);
    const displs = counts.map((_, r) => counts.slice(0, r).reduce((a, b) => a + b, 0) + 2 * r); // gaps of 2
    const total = displs[N - 1] + counts[N - 1];
    const parts = everyRank(N, (r) => spreadF32(counts[r], 400 + r));
    const want = new Float32Array(total).fill(-7);
    for (let r = 0; r < N; r++) want.set(parts[r], displs[r]);
    const recv = new Float32Array(total).fill(-7);
    mpi.allgatherv(parts[me], recv, counts, displs);
    h.check("MPI_Allgatherv with gaps", recv.every((x, i) => Object.is(x, want[i])));
    const inPlace = new Float32Array(total).fill(-7);
    inPlace.set(parts[me], displs[me]);
    mpi.allgatherv(null, inPlace, counts, displs);
    h.check("MPI_Allgatherv in place", inPlace.every((x, i) => Object.is(x, want[i])));
  }
  {
    const root = N - 1;
    const want = spreadF32(n, 500);
    const buf = me === root ? want.slice() : new Float32Array(n);
    mpi.broadcast(buf, root);
    h.check(`MPI_Bcast from rank ${root}`, buf.every((x, i) => Object.is(x, want[i])));
    const bytes = me === 0 ? new TextEncoder().encode("héllo") : new Uint8Array(6);
    mpi.broadcast(bytes, 0);
    h.check("MPI_Bcast of bytes", new TextDecoder().decode(bytes) === "héllo");
    mpi.barrier();
  }

  // ---- raw non-blocking wrappers ----
  {
    const inputs = everyRank(N, (r) => spreadF32(n, 600 + r));
    const a = inputs[me].slice();
    const counts = everyRank(N, (r) => 100 + r);
    const total = counts.reduce((x, y) => x + y, 0);
    const rsInputs = everyRank(N, (r) => spreadF32(total, 700 + r));
    const rsRecv = new Float32Array(counts[me]);
    const gathered = new Float32Array(N * 3);
    const reduced = everyRank(N, (r) => spreadF32(n, 800 + r));
    const atRoot = reduced[me].slice();
    const requests = [
      mpi.iallreduce(a, "sum"),
      mpi.ireduceScatter(rsInputs[me], rsRecv, counts),
      mpi.iallgatherv(Float32Array.of(me, me + 0.5, -me), gathered, everyRank(N, () => 3), everyRank(N, (r) => 3 * r)),
      mpi.ireduce(atRoot, N - 1),
    ];
    let polls = 0;
    while (!mpi.test(requests[0])) polls++;
    mpi.wait(requests[1]);
    mpi.waitAll(requests);
    h.check("MPI_Test/MPI_Wait/MPI_Waitall complete every request", requests.every((r) => r.done) && polls >= 0);
    checkSum(h, "MPI_Iallreduce", a, inputs);
    checkSum(h, "MPI_Ireduce_scatter", rsRecv, rsInputs, counts.slice(0, me).reduce((x, y) => x + y, 0));
    h.check("MPI_Iallgatherv", gathered.every((x, i) => x === [Math.floor(i / 3), Math.floor(i / 3) + 0.5, -Math.floor(i / 3)][i % 3]));
    if (me === N - 1) checkSum(h, "MPI_Ireduce to the last rank", atRoot, reduced);
    else h.check("MPI_Ireduce leaves a non-root buffer alone", atRoot.every((x, i) => Object.is(x, reduced[me][i])));
    const b = mpi.ibroadcast(me === 0 ? Float64Array.of(1.5, -2) : new Float64Array(2), 0);
    h.check("MPI_Testall", (() => {
      while (!mpi.testAll([b])) {}
      return b.done;
    })());
    mpi.wait(mpi.ibarrier());
  }

  // ---- argument checks: thrown on every rank before any call, so nothing is left unmatched ----
  h.expectThrow("allreduce of a plain array", () => mpi.allreduce([1, 2] as unknown as Float32Array), /must be a Float32Array, Float64Array, Int32Array or Uint8Array/);
  h.expectThrow("reduceScatter: send length vs counts", () => mpi.reduceScatter(new Float32Array(5), new Float32Array(2), everyRank(N, () => 2)), new RegExp(`send has 5 elements, the recvCounts need ${2 * N}`));
  h.expectThrow("reduceScatter: mixed types", () => mpi.reduceScatter(new Float64Array(2 * N), new Float32Array(2), everyRank(N, () => 2)), /send is a Float64Array but recv is a Float32Array/);
  h.expectThrow("reduceScatter: counts per rank", () => mpi.reduceScatter(new Float32Array(2), new Float32Array(2), [2]), N === 1 ? /./ : new RegExp(`recvCounts has 1 entries, one per rank needs ${N}`));
  h.expectThrow("count above 2^31-1", () => mpi.reduceScatter(new Float32Array(2), new Float32Array(2), everyRank(N, (r) => (r === 0 ? 2 ** 31 : 2))), /recvCounts\[0\] must be an integer from 0 to 2\^31-1/);
  h.expectThrow("allgatherv: recv too short", () => mpi.allgatherv(new Float32Array(2), new Float32Array(2 * N - 1), everyRank(N, () => 2), everyRank(N, (r) => 2 * r)), new RegExp(`recv has ${2 * N - 1} elements, counts and displs reach element ${2 * N}`));
  h.expectThrow("broadcast root out of range", () => mpi.broadcast(new Float32Array(1), N), new RegExp(`root must be a rank from 0 to ${N - 1}, got ${N}`));
  h.expectThrow("reduction of bytes", () => mpi.allreduce(new Uint8Array(2) as unknown as Int32Array), /reductions need numbers/);
  h.check("argument errors are MpiArgumentError", (() => {
    try {
      mpi.broadcast(new Float32Array(1), -1);
    } catch (error) {
      return error instanceof MpiArgumentError;
    }
    return false;
  })());

  // ---- Distributed: split transfers (MAX_ELEMENTS_PER_CALL is small here), shards, helpers ----
  h.check("transfers are split", dist.maxElementsPerCall < n, () => `maxElementsPerCall is ${dist.maxElementsPerCall}`);
  {
    const inputs = everyRank(N, (r) => spreadF32(n, 900 + r));
    const buf = inputs[me].slice();
    const requests = dist.startAllreduce(buf);
    h.check("startAllreduce posts one request per piece", requests.length === Math.ceil(n / dist.maxElementsPerCall));
    dist.wait(requests, "split allreduce");
    checkSum(h, "split allreduce", buf, inputs);
    const b = me === 1 % N ? inputs[0].slice() : new Float32Array(n);
    dist.broadcast(b, 1 % N);
    h.check("split broadcast", b.every((x, i) => Object.is(x, inputs[0][i])));
  }
  {
    const P = 10007; // prime: no N > 1 divides it
    const layout = new ShardLayout(P, N);
    const inputs = everyRank(N, (r) => spreadF32(P, 1000 + r));
    const buf = inputs[me].slice();
    // Ranges cut across shard boundaries, posted out of index order (as a backward pass does).
    const cuts = [0, 17, 3000, 3001, 5003, 5004, 8000, P];
    const requests = [];
    for (let k = cuts.length - 2; k >= 0; k--) requests.push(...dist.startReduceToOwners(buf, layout, cuts[k], cuts[k + 1]));
    dist.wait(requests, "reduce to owners");
    const [lo, hi] = [layout.start(me), layout.end(me)];
    checkSum(h, `reduce to owners: shard [${lo}, ${hi}) of ${P}`, buf.subarray(lo, hi), inputs, lo);
    h.check("reduce to owners leaves the rest of the buffer alone", buf.every((x, i) => (i >= lo && i < hi) || Object.is(x, inputs[me][i])));
    // All-gather the shards back: every rank ends with every owner's sums.
    const owned = buf.subarray(lo, hi).slice();
    dist.wait(dist.startAllgatherShards(buf, layout), "all-gather shards");
    h.check("all-gather of shards: own shard unchanged", buf.subarray(lo, hi).every((x, i) => Object.is(x, owned[i])));
    checkSum(h, "all-gather of shards: every shard holds its owner's sums", buf, inputs);
    h.check("all-gather of shards: the same bits on every rank", sameOnAllRanks(dist, buf));
  }
  {
    h.check("sumF64 in rank order", dist.sumF64([me, 0.1 * me])[0] === (N * (N - 1)) / 2);
    h.check("meanF64", dist.meanF64(me + 1) === (N + 1) / 2);
    const json = dist.broadcastJson(me === 0 ? { step: 12, files: ["a", "é"] } : null);
    h.check("broadcastJson", JSON.stringify(json) === JSON.stringify({ step: 12, files: ["a", "é"] }));
    dist.agree("the run spec", "d12 B=4 T=64");
    h.check("agree passes when the ranks agree", true);
    h.expectThrow("agree names the ranks that differ", () => dist.agree("the run spec", me === N - 1 && N > 1 ? "d12 B=8" : "d12 B=4"), N > 1 ? new RegExp(`the ranks disagree on the run spec: rank ${N - 1} differs from rank 0`) : /never/);
  }
});
