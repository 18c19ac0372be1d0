// The machine's compute ceiling, measured — never assumed: the denominator of every MFU and
// "% of peak" figure (trainer, benchmarks). The CPU changes between machines, so a constant from
// one machine would be wrong on the next; only --peak-gflops (a user's own figure) may replace
// the measurement.
//
// One sample: every pool thread runs 12 independent FMA chains at the matmul kernels' vector width
// for `ms` milliseconds (kernels/peak.zig). Samples are taken several times; the median is the
// figure (a burst of load from other processes moves it less than it moves the mean) and the best
// is reported beside it.
import { bf16PeakGflops, fmaPeakGflops, type MatmulPrecision, vectorLanes } from "../ffi.ts";

export interface PeakMeasurement {
  /** median of the samples, GFLOP/s */
  gflops: number;
  /** the largest sample */
  best: number;
  samples: number[];
  threads: number;
  /** f32 lanes per vector (the width the matmul kernels use) */
  lanes: number;
  /** how it was obtained, for printing */
  source: string;
}

export function median(values: readonly number[]): number {
  if (values.length === 0) throw new Error("median of no values");
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

/** The fp32 FMA peak of `threads` threads: the median of `samples` runs of `ms` each. */
export function measureFmaPeak(threads: number, options: { samples?: number; ms?: number } = {}): PeakMeasurement {
  const samples = options.samples ?? 5;
  const ms = options.ms ?? 100;
  const lanes = vectorLanes();
  const values = Array.from({ length: samples }, () => fmaPeakGflops(threads, ms, lanes));
  return {
    gflops: median(values), best: Math.max(...values), samples: values, threads, lanes,
    source: `measured: median of ${samples} × ${ms} ms of ${lanes}-lane FMA on ${threads} thread${threads === 1 ? "" : "s"}`,
  };
}

/**
 * The bf16 dot-product peak (vdpbf16ps zmm, 64 FLOP each) of `threads` threads, the ceiling of
 * --matmul-precision bf16; null where the CPU or the build lacks AVX512_BF16.
 */
export function measureBf16Peak(threads: number, options: { samples?: number; ms?: number } = {}): PeakMeasurement | null {
  const samples = options.samples ?? 5;
  const ms = options.ms ?? 100;
  const values: number[] = [];
  for (let i = 0; i < samples; i++) {
    const gflops = bf16PeakGflops(threads, ms);
    if (gflops === null) return null;
    values.push(gflops);
  }
  return {
    gflops: median(values), best: Math.max(...values), samples: values, threads, lanes: vectorLanes(),
    source: `measured: median of ${samples} × ${ms} ms of vdpbf16ps on ${threads} thread${threads === 1 ? "" : "s"}`,
  };
}

/** The ceiling of matmuls at `precision` (fp32: FMA; bf16: vdpbf16ps). */
export function measurePeakFor(precision: MatmulPrecision, threads: number, options: { samples?: number; ms?: number } = {}): PeakMeasurement {
  if (precision === "fp32") return measureFmaPeak(threads, options);
  const peak = measureBf16Peak(threads, options);
  if (peak === null) throw new Error("the bf16 peak cannot be measured: this CPU or build lacks AVX512_BF16");
  return peak;
}

/** Pools two measurements of the same ceiling (before and after a benchmark): median of all samples. */
export function pooledPeak(before: PeakMeasurement, after: PeakMeasurement): PeakMeasurement {
  const samples = [...before.samples, ...after.samples];
  return { ...before, samples, gflops: median(samples), best: Math.max(...samples), source: `${before.source}, before and after (${samples.length} samples)` };
}

/** A peak the user gave (--peak-gflops), in the same shape. */
export function givenPeak(gflops: number, threads: number): PeakMeasurement {
  return { gflops, best: gflops, samples: [gflops], threads, lanes: vectorLanes(), source: "--peak-gflops" };
}

/** Model FLOPs utilisation in percent: achieved FLOP/s over the peak. */
export function mfuPercent(flops: number, seconds: number, peakGflops: number): number {
  return (100 * flops) / seconds / (peakGflops * 1e9);
}
