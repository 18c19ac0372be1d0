// Shared by the benchmarks: the FMA ceiling as the median of several short measurements, so a
// burst of load from other processes on this shared machine moves it less.
import { fmaPeakGflops } from "../src/ffi.ts";

export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

export function measurePeak(threads: number, width: number, runs = 5, msPerRun = 150): number {
  const samples: number[] = [];
  for (let i = 0; i < runs; i++) samples.push(fmaPeakGflops(threads, msPerRun, width));
  return median(samples);
}
