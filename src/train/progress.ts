// Progress output: a one-line bar redrawn in place on a terminal, plain lines otherwise (logs, CI,
// pipes). Messages (evals, samples, checkpoints) go on their own lines above the bar.

export interface StepStatus {
  step: number;
  steps: number;
  loss: number;
  lr: number;
  gradNorm: number;
  ms: number;
  tokensPerS: number;
  etaS: number;
  mfu: number;
  valLoss: number | null;
}

export class Progress {
  private readonly tty: boolean;
  private barShown = false;
  private lastDraw = 0;

  constructor(private readonly out: NodeJS.WriteStream = process.stderr) {
    this.tty = out.isTTY === true && process.env.TERM !== "dumb";
  }

  step(s: StepStatus): void {
    if (!this.tty) {
      this.out.write(
        `step ${s.step}/${s.steps} | loss ${s.loss.toFixed(4)} | lr ${s.lr.toExponential(2)} | norm ${s.gradNorm.toFixed(3)} | ` +
          `${s.ms.toFixed(0)} ms | ${Math.round(s.tokensPerS)} tok/s | MFU ${(s.mfu * 100).toFixed(1)}% | ETA ${duration(s.etaS)}\n`,
      );
      return;
    }
    const now = performance.now();
    if (now - this.lastDraw < 100 && s.step !== s.steps) return;
    this.lastDraw = now;
    const val = s.valLoss === null ? "" : ` (val ${s.valLoss.toFixed(3)})`;
    const text = ` ${s.step}/${s.steps} loss ${s.loss.toFixed(3)}${val} | ETA ${duration(s.etaS)} | ${Math.round(s.tokensPerS)} tok/s | MFU ${(s.mfu * 100).toFixed(1)}%`;
    const columns = this.out.columns ?? 100;
    const width = Math.max(0, Math.min(30, columns - 1 - text.length));
    const filled = Math.round((s.step / s.steps) * width);
    const line = "█".repeat(filled) + "░".repeat(width - filled) + text;
    this.out.write(`\r\x1b[2K${line.slice(0, columns - 1)}`);
    this.barShown = true;
  }

  /** A message on its own line(s). */
  message(text: string): void {
    if (this.barShown) this.out.write("\r\x1b[2K");
    this.out.write(text.endsWith("\n") ? text : `${text}\n`);
    this.barShown = false;
  }

  /** Leaves the bar's last state on screen. */
  finish(): void {
    if (this.barShown) this.out.write("\n");
    this.barShown = false;
  }
}

export function duration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return "?";
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
}
