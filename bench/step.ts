// One full training step (forward + backward + AdamW) of GPT-2, timed, profiled by kernel type, and
// compared with PyTorch running the same step from the same llm.c checkpoint and tokens.
//   bun run bench:step [--quick] [--json] [--configs d12,d6] [--warmup 2] [--steps 5] [--threads N] [--no-torch]
// Each config runs in its own child process, so its peak RSS (VmHWM) is its own; PyTorch runs after
// it (scripts/torch_step.py, torch.set_num_threads(threads)), never at the same time.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { threadCount } from "../src/ffi.ts";
import { writeLlmcCheckpoint } from "../src/io/llmc.ts";
import { namedConfig } from "../src/model/config.ts";
import { trainingStepFlops } from "../src/model/flops.ts";
import { GPT2 } from "../src/model/gpt2.ts";
import { AdamW } from "../src/optim/adamw.ts";
import { measureFmaPeak, median, mfuPercent, type PeakMeasurement } from "../src/perf/peak.ts";

const ROOT = resolve(import.meta.dir, "..");
const SHAPES: Record<string, { B: number; T: number }> = { d12: { B: 4, T: 64 }, d6: { B: 8, T: 128 } };

const { values } = parseArgs({
  options: {
    quick: { type: "boolean", default: false },
    json: { type: "boolean", default: false },
    configs: { type: "string" },
    warmup: { type: "string" },
    steps: { type: "string" },
    "no-torch": { type: "boolean", default: false },
    threads: { type: "string" },
    child: { type: "string" },
    dir: { type: "string" },
  },
});
const quick = values.quick ?? false;
const warmup = Number(values.warmup ?? (quick ? 1 : 2));
const steps = Number(values.steps ?? (quick ? 3 : 5));

export interface StepResult {
  config: string; B: number; T: number; threads: number;
  ms_per_step: number; tokens_per_s: number; gflops: number; mfu_pct: number; peak_rss_mb: number;
  split_ms: Record<string, number>; torch_ms_per_step: number | null;
  forward_ms: number; backward_ms: number; adamw_ms: number; adamw_gb_s: number; peak_gflops: number; peak_source: string;
  params: number; init_ms: number; loss_first: number; torch_loss_first: number | null; times_ms: number[];
  /** 1-minute load average at the end of the run: other processes on the 2 cores distort every figure */
  load_avg: number;
}

function peakRssMb(): number {
  const status = readFileSync("/proc/self/status", "utf8");
  const match = /VmHWM:\s+(\d+) kB/.exec(status);
  return match ? Number(match[1]) / 1024 : NaN;
}

/** The peak before and after the steps, pooled: the median of all samples is the MFU denominator. */
function pooledPeak(before: PeakMeasurement, after: PeakMeasurement): PeakMeasurement {
  const samples = [...before.samples, ...after.samples];
  return { ...before, samples, gflops: median(samples), best: Math.max(...samples), source: `${before.source}, before and after the steps (${samples.length} samples)` };
}

function runChild(name: string, dir: string): StepResult {
  const config = namedConfig(name);
  const { B, T } = SHAPES[name] ?? { B: 4, T: 64 };
  const threads = threadCount();
  const peakBefore = measureFmaPeak(threads);

  const t0 = performance.now();
  const model = GPT2.init(config, 1337);
  const initMs = performance.now() - t0;
  const tokens = new Int32Array(B * T + 1);
  for (let i = 0; i < tokens.length; i++) tokens[i] = (i * 7919 + 13) % config.V;
  const inputs = tokens.subarray(0, B * T), targets = tokens.subarray(1);
  writeFileSync(join(dir, `${name}.tokens`), tokens);
  writeLlmcCheckpoint(join(dir, `${name}.bin`), model.weights);
  const opt = new AdamW(model.params.length, { lr: 1e-4 });
  const times: number[] = [], forwards: number[] = [], backwards: number[] = [], adamws: number[] = [];
  const profile = new Map<string, number>();
  let lossFirst = NaN;
  for (let step = 0; step < warmup + steps; step++) {
    const timed = step >= warmup;
    model.profile = timed ? profile : null;
    const start = performance.now();
    model.zeroGrad();
    const afterZero = performance.now();
    const loss = model.forward(inputs, targets, B, T);
    const afterForward = performance.now();
    model.backward();
    const afterBackward = performance.now();
    opt.update(model.params, model.grads, 1e-4);
    const end = performance.now();
    if (step === 0) lossFirst = loss;
    if (!timed) continue;
    times.push(end - start);
    forwards.push(afterForward - afterZero);
    backwards.push(afterBackward - afterForward);
    adamws.push(end - afterBackward);
    profile.set("zero_grad", (profile.get("zero_grad") ?? 0) + afterZero - start);
    profile.set("adamw", (profile.get("adamw") ?? 0) + end - afterBackward);
  }
  const peak = pooledPeak(peakBefore, measureFmaPeak(threads));
  const ms = median(times);
  const split: Record<string, number> = {};
  let accounted = 0;
  for (const [key, total] of [...profile.entries()].sort((a, b) => b[1] - a[1])) {
    split[key] = total / steps;
    accounted += total / steps;
  }
  split.other = times.reduce((a, b) => a + b, 0) / steps - accounted;
  const flops = trainingStepFlops(config, T, B * T);
  const gflops = flops / (ms * 1e6);
  const n = model.params.length;
  return {
    config: name, B, T, threads, ms_per_step: ms, tokens_per_s: (B * T) / (ms / 1000), gflops,
    mfu_pct: mfuPercent(flops, ms / 1000, peak.gflops), peak_rss_mb: peakRssMb(), split_ms: split, torch_ms_per_step: null,
    forward_ms: median(forwards), backward_ms: median(backwards), adamw_ms: median(adamws),
    adamw_gb_s: (28 * n) / (median(adamws) * 1e6), // params r+w, m r+w, v r+w, grads r: 7 floats
    peak_gflops: peak.gflops, peak_source: peak.source, params: n, init_ms: initMs,
    loss_first: lossFirst, torch_loss_first: null, times_ms: times, load_avg: loadavg()[0],
  };
}

function torchAvailable(): boolean {
  const proc = Bun.spawnSync(["/usr/bin/python3", "-c", "import torch, numpy"], { stdout: "ignore", stderr: "ignore" });
  return proc.exitCode === 0;
}

function runTorch(name: string, dir: string, threads: number): { ms: number; loss: number } | null {
  const { B, T } = SHAPES[name] ?? { B: 4, T: 64 };
  const proc = Bun.spawnSync(["/usr/bin/python3", join(ROOT, "scripts", "torch_step.py"), join(dir, `${name}.bin`), join(dir, `${name}.tokens`), String(B), String(T),
    "--threads", String(threads), "--warmup", String(warmup), "--steps", String(steps)], { stdout: "pipe", stderr: "inherit" });
  if (proc.exitCode !== 0) return null;
  const line = proc.stdout.toString().trim().split("\n").at(-1) ?? "";
  const result = JSON.parse(line);
  return { ms: result.ms_per_step, loss: result.losses[0] };
}

function printHuman(r: StepResult): void {
  const f = (x: number, d = 0) => x.toFixed(d);
  console.log(`\n${r.config} (${(r.params / 1e6).toFixed(1)}M params) B=${r.B} T=${r.T}, ${r.threads} threads, median of ${steps} steps after ${warmup} warm-up`);
  console.log(`  ${f(r.ms_per_step)} ms/step (forward ${f(r.forward_ms)}, backward ${f(r.backward_ms)}), ${f(r.tokens_per_s)} tokens/s, ${f(r.gflops, 1)} GFLOP/s = ${f(r.mfu_pct, 1)}% of FMA peak ${f(r.peak_gflops, 1)} (${r.peak_source})`);
  console.log(`  load average ${r.load_avg.toFixed(2)} (2 cores); step times ${r.times_ms.map((t) => t.toFixed(0)).join(", ")} ms`);
  console.log(`  peak RSS ${f(r.peak_rss_mb)} MB; AdamW ${f(r.adamw_ms, 1)} ms (median) = ${f(r.adamw_gb_s, 1)} GB/s; init ${f(r.init_ms)} ms`);
  console.log(`  split (mean ms/step): ${Object.entries(r.split_ms).map(([k, v]) => `${k} ${v.toFixed(1)}`).join(", ")}`);
  if (r.torch_ms_per_step !== null) {
    console.log(`  PyTorch ${torchVersion()} same step: ${f(r.torch_ms_per_step)} ms/step → llm.ts is ${(r.torch_ms_per_step / r.ms_per_step).toFixed(2)}× PyTorch's speed; first loss ${r.loss_first.toFixed(6)} vs PyTorch ${r.torch_loss_first?.toFixed(6)}`);
  } else {
    console.log("  PyTorch: not run");
  }
}

let cachedTorchVersion = "";
function torchVersion(): string {
  if (cachedTorchVersion === "") {
    const proc = Bun.spawnSync(["/usr/bin/python3", "-c", "import torch; print(torch.__version__)"], { stdout: "pipe", stderr: "ignore" });
    cachedTorchVersion = proc.stdout.toString().trim();
  }
  return cachedTorchVersion;
}

if (values.child !== undefined) {
  const result = runChild(values.child, values.dir ?? tmpdir());
  console.log(`RESULT ${JSON.stringify(result)}`);
} else {
  const configs = (values.configs ?? (quick ? "d6" : "d12,d6")).split(",");
  const withTorch = !(values["no-torch"] ?? false) && torchAvailable();
  const dir = mkdtempSync(join(tmpdir(), "llmts-bench-step-"));
  let failed = false;
  try {
    for (const name of configs) {
      namedConfig(name);
      const args = ["bun", join(ROOT, "bench", "step.ts"), "--child", name, "--dir", dir, "--warmup", String(warmup), "--steps", String(steps)];
      const env = values.threads === undefined ? process.env : { ...process.env, LLMTS_THREADS: values.threads };
      const proc = Bun.spawnSync(args, { stdout: "pipe", stderr: "inherit", env });
      const line = proc.stdout.toString().split("\n").find((l) => l.startsWith("RESULT "));
      if (proc.exitCode !== 0 || line === undefined) {
        console.error(`bench step ${name} failed (exit ${proc.exitCode})`);
        failed = true;
        continue;
      }
      const result = JSON.parse(line.slice(7)) as StepResult;
      if (withTorch) {
        const torch = runTorch(name, dir, result.threads);
        if (torch !== null) {
          result.torch_ms_per_step = torch.ms;
          result.torch_loss_first = torch.loss;
        }
      }
      rmSync(join(dir, `${name}.bin`), { force: true });
      if (values.json) {
        const { config, B, T, threads, ms_per_step, tokens_per_s, gflops, mfu_pct, peak_rss_mb, split_ms, torch_ms_per_step } = result;
        console.log(JSON.stringify({ config, B, T, threads, ms_per_step, tokens_per_s, gflops, mfu_pct, peak_rss_mb, split_ms, torch_ms_per_step,
          forward_ms: result.forward_ms, backward_ms: result.backward_ms, adamw_ms: result.adamw_ms, adamw_gb_s: result.adamw_gb_s, peak_gflops: result.peak_gflops, load_avg: result.load_avg }));
      } else {
        printHuman(result);
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  process.exit(failed ? 1 : 0);
}
