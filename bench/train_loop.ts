// Overhead of `bun run train`'s loop (data loader, grad norm + clipping, schedule, JSONL log, SVG,
// progress, event-loop yield) against a bare step loop (zeroGrad, forward, backward, AdamW update on
// one fixed batch) for the same model and batch. Prints both medians and the ratio.
//   bun bench/train_loop.ts [--model d4] [--batch 8] [--seq 64] [--steps 20]
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { namedConfig, parameterCount } from "../src/model/config.ts";
import { GPT2 } from "../src/model/gpt2.ts";
import { AdamW } from "../src/optim/adamw.ts";
import { parseTrainArgs } from "../src/train/options.ts";
import { Progress, type StepStatus } from "../src/train/progress.ts";
import { setupRun, trainLoop } from "../src/train/trainer.ts";

const { values } = parseArgs({ options: { model: { type: "string", default: "d4" }, batch: { type: "string", default: "8" }, seq: { type: "string", default: "64" }, steps: { type: "string", default: "20" }, rounds: { type: "string", default: "2" } } });
const [B, T, steps, rounds] = [Number(values.batch), Number(values.seq), Number(values.steps), Number(values.rounds)];
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

function plainLoop(model: GPT2, n: number): number[] {
  const optimizer = new AdamW(parameterCount(model.config), { lr: 1e-3 });
  const inputs = new Int32Array(B * T).map((_, i) => (i * 7919) % model.config.V);
  const targets = new Int32Array(B * T).map((_, i) => (i * 104729 + 1) % model.config.V);
  const times: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    model.zeroGrad();
    model.forward(inputs, targets, B, T);
    model.backward();
    optimizer.update(model.params, model.grads, 1e-3);
    times.push(performance.now() - t0);
  }
  return times;
}

/** Wall time between consecutive progress updates = everything the loop does per step. */
class Timing extends Progress {
  readonly marks: number[] = [];
  constructor() {
    super({ write: () => true, isTTY: false } as unknown as NodeJS.WriteStream);
  }
  override step(_s: StepStatus): void {
    this.marks.push(performance.now());
  }
}

async function trainerLoop(n: number): Promise<number[]> {
  const dir = mkdtempSync(join(tmpdir(), "llmts-bench-"));
  try {
    const args = ["--model", values.model!, "--batch", String(B), "--seq", String(T), "--steps", String(n + 1), "--val-every", "0", "--sample-tokens", "0", "--ckpt-every", "0", "--ckpt-dir", dir];
    const run = setupRun(parseTrainArgs(args).given, () => {});
    run.val = null; // the final evaluation is not part of the per-step cost
    const timing = new Timing();
    await trainLoop(run, timing, () => false);
    return timing.marks.slice(1).map((t, i) => t - timing.marks[i]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const model = GPT2.init(namedConfig(values.model!), 1);
plainLoop(model, 2); // warm-up: allocations, JIT
const plain: number[] = [];
const trainer: number[] = [];
for (let r = 0; r < rounds; r++) {
  plain.push(...plainLoop(model, steps));
  trainer.push(...(await trainerLoop(steps)));
}
const p = median(plain), t = median(trainer);
console.log(`${values.model} B=${B} T=${T}: plain step loop ${p.toFixed(1)} ms/step, bun run train loop ${t.toFixed(1)} ms/step (median of ${plain.length} and ${trainer.length}); ratio ${(t / p).toFixed(3)}`);
