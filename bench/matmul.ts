// Matmul throughput on every GPT-2 124M linear-layer shape, in the three layouts of a linear
// layer, against the ceiling of the precision measured next to each shape.
//   bun bench/matmul.ts                      full table: BT=256 and 1024 on 2 threads, 1 thread at BT=1024
//   bun bench/matmul.ts --quick              short version for CI (BT=256, 2 threads, few reps)
//   bun bench/matmul.ts --precision bf16     the same with bf16 operands, against the vdpbf16ps ceiling
//   bun bench/matmul.ts --json               one JSON object per line
// Times are medians of several calls after a warm-up call; GFLOP/s = 2·BT·C·OC / time. The
// fastest call is reported too: on a machine shared with other processes, load only ever slows a
// call down, so "best" shows what the kernel does when it has the cores. The ceiling (fp32: FMA;
// bf16: vdpbf16ps, src/perf/peak.ts) is sampled just before and just after each shape, so a burst
// of load moves both; % of peak = median GFLOP/s over the median of those samples, best % = the
// fastest call over the highest sample.
import { loadavg } from "node:os";
import { parseBenchArgs } from "./args.ts";
import { bf16Unavailable, defaultThreadCount, MATMUL_PRECISIONS, type MatmulPrecision, matmulBackwardInput, matmulBackwardWeight, matmulForward, setMatmulPrecision, setThreads } from "../src/ffi.ts";
import { median, measurePeakFor, pooledPeak } from "../src/perf/peak.ts";

const { values } = parseBenchArgs({ options: { json: { type: "boolean", default: false }, quick: { type: "boolean", default: false }, precision: { type: "string", default: "fp32" } } });
const quick = values.quick ?? false;
const json = values.json ?? false;
const precision = values.precision as MatmulPrecision;
if (!MATMUL_PRECISIONS.includes(precision)) {
  console.error(`bench/matmul.ts: --precision must be one of ${MATMUL_PRECISIONS.join(", ")}, got ${values.precision}`);
  process.exit(2);
}
if (precision === "bf16" && bf16Unavailable() !== null) {
  console.error(`bench/matmul.ts: --precision bf16: ${bf16Unavailable()}`);
  process.exit(2);
}

type Layout = "fwd" | "dinp" | "dweight";
const LAYOUTS: Layout[] = ["fwd", "dinp", "dweight"];
// (C, OC) of GPT-2 124M's linear layers: qkv, attention projection, MLP up, MLP down, lm_head.
const SHAPES: Array<[number, number]> = [[768, 2304], [768, 768], [768, 3072], [3072, 768], [768, 50304]];
const THREADS = Math.min(2, defaultThreadCount());

function filled(n: number, seed: number): Float32Array {
  const a = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    a[i] = s / 2 ** 32 - 0.5;
  }
  return a;
}

interface Row {
  bench: "matmul"; precision: MatmulPrecision; layout: Layout; BT: number; C: number; OC: number; threads: number;
  ms: number; gflops: number; pct_peak: number; ms_min: number; pct_peak_best: number; peak_gflops: number; peak_best: number;
}

function timeLayout(layout: Layout, BT: number, C: number, OC: number, reps: number): { median: number; min: number } {
  const x = filled(BT * C, 1), w = filled(OC * C, 2), y = filled(BT * OC, 3), b = filled(OC, 4);
  const call = layout === "fwd" ? () => matmulForward(y, x, w, b, BT, C, OC)
    : layout === "dinp" ? () => matmulBackwardInput(x, y, w, BT, C, OC)
    : () => matmulBackwardWeight(w, b, y, x, BT, C, OC);
  call();
  const times: number[] = [];
  for (let i = 0; i < reps; i++) {
    const start = performance.now();
    call();
    times.push(performance.now() - start);
  }
  return { median: median(times), min: Math.min(...times) };
}

function repsFor(BT: number, C: number, OC: number): number {
  const gflop = (2 * BT * C * OC) / 1e9;
  if (quick) return 3;
  return gflop > 20 ? 5 : 9;
}

const peakSamples = quick ? 2 : 3;
const rows: Row[] = [];

function measure(threads: number, BTs: number[], shapes: Array<[number, number]>, layouts: Layout[]): void {
  setThreads(threads);
  for (const BT of BTs) {
    for (const [C, OC] of shapes) {
      for (const layout of layouts) {
        const before = measurePeakFor(precision, threads, { samples: peakSamples, ms: 60 });
        setMatmulPrecision(precision);
        const { median: ms, min } = timeLayout(layout, BT, C, OC, repsFor(BT, C, OC));
        setMatmulPrecision("fp32");
        const peak = pooledPeak(before, measurePeakFor(precision, threads, { samples: peakSamples, ms: 60 }));
        const flop = 2 * BT * C * OC;
        const gflops = flop / ms / 1e6;
        rows.push({
          bench: "matmul", precision, layout, BT, C, OC, threads, ms, gflops, pct_peak: (100 * gflops) / peak.gflops,
          ms_min: min, pct_peak_best: (100 * flop / min / 1e6) / peak.best, peak_gflops: peak.gflops, peak_best: peak.best,
        });
      }
    }
  }
}

measure(THREADS, quick ? [256] : [256, 1024], SHAPES, LAYOUTS);
// Decode step of generation: one row against the whole weight (memory-bound; streams W once, and
// always in fp32: the few-row path does not pack, so it never rounds).
if (precision === "fp32") measure(THREADS, [1], quick ? [[768, 2304]] : [[768, 2304], [768, 50304]], ["fwd"]);
if (!quick && THREADS > 1) measure(1, [1024], SHAPES, LAYOUTS);
setThreads(defaultThreadCount());

if (json) {
  for (const r of rows) console.log(JSON.stringify(r));
} else {
  const ceiling = precision === "fp32" ? "fp32 FMA" : "bf16 vdpbf16ps";
  console.log(`matmul, ${precision} operands, against the ${ceiling} ceiling sampled before and after each shape; load average ${loadavg()[0].toFixed(2)}`);
  console.log("medians (ms, GFLOP/s, % of the median ceiling); best = fastest call vs highest ceiling sample");
  console.log("layout   BT     C     OC  thr       ms   GFLOP/s  % peak   best ms  best %   ceiling");
  for (const r of rows) {
    console.log(`${r.layout.padEnd(7)} ${String(r.BT).padStart(4)} ${String(r.C).padStart(5)} ${String(r.OC).padStart(6)} ${String(r.threads).padStart(4)} ${r.ms.toFixed(3).padStart(8)} ${r.gflops.toFixed(1).padStart(9)} ${r.pct_peak.toFixed(1).padStart(6)}% ${r.ms_min.toFixed(3).padStart(9)} ${r.pct_peak_best.toFixed(1).padStart(6)}% ${r.peak_gflops.toFixed(0).padStart(7)}`);
  }
  if (rows.some((r) => r.threads === 1) && THREADS > 1) {
    console.log(`\n1→${THREADS} thread speedup at BT=1024:`);
    for (const r1 of rows.filter((r) => r.threads === 1)) {
      const r2 = rows.find((r) => r.threads === THREADS && r.layout === r1.layout && r.BT === r1.BT && r.C === r1.C && r.OC === r1.OC)!;
      console.log(`  ${r1.layout.padEnd(7)} C=${r1.C} OC=${r1.OC}: ×${(r1.ms / r2.ms).toFixed(2)} (medians), ×${(r1.ms_min / r2.ms_min).toFixed(2)} (best calls)`);
    }
  }
}
