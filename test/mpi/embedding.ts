// The wte-overlap scheme (src/dist/embedding_grads.ts) under real Open MPI, ZeRO-0 and ZeRO-1:
// wte and wpe readied first (before anything else, as right after the lm_head backward), the
// encoder's rows all-gathered instead of scattered locally, added after the reduction. Reference:
// one process's encoder backward kernel (src/ffi.ts encoderBackward) on the global batch — all
// ranks' rows, B·N of them — applied to the reduced dense gradients. The dense gradients are dyadic
// (exact sums in any order, see harness.ts), so the comparison is bit for bit.
import { EmbeddingGradientExchange } from "../../src/dist/embedding_grads.ts";
import { createDataParallelOptimizer, type ZeroStage } from "../../src/dist/zero.ts";
import { encoderBackward } from "../../src/ffi.ts";
import { rng } from "../helpers/random.ts";
import { dyadicF32, firstDifference, runChecks, spreadF32 } from "./harness.ts";

const C = 24, Vp = 50, maxT = 8, B = 2, T = 5;
const WTE = 0, WPE = Vp * C;
const P = Vp * C + maxT * C + 101; // and some other parameters after them

function tokensOf(r: number): Int32Array {
  const next = rng(555 + r);
  // Few distinct ids, so rows repeat within a rank and across ranks.
  return Int32Array.from({ length: B * T }, () => Math.floor(next() * 7) * 7);
}

await runChecks((h) => {
  const { dist } = h;
  const N = dist.size;
  for (const zero of [0, 1] as ZeroStage[]) {
    const label = `ZeRO-${zero}, N=${N}`;
    const grads = dyadicF32(P, 4242 + dist.rank);
    const opt = createDataParallelOptimizer(dist, grads, {}, zero);
    const owned = zero === 0 ? { start: 0, end: P } : { start: Math.min(P, dist.rank * Math.ceil(P / N)), end: Math.min(P, (dist.rank + 1) * Math.ceil(P / N)) };
    const exchange = new EmbeddingGradientExchange(dist, { C, Vp, maxT, wteOffset: WTE, wpeOffset: WPE }, owned, B * T);

    // Last micro-batch: wte and wpe first, the transformer's slices later, the encoder's rows last.
    opt.reducer.ready(WTE, WPE + maxT * C);
    opt.reducer.ready(WPE + maxT * C, P);
    exchange.start(tokensOf(dist.rank), spreadF32(B * T * C, 777 + dist.rank), B, T);
    exchange.progress();
    opt.reducer.waitAll();
    const times = exchange.finish(grads);
    h.check(`${label}: the exchange moved N·B·T·C floats`, times.floats === N * B * T * C && times.operations === 2);

    // One process: the exact dense sum, then the encoder backward on the global batch.
    const want = new Float32Array(P);
    for (let r = 0; r < N; r++) {
      const g = dyadicF32(P, 4242 + r);
      for (let i = 0; i < P; i++) want[i] += g[i];
    }
    const ids = new Int32Array(N * B * T);
    const dout = new Float32Array(N * B * T * C);
    for (let r = 0; r < N; r++) {
      ids.set(tokensOf(r), r * B * T);
      dout.set(spreadF32(B * T * C, 777 + r), r * B * T * C);
    }
    encoderBackward(want.subarray(WTE, WTE + Vp * C), want.subarray(WPE, WPE + maxT * C), dout, ids, N * B, T, C, Vp, maxT);
    const diff = firstDifference(grads.subarray(owned.start, owned.end), want.subarray(owned.start, owned.end));
    h.check(`${label}: reduced gradients + exchanged rows = the encoder kernel on the global batch, bit for bit, in [${owned.start}, ${owned.end})`, diff === null, () => diff!);
  }
  h.expectThrow("ids outside the vocabulary", () => new EmbeddingGradientExchange(dist, { C, Vp, maxT, wteOffset: WTE, wpeOffset: WPE }, { start: 0, end: P }, B * T).start(new Int32Array(B * T).fill(Vp), new Float32Array(B * T * C), B, T), /inputs\[0\] is 50, outside \[0, Vp = 50\)/);
});
