// Microbenchmark of causal attention forward and backward at GPT-2 d12 head sizes (C=768, NH=12).
//   bun bench/attention.ts [--quick] [--threads N]
// FLOPs counted: forward 4·B·NH·T²·hs/2 (q·k and p·v over the causal half); backward 2.5× that
// (S, dP, dV, dQ, dK: five products of the same size). The median and the best of the timed
// repeats are printed (the machine is shared: the best is the steadier figure for comparisons).
import { parseBenchArgs } from "./args.ts";
import { attentionBackward, attentionForward, setThreads, threadCount } from "../src/ffi.ts";

const { values } = parseBenchArgs({ options: { quick: { type: "boolean", default: false }, threads: { type: "string" } } });
if (values.threads !== undefined) setThreads(Number(values.threads));
const quick = values.quick ?? false;

function fill(n: number, seed: number): Float32Array {
  const a = new Float32Array(n);
  let x = seed >>> 0;
  for (let i = 0; i < n; i++) {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    a[i] = x / 2 ** 31 - 1;
  }
  return a;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

/** Median and minimum of `repeats` timed calls, after one warm-up call. */
function time(fn: () => void, repeats: number): { median: number; min: number } {
  fn();
  const ms: number[] = [];
  for (let i = 0; i < repeats; i++) {
    const start = performance.now();
    fn();
    ms.push(performance.now() - start);
  }
  return { median: median(ms), min: Math.min(...ms) };
}

console.log(`attention, ${threadCount()} threads${quick ? " (quick)" : ""}`);
for (const [B, T, C, NH] of [[4, 64, 768, 12], [1, 1024, 768, 12]]) {
  const hs = C / NH;
  const qkv = fill(B * T * 3 * C, 1), dout = fill(B * T * C, 2);
  const out = new Float32Array(B * T * C), lse = new Float32Array(B * NH * T), dqkv = new Float32Array(B * T * 3 * C);
  const forwardFlop = (4 * B * NH * T * T * hs) / 2;
  const repeats = quick ? 3 : T >= 1024 ? 10 : 50;
  const forwardMs = time(() => attentionForward(out, lse, qkv, B, T, C, NH), repeats);
  const backwardMs = time(() => attentionBackward(dqkv, dout, qkv, out, lse, B, T, C, NH), repeats);
  const report = (flop: number, t: { median: number; min: number }) =>
    `${t.median.toFixed(3)} ms (${(flop / t.median / 1e6).toFixed(1)} GFLOP/s; best ${t.min.toFixed(3)} ms, ${(flop / t.min / 1e6).toFixed(1)} GFLOP/s)`;
  console.log(`B=${B} T=${T} C=${C} NH=${NH}: forward ${report(forwardFlop, forwardMs)}, backward ${report(2.5 * forwardFlop, backwardMs)}`);
}
