// One full training step (forward + backward + AdamW) of GPT-2, timed, profiled by kernel type, and
// compared with PyTorch running the same step from the same llm.c checkpoint and tokens, in fp32
// and under torch.autocast("cpu", dtype=torch.bfloat16).
//   bun run bench:step [--quick] [--json] [--configs d12,d6] [--precision fp32,bf16] [--warmup 2] [--steps 5] [--threads N] [--no-torch]
// Each (config, precision) runs in its own child process, so its peak RSS (VmHWM) is its own;
// PyTorch runs after it (scripts/torch_step.py, torch.set_num_threads(threads)), never at the same
// time. MFU = model FLOPs (src/model/flops.ts) per second over the ceiling of the precision used
// (fp32: FMA; bf16: vdpbf16ps; src/perf/peak.ts), sampled before and after the steps.
// --precision defaults to fp32 plus bf16 where the CPU and the build have AVX512_BF16.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { parseBenchArgs } from "./args.ts";
import { bf16Unavailable, MATMUL_PRECISIONS, type MatmulPrecision, setMatmulPrecision, threadCount } from "../src/ffi.ts";
import { writeLlmcCheckpoint } from "../src/io/llmc.ts";
import { namedConfig } from "../src/model/config.ts";
import { trainingStepFlops } from "../src/model/flops.ts";
import { GPT2 } from "../src/model/gpt2.ts";
import { AdamW } from "../src/optim/adamw.ts";
import { measurePeakFor, median, mfuPercent, pooledPeak } from "../src/perf/peak.ts";

const ROOT = resolve(import.meta.dir, "..");
const SHAPES: Record<string, { B: number; T: number }> = { d12: { B: 4, T: 64 }, d6: { B: 8, T: 128 } };

const { values } = parseBenchArgs({
  options: {
    quick: { type: "boolean", default: false },
    json: { type: "boolean", default: false },
    configs: { type: "string" },
    precision: { type: "string" },
    warmup: { type: "string" },
    steps: { type: "string" },
    "no-torch": { type: "boolean", default: false },
    threads: { type: "string" },
    child: { type: "string" },
    "child-precision": { type: "string" },
    dir: { type: "string" },
  },
});
const quick = values.quick ?? false;
const warmup = Number(values.warmup ?? (quick ? 1 : 2));
const steps = Number(values.steps ?? (quick ? 3 : 5));

export interface StepResult {
  config: string; B: number; T: number; threads: number; precision: MatmulPrecision;
  ms_per_step: number; ms_best: number; tokens_per_s: number; gflops: number; mfu_pct: number; mfu_best_pct: number; peak_rss_mb: number;
  split_ms: Record<string, number>; torch_ms_per_step: number | null; torch_amp_ms_per_step: number | null;
  forward_ms: number; backward_ms: number; adamw_ms: number; adamw_gb_s: number; peak_gflops: number; peak_best_gflops: number; peak_source: string;
  params: number; init_ms: number; loss_first: number; torch_loss_first: number | null; torch_amp_loss_first: number | null; times_ms: number[];
  /** 1-minute load average at the end of the run: other processes on the 2 cores distort every figure */
  load_avg: number;
}

function peakRssMb(): number {
  const status = readFileSync("/proc/self/status", "utf8");
  const match = /VmHWM:\s+(\d+) kB/.exec(status);
  return match ? Number(match[1]) / 1024 : NaN;
}

function runChild(name: string, precision: MatmulPrecision, dir: string): StepResult {
  const config = namedConfig(name);
  const { B, T } = SHAPES[name] ?? { B: 4, T: 64 };
  const threads = threadCount();
  const peakBefore = measurePeakFor(precision, threads);

  const t0 = performance.now();
  const model = GPT2.init(config, 1337);
  const initMs = performance.now() - t0;
  const tokens = new Int32Array(B * T + 1);
  for (let i = 0; i < tokens.length; i++) tokens[i] = (i * 7919 + 13) % config.V;
  const inputs = tokens.subarray(0, B * T), targets = tokens.subarray(1);
  writeFileSync(join(dir, `${name}.tokens`), tokens);
  writeLlmcCheckpoint(join(dir, `${name}.bin`), model.weights);
  setMatmulPrecision(precision);
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
  setMatmulPrecision("fp32");
  const peak = pooledPeak(peakBefore, measurePeakFor(precision, threads));
  const ms = median(times), best = Math.min(...times);
  const split: Record<string, number> = {};
  let accounted = 0;
  for (const [key, total] of [...profile.entries()].sort((a, b) => b[1] - a[1])) {
    split[key] = total / steps;
    accounted += total / steps;
  }
  split.other = times.reduce((a, b) => a + b, 0) / steps - accounted;
  const flops = trainingStepFlops(config, T, B * T);
  const n = model.params.length;
  return {
    config: name, B, T, threads, precision, ms_per_step: ms, ms_best: best, tokens_per_s: (B * T) / (ms / 1000), gflops: flops / (ms * 1e6),
    mfu_pct: mfuPercent(flops, ms / 1000, peak.gflops), mfu_best_pct: mfuPercent(flops, best / 1000, peak.best), peak_rss_mb: peakRssMb(), split_ms: split,
    torch_ms_per_step: null, torch_amp_ms_per_step: null,
    forward_ms: median(forwards), backward_ms: median(backwards), adamw_ms: median(adamws),
    adamw_gb_s: (28 * n) / (median(adamws) * 1e6), // params r+w, m r+w, v r+w, grads r: 7 floats
    peak_gflops: peak.gflops, peak_best_gflops: peak.best, peak_source: peak.source, params: n, init_ms: initMs,
    loss_first: lossFirst, torch_loss_first: null, torch_amp_loss_first: null, times_ms: times, load_avg: loadavg()[0],
  };
}

function torchAvailable(): boolean {
  const proc = Bun.spawnSync(["/usr/bin/python3", "-c", "import torch, numpy"], { stdout: "ignore", stderr: "ignore" });
  return proc.exitCode === 0;
}

function runTorch(name: string, dir: string, threads: number, autocast: boolean): { ms: number; loss: number } | null {
  const { B, T } = SHAPES[name] ?? { B: 4, T: 64 };
  const proc = Bun.spawnSync(["/usr/bin/python3", join(ROOT, "scripts", "torch_step.py"), join(dir, `${name}.bin`), join(dir, `${name}.tokens`), String(B), String(T),
    "--threads", String(threads), "--warmup", String(warmup), "--steps", String(steps), ...(autocast ? ["--autocast"] : [])], { stdout: "pipe", stderr: "inherit" });
  if (proc.exitCode !== 0) return null;
  const line = proc.stdout.toString().trim().split("\n").at(-1) ?? "";
  const result = JSON.parse(line);
  return { ms: result.ms_per_step, loss: result.losses[0] };
}

function printHuman(r: StepResult): void {
  const f = (x: number, d = 0) => x.toFixed(d);
  const ceiling = r.precision === "fp32" ? "FMA" : "vdpbf16ps";
  console.log(`\n${r.config} (${(r.params / 1e6).toFixed(1)}M params) B=${r.B} T=${r.T}, ${r.threads} threads, ${r.precision} matmuls, median of ${steps} steps after ${warmup} warm-up`);
  console.log(`  ${f(r.ms_per_step)} ms/step (best ${f(r.ms_best)}; forward ${f(r.forward_ms)}, backward ${f(r.backward_ms)}), ${f(r.tokens_per_s)} tokens/s, ${f(r.gflops, 1)} GFLOP/s = ${f(r.mfu_pct, 1)}% MFU (best ${f(r.mfu_best_pct, 1)}%) against the ${ceiling} ceiling ${f(r.peak_gflops, 1)} GFLOP/s (${r.peak_source})`);
  console.log(`  load average ${r.load_avg.toFixed(2)} (2 cores); step times ${r.times_ms.map((t) => t.toFixed(0)).join(", ")} ms`);
  console.log(`  peak RSS ${f(r.peak_rss_mb)} MB; AdamW ${f(r.adamw_ms, 1)} ms (median) = ${f(r.adamw_gb_s, 1)} GB/s; init ${f(r.init_ms)} ms`);
  console.log(`  split (mean ms/step): ${Object.entries(r.split_ms).map(([k, v]) => `${k} ${v.toFixed(1)}`).join(", ")}`);
  for (const [label, ms, loss] of [["fp32", r.torch_ms_per_step, r.torch_loss_first], ["bf16 autocast", r.torch_amp_ms_per_step, r.torch_amp_loss_first]] as const) {
    if (ms === null) console.log(`  PyTorch ${label}: not run`);
    else console.log(`  PyTorch ${torchVersion()} ${label}, same step: ${f(ms)} ms/step → llm.ts ${r.precision} is ${(ms / r.ms_per_step).toFixed(2)}× its speed; first loss ${r.loss_first.toFixed(6)} vs PyTorch ${loss?.toFixed(6)}`);
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

function precisionsToRun(): MatmulPrecision[] {
  if (values.precision === undefined) return bf16Unavailable() === null ? ["fp32", "bf16"] : ["fp32"];
  const list = values.precision.split(",") as MatmulPrecision[];
  for (const p of list) {
    if (!MATMUL_PRECISIONS.includes(p)) throw new Error(`--precision: ${p} is not one of ${MATMUL_PRECISIONS.join(", ")}`);
    if (p === "bf16" && bf16Unavailable() !== null) throw new Error(`--precision bf16: ${bf16Unavailable()}`);
  }
  return list;
}

if (values.child !== undefined) {
  const result = runChild(values.child, (values["child-precision"] ?? "fp32") as MatmulPrecision, values.dir ?? tmpdir());
  console.log(`RESULT ${JSON.stringify(result)}`);
} else {
  const configs = (values.configs ?? (quick ? "d6" : "d12,d6")).split(",");
  const precisions = precisionsToRun();
  const withTorch = !(values["no-torch"] ?? false) && torchAvailable();
  const dir = mkdtempSync(join(tmpdir(), "llmts-bench-step-"));
  let failed = false;
  try {
    for (const name of configs) {
      namedConfig(name);
      const results: StepResult[] = [];
      for (const precision of precisions) {
        const args = ["bun", join(ROOT, "bench", "step.ts"), "--child", name, "--child-precision", precision, "--dir", dir, "--warmup", String(warmup), "--steps", String(steps)];
        const env = values.threads === undefined ? process.env : { ...process.env, LLMTS_THREADS: values.threads };
        const proc = Bun.spawnSync(args, { stdout: "pipe", stderr: "inherit", env });
        const line = proc.stdout.toString().split("\n").find((l) => l.startsWith("RESULT "));
        if (proc.exitCode !== 0 || line === undefined) {
          console.error(`bench step ${name} ${precision} failed (exit ${proc.exitCode})`);
          failed = true;
          continue;
        }
        results.push(JSON.parse(line.slice(7)) as StepResult);
      }
      if (withTorch && results.length > 0) {
        const torch = runTorch(name, dir, results[0].threads, false);
        const amp = runTorch(name, dir, results[0].threads, true);
        for (const r of results) {
          r.torch_ms_per_step = torch?.ms ?? null;
          r.torch_loss_first = torch?.loss ?? null;
          r.torch_amp_ms_per_step = amp?.ms ?? null;
          r.torch_amp_loss_first = amp?.loss ?? null;
        }
      }
      rmSync(join(dir, `${name}.bin`), { force: true });
      for (const r of results) {
        if (values.json) {
          const { config, B, T, threads, precision, ms_per_step, ms_best, tokens_per_s, gflops, mfu_pct, mfu_best_pct, peak_gflops, peak_best_gflops, torch_ms_per_step, torch_amp_ms_per_step, split_ms, peak_rss_mb } = r;
          console.log(JSON.stringify({ bench: "step", config, B, T, threads, precision, ms_per_step, ms_best, mfu_pct, mfu_best_pct, peak_gflops, peak_best_gflops, torch_ms_per_step, torch_amp_ms_per_step, split_ms,
            tokens_per_s, gflops, peak_rss_mb, forward_ms: r.forward_ms, backward_ms: r.backward_ms, adamw_ms: r.adamw_ms, adamw_gb_s: r.adamw_gb_s, load_avg: r.load_avg }));
        } else {
          printHuman(r);
        }
      }
      if (!values.json && results.length === 2) console.log(`\n  bf16 / fp32 step speed: ×${(results[0].ms_per_step / results[1].ms_per_step).toFixed(2)}`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  process.exit(failed ? 1 : 0);
}
