// ZeRO-0 and ZeRO-1 AdamW under real Open MPI against one process's AdamW (src/optim/adamw.ts)
// applied to the mean over ranks of the same gradients.
//
// Bit for bit, because the gradients make the reduction order irrelevant: dyadic values (see
// harness.ts) whose sums are exact in float32 for any order, so MPI's sum equals the reference's
// sum exactly; the 1/N goes into AdamW's gradient scale the same way on both sides, and the AdamW
// kernel is element-wise, so a shard updated alone gives the bits of the full update. On 2 ranks
// arbitrary floats must match too: one addition, and a + b = b + a in IEEE arithmetic.
//
// MODE=train (default): 3 steps from a seeded start for ZeRO-0 and ZeRO-1, a parameter count no N
// divides; STATE_OUT=file saves ZeRO-1's gathered state. MODE=resume with STATE_IN=file: hand the
// saved (any N's) state to this run's ranks, check that gathering it back gives the same bits,
// train 2 more steps against one process resumed from the same file, and save STATE_OUT again.
import { readFileSync, writeFileSync } from "node:fs";
import { GradientReducer } from "../../src/dist/grad_reducer.ts";
import { NodeSharedReducer } from "../../src/dist/node_reducer.ts";
import { createDataParallelOptimizer, type DataParallelOptimizer, type ShardedAdamW, type ZeroStage } from "../../src/dist/zero.ts";
import { AdamW } from "../../src/optim/adamw.ts";
import { dyadicF32, firstDifference, type Harness, runChecks, sameOnAllRanks, spreadF32 } from "./harness.ts";

const HYPER = { lr: 1e-3, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1 };
const P = 10007; // prime: neither 2 nor 3 divides it

interface State {
  step: number;
  params: Float32Array;
  m: Float32Array;
  v: Float32Array;
}

function save(path: string, s: State): void {
  const header = new Float64Array([s.params.length, s.step]);
  writeFileSync(path, Buffer.concat([header, s.params, s.m, s.v].map((a) => Buffer.from(a.buffer, a.byteOffset, a.byteLength))));
}

function load(path: string): State {
  const bytes = readFileSync(path);
  const header = new Float64Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + 16));
  const n = header[0];
  const floats = new Float32Array(bytes.buffer.slice(bytes.byteOffset + 16, bytes.byteOffset + 16 + 12 * n));
  return { step: header[1], params: floats.slice(0, n), m: floats.slice(n, 2 * n), v: floats.slice(2 * n, 3 * n) };
}

/** Tensor-like slices of [0, n) (uneven, some tiny), readied last to first as a backward pass would. */
function backwardSlices(n: number): Array<[number, number]> {
  const cuts = Array.from(new Set([0, 1, 37, Math.floor(n / 3), Math.floor(n / 3) + 5, Math.floor(n / 2), n - 700, n - 3, n].filter((c) => c >= 0 && c <= n))).sort((a, b) => a - b);
  const slices: Array<[number, number]> = [];
  for (let k = cuts.length - 2; k >= 0; k--) slices.push([cuts[k], cuts[k + 1]]);
  return slices;
}

/** The gradients rank r contributes at `step` (seeded: every rank can build every rank's). */
function gradientsOf(kind: "dyadic" | "spread", n: number, step: number, r: number): Float32Array {
  return kind === "dyadic" ? dyadicF32(n, 7919 * step + r) : spreadF32(n, 104729 * step + r);
}

/** Σ over ranks in float32 (exact for dyadic values; one rounding on 2 ranks). */
function sumOverRanks(kind: "dyadic" | "spread", n: number, step: number, N: number): Float32Array {
  const sum = new Float32Array(n);
  for (let r = 0; r < N; r++) {
    const g = gradientsOf(kind, n, step, r);
    for (let i = 0; i < n; i++) sum[i] += g[i];
  }
  return sum;
}

/**
 * Steps first+1 … first+steps of `opt` against `ref` (one process) on the same parameters; checks
 * the norm, the parameters (bits, and the same on every rank) after every step.
 */
function trainAgainstReference(h: Harness, label: string, opt: DataParallelOptimizer, params: Float32Array, ref: AdamW, refParams: Float32Array, kind: "dyadic" | "spread", first: number, steps: number, between: () => void = () => {}): void {
  const { dist } = h;
  const N = dist.size;
  const n = params.length;
  for (let step = first + 1; step <= first + steps; step++) {
    const grads = opt.reducer.grads;
    grads.set(gradientsOf(kind, n, step, dist.rank));
    // The backward pass readies slices last to first, computing in between; one slice is left for waitAll.
    const slices = backwardSlices(n);
    for (let k = 0; k < slices.length; k++) {
      if (k === 2) continue;
      opt.reducer.ready(...slices[k]);
      opt.reducer.progress();
      between();
    }
    const times = opt.reducer.waitAll();
    if (step === first + 1) {
      // Through MPI at least one operation per slice; in shared memory two barriers.
      const operations = opt.reducer instanceof GradientReducer ? slices.length : 2;
      h.check(`${label}: the step's figures count every gradient once`, times.floats === n && times.operations >= operations && times.ms >= 0 && times.exposedMs >= 0, () => JSON.stringify(times));
    }
    const sum = sumOverRanks(kind, n, step, N);
    let sq = 0;
    for (let i = 0; i < n; i++) sq += (sum[i] / N) ** 2;
    const norm = opt.gradNorm();
    h.check(`${label} step ${step}: global gradient norm`, Math.abs(norm - Math.sqrt(sq)) <= 1e-12 * Math.sqrt(sq), () => `${norm} vs ${Math.sqrt(sq)}`);
    const clip = step % 2 === 0 ? 0.5 : 1; // the scale a gradient clip would pass
    const lr = HYPER.lr * (1 - 0.1 * step);
    opt.update(params, lr, clip);
    ref.update(refParams, sum, lr, clip / N);
    const diff = firstDifference(params, refParams);
    h.check(`${label} step ${step}: parameters equal one process's AdamW bit for bit`, diff === null, () => diff!);
    h.check(`${label} step ${step}: parameters identical on every rank`, sameOnAllRanks(dist, params));
    h.check(`${label} step ${step}: optimizer step`, opt.step === step && ref.step === step);
  }
}

function checkMoments(h: Harness, label: string, opt: DataParallelOptimizer, want: { m: Float32Array; v: Float32Array }): void {
  const got = opt.gatherMoments();
  if (h.dist.isRoot) {
    const dm = firstDifference(got!.m, want.m);
    const dv = firstDifference(got!.v, want.v);
    h.check(`${label}: rank 0 gathers the full m and v bit for bit`, dm === null && dv === null, () => `m: ${dm}; v: ${dv}`);
  } else {
    h.check(`${label}: only rank 0 receives the moments`, got === null);
  }
}

function freshParams(n: number): Float32Array {
  return spreadF32(n, 31337).map((x) => x / 64);
}

await runChecks((h) => {
  const { dist } = h;
  const N = dist.size;
  const mode = process.env.MODE ?? "train";

  if (mode === "train") {
    for (const zero of [0, 1] as ZeroStage[]) {
      const kinds: Array<"dyadic" | "spread"> = N === 2 ? ["dyadic", "spread"] : ["dyadic"];
      for (const kind of kinds) {
        const label = `ZeRO-${zero} ${kind} gradients, P=${P}, N=${N}`;
        const params = freshParams(P);
        const refParams = params.slice();
        const opt = createDataParallelOptimizer(dist, new Float32Array(P), HYPER, zero);
        const ref = new AdamW(P, HYPER);
        trainAgainstReference(h, label, opt, params, ref, refParams, kind, 0, 3);
        checkMoments(h, label, opt, { m: ref.m, v: ref.v });
        if (zero === 1) {
          const share = Math.ceil(P / N);
          h.check(`${label}: this rank holds moments for its shard only`, opt.momentBytes === 8 * Math.max(0, Math.min(P, (dist.rank + 1) * share) - dist.rank * share), () => `${opt.momentBytes} bytes`);
          if (kind === "dyadic" && process.env.STATE_OUT && dist.isRoot) save(process.env.STATE_OUT, { step: opt.step, params, m: ref.m, v: ref.v });
        } else {
          h.check(`${label}: ZeRO-0 holds the full moments`, opt.momentBytes === 8 * P);
        }
      }
    }
    // At most 2500 floats in flight (units of 1000: MAX_ELEMENTS_PER_CALL), the rest queued and
    // posted as earlier units complete — at times that differ from rank to rank — on a duplicated
    // communicator, with collectives on MPI_COMM_WORLD started between the readies.
    for (const zero of [0, 1] as ZeroStage[]) {
      const label = `ZeRO-${zero} queued (2500 floats in flight), own communicator, P=${P}, N=${N}`;
      const params = freshParams(P);
      const refParams = params.slice();
      const opt = createDataParallelOptimizer(dist.duplicate(), new Float32Array(P), HYPER, zero, { maxFloatsInFlight: 2500 });
      h.check(`${label}: the cap is set`, (opt.reducer as GradientReducer).maxFloatsInFlight === 2500);
      const ref = new AdamW(P, HYPER);
      let worldCalls = 0;
      const between = () => {
        const ranks = dist.allgatherF64(Float64Array.of(dist.rank));
        if (ranks.every((r, i) => r === i)) worldCalls++;
      };
      trainAgainstReference(h, label, opt, params, ref, refParams, "dyadic", 0, 3, between);
      h.check(`${label}: the world collectives between the readies returned the right values`, worldCalls > 0 && worldCalls % 3 === 0, () => `${worldCalls}`);
      checkMoments(h, label, opt, { m: ref.m, v: ref.v });
    }

    // ZeRO-1 reduced in shared memory (NodeSharedReducer: every rank of these tests is on this
    // machine): the shard sums are the float32 sums in rank order, as sumOverRanks makes them, so
    // even "spread" gradients give one process's parameters bit for bit. Tiny P included: with
    // P = 4 and N = 3 one rank owns nothing.
    h.check("the test's ranks share memory", dist.sharesMemory());
    for (const [n, kind] of [[P, "spread"], [P, "dyadic"], [4, "spread"]] as Array<[number, "dyadic" | "spread"]>) {
      const label = `ZeRO-1 in shared memory, ${kind} gradients, P=${n}, N=${N}`;
      const segments = dist.allocateSharedSegments(n);
      const params = freshParams(n);
      const refParams = params.slice();
      const opt = createDataParallelOptimizer(dist, segments.mine, HYPER, 1, {}, segments);
      h.check(`${label}: the reducer works in shared memory`, opt.reducer instanceof NodeSharedReducer);
      const ref = new AdamW(n, HYPER);
      trainAgainstReference(h, label, opt, params, ref, refParams, kind, 0, 2);
      // A barrier after each ready's progress: then every rank has readied each range by the next
      // call, which must sum it during the "backward pass" (all but the last readied range).
      const sharedReducer = opt.reducer as NodeSharedReducer;
      trainAgainstReference(h, label, opt, params, ref, refParams, kind, 2, 1, () => dist.barrier("every rank readied this range"));
      const readied = backwardSlices(n).length - 1;
      h.check(`${label}: ranges every rank readied are summed before waitAll`, sharedReducer.lastEarly >= readied - 1 && sharedReducer.lastEarly <= readied && sharedReducer.lastLate === readied - sharedReducer.lastEarly + 1 /* the range never readied */, () => `early ${sharedReducer.lastEarly}, late ${sharedReducer.lastLate}, readied ${readied}`);
      checkMoments(h, label, opt, { m: ref.m, v: ref.v });
      // Another rank's segment still holds its own gradients after the sum (the pages this rank
      // released from its mapping keep their data).
      const last = gradientsOf(kind, n, 3, dist.rank);
      const shard = opt as ShardedAdamW;
      let intact = true;
      for (let i = 0; i < n; i++) if ((i < shard.shardStart || i >= shard.shardEnd) && !Object.is(segments.mine[i], last[i])) intact = false;
      h.check(`${label}: outside its shard a rank's segment keeps its own gradients`, intact);
      segments.free();
    }
    h.expectThrow("shared segments are for ZeRO-1 only", () => createDataParallelOptimizer(dist, new Float32Array(4), HYPER, 0, {}, dist.allocateSharedSegments(4)), /shared segments and shared parameters are for ZeRO-1/);

    // More ranks than a tiny vector needs: with P = 4 and N = 3, shards are 2, 2 and 0 elements.
    const tiny = 4;
    const params = freshParams(tiny);
    const refParams = params.slice();
    const opt = createDataParallelOptimizer(dist, new Float32Array(tiny), HYPER, 1);
    const ref = new AdamW(tiny, HYPER);
    trainAgainstReference(h, `ZeRO-1 P=${tiny}, N=${N} (a rank may own nothing)`, opt, params, ref, refParams, "dyadic", 0, 2);
    checkMoments(h, `ZeRO-1 P=${tiny}`, opt, { m: ref.m, v: ref.v });

    for (const zero of [0, 1] as ZeroStage[]) {
      const unreduced = createDataParallelOptimizer(dist, new Float32Array(tiny), HYPER, zero);
      h.expectThrow(`ZeRO-${zero}: update before waitAll`, () => unreduced.update(new Float32Array(tiny), 1e-3), /not reduced yet: call reducer.waitAll\(\) first/);
      unreduced.reducer.waitAll();
      unreduced.update(new Float32Array(tiny), 1e-3);
      h.expectThrow(`ZeRO-${zero}: a second update on the same reduction`, () => unreduced.update(new Float32Array(tiny), 1e-3), /not reduced yet/);
    }

    // The reducer refuses ranges that overlap or fall outside, before posting anything.
    const reducer = new GradientReducer(dist, new Float32Array(100), null);
    reducer.ready(0, 10);
    h.expectThrow("ready: overlapping range", () => reducer.ready(5, 15), /range \[5, 15\) overlaps \[0, 10\), readied earlier this step/);
    h.expectThrow("ready: range outside", () => reducer.ready(90, 101), /range \[90, 101\) is empty or outside the 100 gradients/);
    reducer.waitAll();
    // Ranks posting the same sizes in different orders: MPI pairs the wrong ranges; waitAll says so.
    const order = dist.rank === 0 ? [[0, 50], [50, 100]] : [[50, 100], [0, 50]];
    for (const [a, b] of order) reducer.ready(a, b);
    h.expectThrow("waitAll: ranks that readied ranges in different orders", () => reducer.waitAll(), /the ranks posted different gradient ranges \(rank 1 differs from rank 0\)/);
    return;
  }

  // ---- MODE=resume ----
  const saved = dist.isRoot ? load(process.env.STATE_IN!) : null;
  const step0 = dist.broadcastJson(saved === null ? null : saved.step);
  for (const zero of [0, 1] as ZeroStage[]) {
    const label = `resume ZeRO-${zero} on ${N} ranks`;
    const params = new Float32Array(P);
    if (saved !== null) params.set(saved.params);
    dist.broadcast(params, 0, "parameters from rank 0");
    const opt = createDataParallelOptimizer(dist, new Float32Array(P), HYPER, zero);
    opt.loadMoments(saved === null ? null : { m: saved.m, v: saved.v }, step0);
    h.check(`${label}: step from rank 0`, opt.step === step0, () => `${opt.step} vs ${step0}`);
    // Gathering what was handed out gives the file's bits back (N → this run's M → full).
    const full = opt.gatherMoments();
    if (dist.isRoot) h.check(`${label}: handed-out moments gather back bit for bit`, firstDifference(full!.m, saved!.m) === null && firstDifference(full!.v, saved!.v) === null);
    // One process resumed from the same file: plain AdamW with the saved moments and step.
    const mine = load(process.env.STATE_IN!);
    const ref = new AdamW(P, HYPER);
    ref.m.set(mine.m);
    ref.v.set(mine.v);
    ref.step = mine.step;
    const refParams = mine.params.slice();
    trainAgainstReference(h, label, opt, params, ref, refParams, "dyadic", step0, 2);
    checkMoments(h, label, opt, { m: ref.m, v: ref.v });
    if (zero === 1 && process.env.STATE_OUT && dist.isRoot) save(process.env.STATE_OUT, { step: opt.step, params, m: ref.m, v: ref.v });
  }
});
