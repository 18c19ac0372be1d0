// The machine's compute ceilings (src/perf/peak.ts): 12 independent vector-FMA chains per thread
// on every pool thread at the matmul kernels' vector width, and — where the CPU and the build have
// AVX512_BF16 — the same with vdpbf16ps (the ceiling of --matmul-precision bf16).
//   bun bench/fma_peak.ts [--json] [--quick]
// Prints the median and the best of several samples for 1 thread and for all threads (up to 2).
import { loadavg } from "node:os";
import { parseBenchArgs } from "./args.ts";
import { bf16Unavailable, defaultThreadCount } from "../src/ffi.ts";
import { measureBf16Peak, measureFmaPeak, type PeakMeasurement } from "../src/perf/peak.ts";

const { values } = parseBenchArgs({ options: { json: { type: "boolean", default: false }, quick: { type: "boolean", default: false } } });
const samples = values.quick ? 3 : 7;
const threadCounts = [...new Set([1, Math.min(2, defaultThreadCount())])];
const rows: Array<{ kind: string; peak: PeakMeasurement }> = [];
for (const threads of threadCounts) rows.push({ kind: "fp32 FMA", peak: measureFmaPeak(threads, { samples, ms: 150 }) });
const bf16Problem = bf16Unavailable();
if (bf16Problem === null) {
  for (const threads of threadCounts) rows.push({ kind: "bf16 vdpbf16ps", peak: measureBf16Peak(threads, { samples, ms: 150 })! });
}
for (const { kind, peak: r } of rows) {
  if (values.json) {
    console.log(JSON.stringify({ bench: "peak", kind, threads: r.threads, lanes: r.lanes, peak_gflops: r.gflops, best_gflops: r.best, samples: r.samples, load_avg: loadavg()[0] }));
  } else {
    console.log(`${kind} peak, ${r.lanes}-lane vectors, ${r.threads} thread${r.threads === 1 ? "" : "s"}: median ${r.gflops.toFixed(1)} GFLOP/s, best ${r.best.toFixed(1)} (${samples} samples of 150 ms)`);
  }
}
if (!values.json) {
  const fp32 = rows.filter((r) => r.kind === "fp32 FMA"), bf16 = rows.filter((r) => r.kind !== "fp32 FMA");
  if (fp32.length === 2) console.log(`scaling 1 → ${fp32[1].peak.threads} threads: ×${(fp32[1].peak.gflops / fp32[0].peak.gflops).toFixed(2)}`);
  if (bf16.length > 0) console.log(`bf16 / fp32 ceiling: ×${(bf16[bf16.length - 1].peak.gflops / fp32[fp32.length - 1].peak.gflops).toFixed(2)} (${bf16[bf16.length - 1].peak.threads} threads)`);
  else console.log(`bf16: not measured (${bf16Problem})`);
  console.log(`load average ${loadavg()[0].toFixed(2)} (figures drop when other processes share the cores)`);
}
