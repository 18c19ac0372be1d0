// bun run train [options]: train GPT-2 (see --help, or src/train/options.ts).
import { EXIT } from "../base/errors.ts";
import { parameterCount } from "../model/weights.ts";
import { helpText, parseTrainArgs } from "../train/options.ts";
import { duration, Progress } from "../train/progress.ts";
import { setupRun, trainLoop, TrainingFailed } from "../train/trainer.ts";
import { runCli } from "./flags.ts";

export async function main(argv: string[]): Promise<number> {
  const { help, given } = parseTrainArgs(argv);
  if (help) {
    process.stdout.write(helpText());
    return EXIT.done;
  }
  const progress = new Progress();
  const run = setupRun(given, (m) => progress.message(m));
  const o = run.spec;
  const c = run.model.config;
  progress.message(
    `model: ${run.origin}; L=${c.L} NH=${c.NH} C=${c.C} maxT=${c.maxT} V=${c.V}, ${(parameterCount(c) / 1e6).toFixed(2)}M parameters\n` +
      `data: ${run.dataNote}; ${run.train.totalTokens.toLocaleString("en-US")} train tokens, ${run.train.batchesPerEpoch} batches/epoch` +
      `${run.val ? `, ${Math.min(o.valBatches, run.val.batchesPerEpoch)} val batches` : ""}\n` +
      `optimisation: B=${o.batch} T=${o.seq} accumulation ${run.accumulation} (${o.totalBatch} tokens/step), ${o.steps} steps, ` +
      `lr ${o.lr} ${o.schedule}${o.warmup ? ` warmup ${o.warmup}` : ""}, AdamW β=(${o.beta1}, ${o.beta2}) ε=${o.eps} wd=${o.weightDecay}, ` +
      `clip ${o.gradClip || "off"}, ${o.shuffle ? "shuffled" : "unshuffled"}, seed ${o.seed}, ${o.matmulPrecision} matmuls, ${run.threads} threads\n` +
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
  process.on("SIGINT", onSignal("Ctrl-C"));
  process.on("SIGTERM", onSignal("SIGTERM"));

  const started = performance.now();
  let result;
  try {
    result = await trainLoop(run, progress, () => stopRequests > 0);
  } catch (error) {
    progress.finish();
    if (error instanceof TrainingFailed) {
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
    progress.message(`interrupted at step ${result.step}/${o.steps} after ${elapsed}: ${where}. Continue with: bun run train --resume latest${ckptFlag}`);
    return EXIT.interrupted;
  }
  const val = result.finalValLoss === null ? "" : `, val loss ${result.finalValLoss.toFixed(4)}`;
  progress.message(`done: ${result.step} steps in ${elapsed}${val}; checkpoint ${result.lastCheckpoint}; loss curve ${run.log.svgPath}`);
  return EXIT.done;
}

if (import.meta.main) await runCli("train", () => main(process.argv.slice(2)));
