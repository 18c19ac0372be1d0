// The machine's FMA ceiling: 12 independent vector-FMA chains per thread on every pool thread.
//   bun bench/fma_peak.ts [--json] [--quick]
// Prints GFLOP/s for 1 and 2 threads, for 8-lane (AVX2) vectors and, when the kernels were built
// with AVX-512, 16-lane vectors too (the width the matmul kernels then use).
import { parseArgs } from "node:util";
import { matmulLanes } from "../src/ffi.ts";
import { measurePeak } from "./peak_measure.ts";

const { values } = parseArgs({ options: { json: { type: "boolean", default: false }, quick: { type: "boolean", default: false } } });
const runs = values.quick ? 3 : 7;
const widths = matmulLanes() === 16 ? [8, 16] : [8];
for (const width of widths) {
  const one = measurePeak(1, width, runs);
  const two = measurePeak(2, width, runs);
  if (values.json) {
    console.log(JSON.stringify({ peak_gflops: one, threads: 1, width }));
    console.log(JSON.stringify({ peak_gflops: two, threads: 2, width }));
  } else {
    console.log(`FMA peak, ${width}-lane vectors: 1 thread ${one.toFixed(1)} GFLOP/s, 2 threads ${two.toFixed(1)} GFLOP/s (×${(two / one).toFixed(2)}), median of ${runs}`);
  }
}
if (!values.json) console.log(`matmul kernels use ${matmulLanes()}-lane vectors`);
