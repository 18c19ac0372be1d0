// ZeRO-1's parameter all-gather overlapped with the next forward pass (src/dist/param_gather.ts)
// under real Open MPI: every rank starts with the truth in its own shard and garbage elsewhere;
// before(part) must make exactly its group's ranges final (and every earlier group's), the last
// group or settle() everything, bit for bit; ShardedAdamW with a deferred gather must give the
// blocking all-gather's parameters. Small pieces (MAX_ELEMENTS_PER_CALL) and a small in-flight cap
// make pieces queue behind each other.
import { ParameterGather } from "../../src/dist/param_gather.ts";
import { ShardLayout } from "../../src/dist/shards.ts";
import { ShardedAdamW } from "../../src/dist/zero.ts";
import { firstDifference, runChecks, spreadF32 } from "./harness.ts";

const P = 10007; // prime: neither 2 nor 3 divides it
// Groups in the order a forward pass needs them; group 1 has two ranges far apart.
const GROUPS: Array<Array<[number, number]>> = [[[0, 300]], [[300, 2000], [5000, 5100]], [[2000, 5000]], [[5100, P]]];

function rangesEqual(got: Float32Array, want: Float32Array, ranges: Array<[number, number]>): string | null {
  for (const [a, b] of ranges) {
    const diff = firstDifference(got.subarray(a, b), want.subarray(a, b));
    if (diff !== null) return `[${a}, ${b}): ${diff}`;
  }
  return null;
}

await runChecks((h) => {
  const { dist } = h;
  const N = dist.size;
  const layout = new ShardLayout(P, N);
  for (const round of [1, 2]) {
    const truth = spreadF32(P, 9001 + round);
    const params = new Float32Array(P).fill(Number.NaN);
    params.set(truth.subarray(layout.start(dist.rank), layout.end(dist.rank)), layout.start(dist.rank));
    const gather = new ParameterGather(dist.duplicate(), params, layout, GROUPS, { maxFloatsInFlight: 500 });
    gather.start();
    h.check(`round ${round}: pending after start`, gather.pending);
    h.expectThrow(`round ${round}: a second start while in flight is refused`, () => gather.start(), /still in flight/);
    if (round === 1) {
      for (let part = -1; part < GROUPS.length - 1; part++) {
        gather.before(part);
        const through = GROUPS.slice(0, part + 2).flat();
        const diff = rangesEqual(params, truth, through);
        h.check(`round 1: before(${part}) makes groups 0…${part + 1} final`, diff === null, () => diff!);
        gather.afterKernel();
      }
    } else {
      gather.afterKernel();
      gather.settle();
    }
    const diff = firstDifference(params, truth);
    h.check(`round ${round}: every parameter is the owner's, bit for bit`, diff === null, () => diff!);
    const pieces = GROUPS.flat().reduce((n, [a, b]) => n + layout.piecesOf(a, b).reduce((m, p) => m + Math.ceil((p.end - p.start) / dist.maxElementsPerCall), 0), 0);
    h.check(`round ${round}: done, figures of one gather of P floats in ${pieces} broadcasts`, !gather.pending && gather.completed === 1 && gather.lastGather.floats === P && gather.lastGather.operations === pieces && gather.lastGather.ms > 0 && gather.lastGather.exposedMs <= gather.lastGather.ms + 1e-9, () => JSON.stringify(gather.lastGather));
    gather.settle(); // nothing in flight: a no-op
    gather.before(0);
    h.check(`round ${round}: settle() and before() with nothing in flight change nothing`, gather.completed === 1);
  }

  const layoutFor = new ShardLayout(P, N);
  h.expectThrow("groups leaving a gap are refused", () => new ParameterGather(dist, new Float32Array(P), layoutFor, [[[0, 100]], [[200, P]]]), /\[100, 200\) is in no group/);
  h.expectThrow("overlapping groups are refused", () => new ParameterGather(dist, new Float32Array(P), layoutFor, [[[0, 200]], [[100, P]]]), /overlaps/);
  h.expectThrow("a part outside the groups is refused", () => {
    const g = new ParameterGather(dist.duplicate(), new Float32Array(P), layoutFor, [[[0, P]]]);
    g.start();
    try {
      g.before(3);
    } finally {
      g.settle();
    }
  }, /part 3 is not one of/);

  // ShardedAdamW: a deferred gather gives the blocking all-gather's parameters, bit for bit.
  const start = spreadF32(P, 31337);
  const results: Float32Array[] = [];
  for (const deferred of [false, true]) {
    const params = start.slice();
    const grads = spreadF32(P, 4000 + dist.rank);
    const opt = new ShardedAdamW(dist, grads, { lr: 1e-3, weightDecay: 0.1 });
    const gather = deferred ? new ParameterGather(dist.duplicate(), params, opt.layout, GROUPS) : null;
    if (gather !== null) opt.deferGather(gather);
    for (let step = 0; step < 2; step++) {
      opt.reducer.waitAll();
      opt.update(params, 1e-3, 0.5);
      if (gather !== null) {
        h.check(`deferred update ${step + 1}: returns with the gather in flight`, gather.pending);
        for (let part = -1; part < GROUPS.length - 1; part++) gather.before(part);
      }
      grads.set(spreadF32(P, 5000 + 10 * step + dist.rank));
    }
    results.push(params);
  }
  const diff = firstDifference(results[1], results[0]);
  h.check("ShardedAdamW with the gather deferred = the blocking all-gather, bit for bit", diff === null, () => diff!);
});
