// The machine's FMA ceiling (src/perf/peak.ts): 12 independent vector-FMA chains per thread on
// every pool thread, at the matmul kernels' vector width.
//   bun bench/fma_peak.ts [--json] [--quick]
// Prints the median and the best of several samples for 1 thread and for all threads (up to 2).
import { loadavg } from "node:os";
import { parseArgs } from "node:util";
import { defaultThreadCount } from "../src/ffi.ts";
import { measureFmaPeak } from "../src/perf/peak.ts";

const { values } = parseArgs({ options: { json: { type: "boolean", default: false }, quick: { type: "boolean", default: false } } });
const samples = values.quick ? 3 : 7;
const threadCounts = [...new Set([1, Math.min(2, defaultThreadCount())])];
const results = threadCounts.map((threads) => measureFmaPeak(threads, { samples, ms: 150 }));
for (const r of results) {
  if (values.json) {
    console.log(JSON.stringify({ bench: "fma_peak", threads: r.threads, lanes: r.lanes, peak_gflops: r.gflops, best_gflops: r.best, samples: r.samples, load_avg: loadavg()[0] }));
  } else {
    console.log(`FMA peak, ${r.lanes}-lane vectors, ${r.threads} thread${r.threads === 1 ? "" : "s"}: median ${r.gflops.toFixed(1)} GFLOP/s, best ${r.best.toFixed(1)} (${samples} samples of 150 ms)`);
  }
}
if (!values.json) {
  if (results.length === 2) console.log(`scaling 1 → ${results[1].threads} threads: ×${(results[1].gflops / results[0].gflops).toFixed(2)}`);
  console.log(`load average ${loadavg()[0].toFixed(2)} (figures drop when other processes share the cores)`);
}
