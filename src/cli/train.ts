// bun run train [options]: train GPT-2 (see --help, or src/train/options.ts).
// Under mpirun (`mpirun -np N bun run train [options]`, docs/distributed.md) every rank runs this
// same program: rank 0 prints and writes, the others print only their own failures; an error on
// any rank ends the whole job (MPI_Abort) with its message and exit code.
import { EXIT, InputError } from "../base/errors.ts";
import { type Distributed, startDistributed } from "../dist/distributed.ts";
import { detectMpiLaunch } from "../dist/mpi.ts";
import { parameterCount } from "../model/weights.ts";
import { helpText, parseTrainArgs, type TrainFlags } from "../train/options.ts";
import { duration, Progress } from "../train/progress.ts";
import { RUN_DEFAULTS, setupRun, trainLoop, TrainingFailed } from "../train/trainer.ts";
import { runCli } from "./flags.ts";

/** How long a rank other than 0 waits before reporting its failure: rank 0 says it once when all ranks fail alike. */
const NON_ROOT_REPORT_DELAY_MS = 1000;

export async function main(argv: string[]): Promise<number> {
  const launch = detectMpiLaunch();
  // Under mpirun, flag errors and --help are the same on every rank: rank 0 alone prints them.
  const quiet = launch !== null && launch.rank !== 0;
  let parsed: ReturnType<typeof parseTrainArgs>;
  try {
    parsed = parseTrainArgs(argv);
  } catch (error) {
    if (quiet) return EXIT.badInput;
    throw error;
  }
  if (parsed.help) {
    if (!quiet) process.stdout.write(helpText());
    return EXIT.done;
  }
  const dist = startDistributed();
  if (dist === null) return train(parsed.given, null);
  return runRank(dist, () => train(parsed.given, dist));
}

/**
 * Runs one rank: on success every rank finalizes MPI and returns the code; an error prints
 * "rank r: train: message" and ends the job with its exit code (2 for bad input, 1 otherwise).
 */
async function runRank(dist: Distributed, work: () => Promise<number>): Promise<number> {
  let code: number;
  try {
    code = await work();
  } catch (error) {
    const message = (error as Error).message ?? String(error);
    const input = error instanceof InputError || (error as { code?: string }).code?.startsWith("ERR_PARSE_ARGS");
    if (!dist.isRoot) Bun.sleepSync(NON_ROOT_REPORT_DELAY_MS);
    dist.abort(input || error instanceof TrainingFailed ? `train: ${message}` : `train: error: ${message}`, input ? EXIT.badInput : EXIT.failure);
  }
  dist.finalize();
  return code;
}

async function train(given: Partial<TrainFlags>, dist: Distributed | null): Promise<number> {
  const speaks = dist === null || dist.isRoot;
  const progress = speaks ? new Progress() : new Progress({ write: () => true, isTTY: false } as unknown as NodeJS.WriteStream);
  const run = setupRun(given, (m) => progress.message(m), RUN_DEFAULTS, dist);
  const o = run.spec;
  const c = run.model.config;
  const dp = run.dp;
  const perRank = dp === null ? "" : ` per rank × ${o.ranks} ranks`;
  progress.message(
    `model: ${run.origin}; L=${c.L} NH=${c.NH} C=${c.C} maxT=${c.maxT} V=${c.V}, ${(parameterCount(c) / 1e6).toFixed(2)}M parameters\n` +
      `data: ${run.dataNote}; ${run.train.totalTokens.toLocaleString("en-US")} train tokens, ${run.train.batchesPerEpoch} batches/epoch` +
      `${run.val ? `, ${Math.min(o.valBatches, run.val.batchesPerEpoch)} val batches` : ""}\n` +
      `optimisation: B=${o.batch}${perRank} T=${o.seq} accumulation ${run.accumulation} (${o.totalBatch} tokens/step), ${o.steps} steps, ` +
      `lr ${o.lr} ${o.schedule}${o.warmup ? ` warmup ${o.warmup}` : ""}, AdamW β=(${o.beta1}, ${o.beta2}) ε=${o.eps} wd=${o.weightDecay}, ` +
      `clip ${o.gradClip || "off"}, ${o.shuffle ? "shuffled" : "unshuffled"}, seed ${o.seed}, ${o.matmulPrecision} matmuls, ${run.threads} threads${dp === null ? "" : " per rank"}\n` +
      (dp === null
        ? ""
        : `data parallel: ${o.ranks} ranks, ZeRO-${dp.zero} (AdamW moments: ${(dp.optimizer.momentBytes / 2 ** 20).toFixed(0)} MiB on this rank), ` +
          (dp.shared !== null
            ? "gradients summed in shared memory after the backward pass (every rank on this machine; LLMTS_DP_REDUCE=mpi for messages)\n"
            : `${dp.sharedMemoryNote === null ? "" : `note: ${dp.sharedMemoryNote}\n`}gradients reduced through MPI during the backward pass, embedding rows ${dp.exchange === null ? "reduced with wte after the encoder" : "exchanged, wte reduced during the backward pass"}${dp.zero !== 1 ? "" : dp.gather !== null ? ", parameters all-gathered during the next forward pass" : ", parameters all-gathered after the update"}\n`)) +
      `output: ${run.log.path} (+ ${run.log.svgPath}), checkpoints in ${o.ckptDir}; ` +
      `MFU against ${run.peak.gflops.toFixed(0)} GFLOP/s (${run.peak.source})`,
  );

  let stopRequests = 0;
  const onSignal = (signal: string) => () => {
    stopRequests++;
    if (stopRequests > 1) {
      progress.message(`${signal} again: exiting without a checkpoint`);
      process.exit(EXIT.interrupted);
    }
    progress.message(`${signal}: finishing this step, then saving a checkpoint (press again to quit at once)`);
  };
  if (dist === null) {
    process.on("SIGINT", onSignal("Ctrl-C"));
    process.on("SIGTERM", onSignal("SIGTERM"));
  } else {
    // mpirun ends a job (Ctrl-C on it, or a failed rank) by sending every rank SIGCONT at once,
    // SIGTERM odls_base_sigkill_timeout seconds later (default 1) and SIGKILL as long after that:
    // the step is finished and the checkpoint written from the first of them on, and a second
    // signal is part of that sequence, not a request to quit at once.
    const timeoutS = Number(process.env.OMPI_MCA_odls_base_sigkill_timeout ?? 1);
    const onMpiSignal = (signal: string) => () => {
      stopRequests++;
      if (stopRequests > 1) return;
      progress.message(
        `${signal} from mpirun (Ctrl-C?): finishing this step, then saving a checkpoint. mpirun sends SIGKILL about ${2 * timeoutS} s after its SIGCONT ` +
          `(2 × odls_base_sigkill_timeout ${timeoutS} s); if that is too short the last checkpoint saved earlier stays the newest: give mpirun --mca odls_base_sigkill_timeout 30`,
      );
    };
    for (const signal of ["SIGCONT", "SIGTERM", "SIGINT"] as const) process.on(signal, onMpiSignal(signal));
  }

  const started = performance.now();
  let result;
  try {
    result = await trainLoop(run, progress, () => stopRequests > 0);
  } catch (error) {
    progress.finish();
    // Data-parallel, a failure may be one rank's (a checkpoint rank 0 could not write): it ends the job.
    if (error instanceof TrainingFailed && dp === null) {
      process.stderr.write(`train: ${error.message}\n`);
      return EXIT.failure;
    }
    throw error;
  }
  progress.finish();
  const elapsed = duration((performance.now() - started) / 1000);
  if (result.interrupted) {
    const where = result.lastCheckpoint ? `saved ${result.lastCheckpoint}` : "no step was completed, nothing saved";
    const ckptFlag = o.ckptDir === "runs/train" ? "" : ` --ckpt-dir ${o.ckptDir}`;
    const command = dp === null ? "bun run train" : `mpirun -np ${o.ranks} bun run train`;
    progress.message(`interrupted at step ${result.step}/${o.steps} after ${elapsed}: ${where}. Continue with: ${command} --resume latest${ckptFlag}`);
    return EXIT.interrupted;
  }
  const val = result.finalValLoss === null ? "" : `, val loss ${result.finalValLoss.toFixed(4)}`;
  progress.message(`done: ${result.step} steps in ${elapsed}${val}; checkpoint ${result.lastCheckpoint}; loss curve ${run.log.svgPath}`);
  return EXIT.done;
}

if (import.meta.main) await runCli("train", () => main(process.argv.slice(2)));
