// Overhead of `bun run train`'s loop (grad norm, schedule, JSONL log, SVG, progress, event-loop
// yield) against a bare step loop (loader, zeroGrad, forward, backward, AdamW update) for the same
// model, seed, batches (Moby-Dick), lr (1e-4) and no clipping (the trainer runs with
// --grad-clip 0), so both do identical arithmetic (a fixed repeated batch would not: the model
// overfits it and the numbers change). Rounds
// alternate between the two to spread machine noise. Prints both medians, the ratio, and the
// median time per step spent in the trainer outside forward/backward/update.
//   bun bench/train_loop.ts [--model d4] [--batch 8] [--seq 64] [--steps 20]
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseBenchArgs } from "./args.ts";
import { namedConfig } from "../src/model/config.ts";
import { parameterCount } from "../src/model/weights.ts";
import { GPT2 } from "../src/model/gpt2.ts";
import { AdamW } from "../src/optim/adamw.ts";
import { parseTrainArgs } from "../src/train/options.ts";
import { Progress, type StepStatus } from "../src/train/progress.ts";
import { ensureDefaultCorpus, MOBY_DICK_CACHE, setupRun, trainLoop } from "../src/train/trainer.ts";
import { TokenLoader } from "../src/data/loader.ts";

const { values } = parseBenchArgs({ options: { model: { type: "string", default: "d4" }, batch: { type: "string", default: "8" }, seq: { type: "string", default: "64" }, steps: { type: "string", default: "20" }, rounds: { type: "string", default: "2" } } });
const [B, T, steps, rounds] = [Number(values.batch), Number(values.seq), Number(values.steps), Number(values.rounds)];
const SEED = 1337;
const LR = 1e-4;
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

function plainLoop(n: number): number[] {
  const config = namedConfig(values.model!);
  const model = GPT2.init(config, SEED);
  const optimizer = new AdamW(parameterCount(config), { lr: LR });
  const loader = new TokenLoader({ files: join(MOBY_DICK_CACHE, "train_*.bin"), B, T, vocabSize: config.V, shuffle: true, seed: SEED ^ 0x5eed_da7a, label: "train" });
  const times: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    loader.next();
    model.zeroGrad();
    model.forward(loader.inputs, loader.targets, B, T);
    model.backward();
    optimizer.update(model.params, model.grads, LR);
    times.push(performance.now() - t0);
  }
  return times;
}

/** Wall time between consecutive progress updates = everything the loop does per step. */
class Timing extends Progress {
  readonly marks: number[] = [];
  readonly ms: number[] = [];
  constructor() {
    super({ write: () => true, isTTY: false } as unknown as NodeJS.WriteStream);
  }
  override step(s: StepStatus): void {
    this.marks.push(performance.now());
    this.ms.push(s.ms);
  }
}

const outside: number[] = [];

async function trainerLoop(n: number): Promise<number[]> {
  const dir = mkdtempSync(join(tmpdir(), "llmts-bench-"));
  try {
    const args = ["--model", values.model!, "--batch", String(B), "--seq", String(T), "--steps", String(n + 1), "--val-every", "0", "--sample-tokens", "0", "--ckpt-every", "0", "--ckpt-dir", dir, "--seed", String(SEED), "--lr", String(LR), "--grad-clip", "0"];
    const run = setupRun(parseTrainArgs(args).given, () => {});
    run.val = null; // the final evaluation is not part of the per-step cost
    const timing = new Timing();
    await trainLoop(run, timing, () => false);
    const intervals = timing.marks.slice(1).map((t, i) => t - timing.marks[i]);
    // interval k spans the bookkeeping after step k and the whole of step k+1
    intervals.forEach((dt, i) => outside.push(dt - timing.ms[i + 1]));
    return intervals;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

ensureDefaultCorpus((message) => console.error(message)); // a fresh clone has no data/ yet
plainLoop(2); // warm-up: allocations, JIT, the data cache
const plain: number[] = [];
const trainer: number[] = [];
for (let r = 0; r < rounds; r++) {
  plain.push(...plainLoop(steps));
  trainer.push(...(await trainerLoop(steps)));
}
const p = median(plain), t = median(trainer);
console.log(
  `${values.model} B=${B} T=${T}: plain step loop ${p.toFixed(1)} ms/step, bun run train loop ${t.toFixed(1)} ms/step ` +
    `(median of ${plain.length} and ${trainer.length}); ratio ${(t / p).toFixed(3)}; trainer time outside forward/backward/update ${median(outside).toFixed(2)} ms/step`,
);
