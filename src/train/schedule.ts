// Learning rate at each optimizer step: linear warmup, then the chosen shape.
import type { Schedule } from "./options.ts";

export interface ScheduleOptions {
  schedule: Schedule;
  /** peak learning rate */
  lr: number;
  steps: number;
  warmup: number;
  /** cosine/linear/wsd end at lr × lrMinFrac */
  lrMinFrac: number;
  /** wsd: fraction of steps spent in the final linear decay */
  decayFrac: number;
}

/** The learning rate for update number `step` (0-based: the first update is step 0). */
export function learningRate(step: number, o: ScheduleOptions): number {
  if (step < o.warmup) return (o.lr * (step + 1)) / o.warmup;
  const min = o.lr * o.lrMinFrac;
  const span = Math.max(1, o.steps - o.warmup);
  const progress = Math.min(1, (step - o.warmup) / span);
  switch (o.schedule) {
    case "constant":
      return o.lr;
    case "cosine":
      return min + (o.lr - min) * 0.5 * (1 + Math.cos(Math.PI * progress));
    case "linear":
      return o.lr - (o.lr - min) * progress;
    case "wsd": {
      // Warmup–stable–decay: hold the peak, then decay linearly over the last decayFrac of the run.
      const decaySteps = Math.max(1, Math.round(o.steps * o.decayFrac));
      const decayStart = Math.max(o.warmup, o.steps - decaySteps);
      if (step < decayStart) return o.lr;
      return o.lr - (o.lr - min) * Math.min(1, (step - decayStart + 1) / decaySteps);
    }
  }
}
