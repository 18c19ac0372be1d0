// Microbenchmark of the layer kernels at GPT-2 d12 sizes, B=4 T=64 (N = B·T = 256 rows, C = 768,
// Vp = 50304): median ms per call, and GB/s for the memory-bound AdamW (7 float32 streams over
// 124M parameters: read p, g, m, v; write p, m, v) and the grad norm.
//   bun bench/layers.ts [--quick]
import { parseBenchArgs } from "./args.ts";
import {
  adamwUpdate, geluBackward, geluForward, gradNormSquared, layernormBackward, layernormForward, residualForward,
  softmaxCrossEntropyBackward, softmaxCrossEntropyForward, threadCount,
} from "../src/ffi.ts";
import { namedConfig } from "../src/model/config.ts";
import { parameterCount } from "../src/model/weights.ts";

const { values } = parseBenchArgs({ options: { quick: { type: "boolean", default: false } } });
const quick = values.quick ?? false;
const config = namedConfig("d12");
const [B, T, C, V, Vp] = [4, 64, config.C, config.V, config.Vp];
const N = B * T;

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

function time(runs: number, fn: () => void): number {
  fn(); // warm-up: page faults, pool wake-up
  const ms: number[] = [];
  for (let i = 0; i < runs; i++) {
    const start = performance.now();
    fn();
    ms.push(performance.now() - start);
  }
  return median(ms);
}

function fill(n: number, scale: number): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = (((i * 2654435761) >>> 0) / 4294967296 - 0.5) * scale;
  return a;
}

const rows: Array<[string, number, string]> = [];
const small = quick ? 5 : 30;

{
  const inp = fill(N * C, 2), w = fill(C, 1), b = fill(C, 1), out = new Float32Array(N * C), mean = new Float32Array(N), rstd = new Float32Array(N);
  rows.push(["layernorm forward (256×768)", time(small, () => layernormForward(out, mean, rstd, inp, w, b, N, C)), ""]);
  const dinp = new Float32Array(N * C), dw = new Float32Array(C), db = new Float32Array(C);
  rows.push(["layernorm backward (256×768)", time(small, () => layernormBackward(dinp, dw, db, out, inp, w, mean, rstd, N, C)), ""]);
  rows.push(["residual forward (256×768)", time(small, () => residualForward(dinp, inp, out, N * C)), ""]);
}
{
  const n = N * 4 * C, inp = fill(n, 6), out = new Float32Array(n), dinp = new Float32Array(n);
  rows.push(["gelu forward (256×3072)", time(small, () => geluForward(out, inp, n)), ""]);
  rows.push(["gelu backward (256×3072)", time(small, () => geluBackward(dinp, inp, out, n)), ""]);
}
{
  const logits = fill(N * Vp, 10), probs = new Float32Array(N * Vp), losses = new Float32Array(N), targets = new Int32Array(N).map((_, i) => (i * 7919) % V);
  rows.push(["softmax-xent forward (256×50304)", time(small, () => softmaxCrossEntropyForward(probs, losses, logits, targets, N, V, Vp)), ""]);
  const fresh = probs.slice();
  rows.push(["softmax-xent backward, in place (256×50304)", time(small, () => { probs.set(fresh); softmaxCrossEntropyBackward(probs, probs, targets, 1 / N, N, V, Vp); }), "incl. a 51 MB copy"]);
}
{
  const n = parameterCount(config);
  const p = fill(n, 0.1), g = fill(n, 0.01), m = new Float32Array(n), v = new Float32Array(n);
  let step = 0;
  const runs = quick ? 3 : 10;
  const adamMs = time(runs, () => adamwUpdate(p, g, m, v, 6e-4, 0.9, 0.95, 1e-8, 0.1, ++step, 1));
  rows.push([`adamw (${(n / 1e6).toFixed(1)}M params)`, adamMs, `${((7 * 4 * n) / (adamMs / 1e3) / 1e9).toFixed(1)} GB/s`]);
  const normMs = time(runs, () => void gradNormSquared(g));
  rows.push([`grad norm² (${(n / 1e6).toFixed(1)}M)`, normMs, `${((4 * n) / (normMs / 1e3) / 1e9).toFixed(1)} GB/s`]);
}

console.log(`layer kernels, d12 B=${B} T=${T}, ${threadCount()} threads, median ms${quick ? " (quick)" : ""}`);
for (const [name, ms, extra] of rows) console.log(`  ${name.padEnd(46)} ${ms.toFixed(3).padStart(9)} ms  ${extra}`);
