// Data-parallel training against one process, on this machine (issue 10's benchmark):
//   bun run bench:dp [--quick] [--json] [--model d12] [--batch 4] [--seq 64] [--warmup 1] [--steps 4] [--rounds 1]
// times the trainer's own step (src/train/trainer.ts runSteps: forward, backward with the
// overlapped reduction, AdamW or ZeRO) at a global batch of B sequences of T tokens as
//   1 rank × 2 threads (one plain process: no MPI),
//   2 ranks × 1 thread, ZeRO-0 and ZeRO-1 (mpirun -np 2, B/2 sequences per rank), ZeRO-1 twice:
//   as the trainer runs it on one machine (gradients summed and parameters kept in shared memory)
//   and with LLMTS_DP_REDUCE=mpi (messages, overlapped with the backward pass: as across machines;
//   LLMTS_DP_PREFETCH=0 in the environment reaches the ranks: the all-gather then waits at the update),
// each configuration in processes of its own (so each peak RSS is its own), one after the other;
// with --rounds R the four run R times in turn and each reports its best round (the one with the
// lowest median step time: on a machine shared with other work, the least disturbed).
// Prints one row per configuration; with --json one object per line:
//   {"bench":"dp","config","ranks","threads","zero","B","T","reduce","ms_per_step","tokens_per_s","comm_ms","comm_exposed_ms","peak_rss_mb_per_rank", …}
// ms_per_step is the median over the measured steps; comm_ms the wall time with communication in
// flight per step (gradient reduction, embedding rows, ZeRO-1's parameter all-gather or, in shared
// memory, the sum and its barriers) and comm_exposed_ms the part of it the ranks spent inside
// MPI calls or the sum rather than computing (medians,
// rank 0's view); peak_rss_mb_per_rank the largest VmHWM over the ranks.
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { availableParallelism, loadavg, tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { parseBenchArgs } from "./args.ts";
import { startDistributed } from "../src/dist/distributed.ts";
import { median } from "../src/perf/peak.ts";
import { parseTrainArgs } from "../src/train/options.ts";
import { RUN_DEFAULTS, runSteps, setupRun } from "../src/train/trainer.ts";

const ROOT = resolve(import.meta.dir, "..");
const { values } = parseBenchArgs({
  options: {
    quick: { type: "boolean", default: false },
    json: { type: "boolean", default: false },
    model: { type: "string", default: "d12" },
    batch: { type: "string", default: "4" },
    seq: { type: "string", default: "64" },
    warmup: { type: "string" },
    steps: { type: "string" },
    rounds: { type: "string", default: "1" },
    // worker mode (set by the parent)
    worker: { type: "boolean", default: false },
    zero: { type: "string", default: "0" },
    threads: { type: "string", default: "1" },
    dir: { type: "string" },
  },
});
const quick = values.quick ?? false;
const warmup = Number(values.warmup ?? 1);
const steps = Number(values.steps ?? (quick ? 1 : 4));
const B = Number(values.batch), T = Number(values.seq);

interface Row {
  bench: "dp"; config: string; ranks: number; threads: number; zero: number; B: number; T: number;
  /** how the gradients were reduced: "shared" memory (ZeRO-1 on one machine), "mpi" messages, "none" (one process) */
  reduce: "shared" | "mpi" | "none";
  ms_per_step: number; tokens_per_s: number; comm_ms: number; comm_exposed_ms: number; peak_rss_mb_per_rank: number;
  /** every measured step's wall time, and each rank's peak RSS */
  times_ms: number[]; rss_mb_by_rank: number[]; moments_mb_per_rank: number;
  /** 1-minute load average at the end: other processes on the cores distort every figure */
  load_avg: number;
}

function peakRssMb(): number {
  const match = /VmHWM:\s+(\d+) kB/.exec(readFileSync("/proc/self/status", "utf8"));
  return match ? Number(match[1]) / 1024 : NaN;
}

const round = (x: number, digits = 1) => Number(x.toFixed(digits));

/** One configuration, in this process (and its mpirun siblings): the row on rank 0's stdout. */
function worker(): void {
  const dist = startDistributed();
  const ranks = dist?.size ?? 1;
  const threads = Number(values.threads);
  const zero = Number(values.zero);
  if (B % ranks !== 0) throw new Error(`--batch ${B} is not divisible by ${ranks} ranks`);
  const args = [
    "--model", values.model!, "--batch", String(B / ranks), "--seq", String(T), "--steps", String(warmup + steps), "--val-every", "0",
    "--sample-tokens", "0", "--ckpt-every", "0", "--ckpt-dir", values.dir!, "--threads", String(threads), "--peak-gflops", "1",
    ...(dist === null ? [] : ["--zero", String(zero)]),
  ];
  const run = setupRun(parseTrainArgs(args).given, () => {}, RUN_DEFAULTS, dist);
  const times: number[] = [];
  const comm: number[] = [];
  const exposed: number[] = [];
  runSteps(run, warmup + steps, (ms, step) => {
    if (step <= warmup) return;
    times.push(ms);
    comm.push(run.dp?.lastStep.ms ?? 0);
    exposed.push(run.dp?.lastStep.exposedMs ?? 0);
  });
  const rss = dist === null ? [peakRssMb()] : Array.from(dist.allgatherF64(Float64Array.of(peakRssMb())));
  const moments = (run.dp?.optimizer.momentBytes ?? 8 * run.model.params.length) / 2 ** 20;
  const ms = median(times);
  const row: Row = {
    bench: "dp", config: values.model!, ranks, threads, zero: run.dp?.zero ?? 0, B, T, reduce: run.dp === null ? "none" : run.dp.shared !== null ? "shared" : "mpi",
    ms_per_step: round(ms), tokens_per_s: round((B * T) / (ms / 1000)), comm_ms: round(median(comm)), comm_exposed_ms: round(median(exposed)),
    peak_rss_mb_per_rank: round(Math.max(...rss), 0), times_ms: times.map((t) => round(t)), rss_mb_by_rank: rss.map((r) => round(r, 0)), moments_mb_per_rank: round(moments, 0),
    load_avg: round(loadavg()[0], 2),
  };
  if (dist === null || dist.isRoot) console.log(JSON.stringify(row));
  dist?.finalize();
}

/** Runs one configuration in fresh processes and returns its row. */
function measure(ranks: number, threads: number, zero: number, reduce: string, dir: string): Row {
  const self = [process.execPath, join(ROOT, "bench", "dp.ts"), "--worker", "--model", values.model!, "--batch", String(B), "--seq", String(T),
    "--warmup", String(warmup), "--steps", String(steps), "--zero", String(zero), "--threads", String(threads), "--dir", dir];
  const root = process.getuid?.() === 0 ? ["--allow-run-as-root"] : [];
  // LLMTS_DP_PREFETCH=0 (ZeRO-1 through MPI: the all-gather waited for at the update) reaches the ranks when set.
  const passThrough = process.env.LLMTS_DP_PREFETCH === undefined ? [] : ["-x", `LLMTS_DP_PREFETCH=${process.env.LLMTS_DP_PREFETCH}`];
  const command = ranks === 1 ? self : ["mpirun", ...root, "--oversubscribe", "-np", String(ranks), "-x", "NO_COLOR=1", "-x", `LLMTS_THREADS=${threads}`, "-x", `LLMTS_DP_REDUCE=${reduce}`, ...passThrough, ...self];
  const proc = Bun.spawnSync(command, { cwd: ROOT, stdout: "pipe", stderr: "pipe", env: { ...process.env, LLMTS_THREADS: String(threads) } });
  const out = proc.stdout.toString();
  const line = out.split("\n").find((l) => l.startsWith('{"bench":"dp"'));
  if (proc.exitCode !== 0 || line === undefined) throw new Error(`bench/dp.ts: ${command.join(" ")} failed (exit ${proc.exitCode}):\n${out}${proc.stderr.toString()}`);
  return JSON.parse(line) as Row;
}

if (values.worker) worker();
else {
  if (Bun.which("mpirun") === null) {
    console.error("bench/dp.ts: mpirun not found (install Open MPI: apt-get install openmpi-bin libopenmpi-dev)");
    process.exit(2);
  }
  const dir = mkdtempSync(join(tmpdir(), "llmts-bench-dp-"));
  // ZeRO-1 twice: as the trainer runs it here (auto: summed in shared memory) and through MPI
  // messages, as it runs across machines.
  const configs = [[1, 2, 0, "auto"], [2, 1, 0, "auto"], [2, 1, 1, "auto"], [2, 1, 1, "mpi"]] as const;
  const rows: Row[] = [];
  try {
    for (let round = 0; round < Number(values.rounds); round++) {
      configs.forEach(([ranks, threads, zero, reduce], i) => {
        const row = measure(ranks, threads, zero, reduce, join(dir, `${ranks}x${threads}z${zero}${reduce}r${round}`));
        if (rows[i] === undefined || row.ms_per_step < rows[i].ms_per_step) rows[i] = row;
      });
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  if (values.json) for (const row of rows) console.log(JSON.stringify(row));
  else {
    const base = rows[0].tokens_per_s;
    console.log(`${values.model} at a global B=${B}, T=${T} on ${availableParallelism()} cores (${warmup} warm-up + ${steps} measured steps each, best of ${values.rounds} round(s); median ms; load average at the end of the run in brackets)`);
    for (const r of rows) {
      const share = r.comm_ms > 0 ? ` (${((100 * r.comm_exposed_ms) / r.comm_ms).toFixed(0)}% exposed)` : "";
      console.log(
        `${r.ranks} rank${r.ranks === 1 ? " " : "s"} × ${r.threads} thread${r.threads === 1 ? " " : "s"} ZeRO-${r.zero}${r.reduce === "none" ? "" : `, ${r.reduce === "shared" ? "shared memory" : "MPI messages"}`}: ${r.ms_per_step} ms/step, ${r.tokens_per_s} tokens/s (${(r.tokens_per_s / base).toFixed(2)}×), ` +
          `comm ${r.comm_ms} ms, exposed ${r.comm_exposed_ms} ms${share}, peak RSS ${r.rss_mb_by_rank.join("/")} MB per rank, moments ${r.moments_mb_per_rank} MB per rank [${r.load_avg}]`,
      );
    }
  }
}
