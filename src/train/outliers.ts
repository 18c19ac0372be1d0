// llm.c's outlier guard (--skip-loss-z / --skip-grad-z): an update is skipped when the loss or the
// gradient norm lies more than X standard deviations above the mean of a rolling window of recent
// steps, so that one spike on real data does not throw a long run off course.
// Choices (written down): the window holds the last 128 accepted values, as llm.c's; no z-score
// exists until it is full; the new value is scored against the window WITHOUT itself (an outlier
// cannot widen the spread it is measured against); skipped values never enter the window. The
// window is part of a checkpoint, so a resumed run skips exactly the steps the uninterrupted one would.

import { describeJson } from "../base/describe_json.ts";

export const OUTLIER_WINDOW = 128;

export interface GuardState {
  values: number[];
  next: number;
}

export class ZScoreWindow {
  private readonly values: Float64Array;
  private count = 0;
  private next = 0;

  constructor(readonly size = OUTLIER_WINDOW) {
    this.values = new Float64Array(size);
  }

  /** (x − mean) / std of the window, or null while it is filling (or has no spread). */
  zscore(x: number): number | null {
    if (this.count < this.size) return null;
    let sum = 0;
    for (let i = 0; i < this.size; i++) sum += this.values[i];
    const mean = sum / this.size;
    let squares = 0;
    for (let i = 0; i < this.size; i++) squares += (this.values[i] - mean) ** 2;
    const std = Math.sqrt(squares / this.size);
    return std > 0 ? (x - mean) / std : null;
  }

  push(x: number): void {
    this.values[this.next] = x;
    this.next = (this.next + 1) % this.size;
    this.count = Math.min(this.size, this.count + 1);
  }

  state(): GuardState {
    return { values: Array.from(this.values.subarray(0, this.count)), next: this.next };
  }

  restore(raw: unknown, what: string): void {
    const s = raw as Partial<GuardState> | null;
    const ok = s !== null && typeof s === "object" && Array.isArray(s.values) && s.values.length <= this.size &&
      s.values.every((v) => typeof v === "number" && Number.isFinite(v)) && Number.isInteger(s.next) && (s.next as number) >= 0 && (s.next as number) < this.size;
    if (!ok) throw new Error(`${what}: invalid outlier window ${describeJson(raw)}`);
    this.values.fill(0);
    this.values.set(s.values as number[]);
    this.count = (s.values as number[]).length;
    this.next = s.next as number;
  }
}
