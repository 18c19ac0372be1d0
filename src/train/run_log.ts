// The run's JSONL log (one object per step and per evaluation) and the SVG loss curve beside it.
import { existsSync, readFileSync, statSync } from "node:fs";
import { InputError } from "../base/errors.ts";
import { dirname } from "node:path";
import { appendText, makeFolder, writeFileAtomic } from "../io/atomic.ts";

export interface StepRecord {
  step: number;
  loss: number;
  lr: number;
  grad_norm: number;
  ms: number;
  tokens_per_s: number;
  /** why the update was skipped (the outlier guard), when it was */
  skipped?: string;
  /** data-parallel runs (rank 0's view): time with communication in flight, and the part the computation did not hide */
  comm_ms?: number;
  comm_exposed_ms?: number;
}
export interface EvalRecord {
  step: number;
  val_loss: number;
}
type Record_ = StepRecord | EvalRecord;

export class RunLog {
  readonly path: string;
  readonly svgPath: string;
  readonly train: Array<[number, number]> = [];
  readonly val: Array<[number, number]> = [];
  private lastSvg = 0;

  /**
   * Opens the log. Fresh: the file is emptied. Resuming at `resumeStep`: entries up to that step
   * are kept (and plotted), later ones (from the interrupted tail of the earlier run) are dropped.
   * `writes` false (the ranks other than 0 of a data-parallel run): never touches the files.
   */
  constructor(path: string, resumeStep: number | null, readonly writes = true) {
    this.path = path;
    this.svgPath = path.replace(/\.jsonl?$/i, "") + ".svg";
    if (!writes) return;
    makeFolder(dirname(path));
    const kept: string[] = [];
    if (existsSync(path) && !statSync(path).isFile()) throw new InputError(`--log: ${path} exists and is not a regular file`);
    if (resumeStep !== null && existsSync(path)) {
      for (const line of readFileSync(path, "utf8").split("\n")) {
        const record = parseRecord(line);
        // A line cut short by a crash, or one that is not ours, is dropped.
        if (record === null || record.step > resumeStep) continue;
        kept.push(line);
        this.remember(record);
      }
    }
    writeFileAtomic(path, [new TextEncoder().encode(kept.map((l) => l + "\n").join(""))]);
  }

  private remember(record: Record_): void {
    if ("val_loss" in record) this.val.push([record.step, record.val_loss]);
    else this.train.push([record.step, record.loss]);
  }

  append(record: Record_): void {
    if (!this.writes) return;
    appendText(this.path, JSON.stringify(record) + "\n");
    this.remember(record);
  }

  /** Rewrites the SVG, at most every `minIntervalMs` unless forced. */
  refreshSvg(force = false, minIntervalMs = 5000): void {
    const now = performance.now();
    if (!this.writes || (!force && now - this.lastSvg < minIntervalMs)) return;
    this.lastSvg = now;
    writeFileAtomic(this.svgPath, [new TextEncoder().encode(lossCurveSvg(this.train, this.val))]);
  }
}

/** A log line as one of our records, or null (not JSON, or not a step/eval record with finite numbers). */
function parseRecord(line: string): Record_ | null {
  if (line.trim() === "") return null;
  let raw: unknown;
  try {
    raw = JSON.parse(line);
  } catch {
    return null;
  }
  if (raw === null || typeof raw !== "object" || Array.isArray(raw)) return null;
  const r = raw as Record<string, unknown>;
  if (!Number.isSafeInteger(r.step) || (r.step as number) < 0) return null;
  if (typeof r.val_loss === "number" && Number.isFinite(r.val_loss)) return r as unknown as EvalRecord;
  if (typeof r.loss === "number" && Number.isFinite(r.loss)) return r as unknown as StepRecord;
  return null;
}

/** A self-contained SVG line chart of train and val loss against step. */
export function lossCurveSvg(train: Array<[number, number]>, val: Array<[number, number]>, width = 720, height = 420): string {
  const m = { left: 60, right: 20, top: 30, bottom: 45 };
  const w = width - m.left - m.right;
  const h = height - m.top - m.bottom;
  const finite = [...train, ...val].filter(([, y]) => Number.isFinite(y));
  const xs = finite.map(([x]) => x);
  const ys = finite.map(([, y]) => y);
  const xMin = Math.min(0, ...xs);
  const xMax = Math.max(xMin + 1, ...xs);
  let yMin = ys.length ? Math.min(...ys) : 0;
  let yMax = ys.length ? Math.max(...ys) : 1;
  if (yMax - yMin < 1e-6) (yMin -= 0.5), (yMax += 0.5);
  const pad = (yMax - yMin) * 0.05;
  yMin -= pad;
  yMax += pad;
  const sx = (x: number) => m.left + ((x - xMin) / (xMax - xMin)) * w;
  const sy = (y: number) => m.top + (1 - (y - yMin) / (yMax - yMin)) * h;
  const path = (points: Array<[number, number]>) =>
    points.filter(([, y]) => Number.isFinite(y)).map(([x, y], i) => `${i === 0 ? "M" : "L"}${sx(x).toFixed(1)},${sy(y).toFixed(1)}`).join("");
  const parts: string[] = [];
  parts.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">`);
  parts.push(`<rect width="${width}" height="${height}" fill="white"/>`);
  for (const t of ticks(yMin, yMax, 6)) {
    parts.push(`<line x1="${m.left}" x2="${m.left + w}" y1="${sy(t).toFixed(1)}" y2="${sy(t).toFixed(1)}" stroke="#e5e5e5"/>`);
    parts.push(`<text x="${m.left - 6}" y="${(sy(t) + 4).toFixed(1)}" text-anchor="end" fill="#444">${fmt(t)}</text>`);
  }
  for (const t of ticks(xMin, xMax, 8)) {
    parts.push(`<line x1="${sx(t).toFixed(1)}" x2="${sx(t).toFixed(1)}" y1="${m.top}" y2="${m.top + h}" stroke="#f0f0f0"/>`);
    parts.push(`<text x="${sx(t).toFixed(1)}" y="${m.top + h + 16}" text-anchor="middle" fill="#444">${fmt(t)}</text>`);
  }
  parts.push(`<rect x="${m.left}" y="${m.top}" width="${w}" height="${h}" fill="none" stroke="#888"/>`);
  parts.push(`<text x="${m.left + w / 2}" y="${height - 8}" text-anchor="middle" fill="#222">step</text>`);
  parts.push(`<text x="14" y="${m.top + h / 2}" text-anchor="middle" fill="#222" transform="rotate(-90 14 ${m.top + h / 2})">loss</text>`);
  if (train.length > 0) {
    // Per-step losses are noisy: the raw series faint, a moving average over ~2% of the steps on top.
    parts.push(`<path class="train" d="${path(train)}" fill="none" stroke="#1f77b4" stroke-opacity="0.3" stroke-width="1"/>`);
    if (train.length >= 20) parts.push(`<path class="train-smooth" d="${path(movingAverage(train, Math.max(5, Math.round(train.length / 50))))}" fill="none" stroke="#1f77b4" stroke-width="1.8"/>`);
  }
  if (val.length > 0) {
    parts.push(`<path class="val" d="${path(val)}" fill="none" stroke="#d62728" stroke-width="2"/>`);
    for (const [x, y] of val) if (Number.isFinite(y)) parts.push(`<circle cx="${sx(x).toFixed(1)}" cy="${sy(y).toFixed(1)}" r="2.5" fill="#d62728"/>`);
  }
  const lastTrain = train.length ? ` ${fmt(train[train.length - 1][1])}` : "";
  const lastVal = val.length ? ` ${fmt(val[val.length - 1][1])}` : "";
  parts.push(`<text x="${m.left + 8}" y="${m.top - 10}" fill="#1f77b4">— train${lastTrain}</text>`);
  parts.push(`<text x="${m.left + 130}" y="${m.top - 10}" fill="#d62728">— val${lastVal}</text>`);
  parts.push("</svg>\n");
  return parts.join("\n");
}

/** Trailing mean over `window` points (finite values only). */
function movingAverage(points: Array<[number, number]>, window: number): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  let sum = 0, n = 0;
  const finite = points.filter(([, y]) => Number.isFinite(y));
  for (let i = 0; i < finite.length; i++) {
    sum += finite[i][1];
    n++;
    if (i >= window) (sum -= finite[i - window][1]), n--;
    out.push([finite[i][0], sum / n]);
  }
  return out;
}

function ticks(lo: number, hi: number, count: number): number[] {
  const raw = (hi - lo) / count;
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((k) => k * magnitude).find((s) => s >= raw) ?? raw;
  const out: number[] = [];
  for (let t = Math.ceil(lo / step) * step; t <= hi + 1e-9; t += step) out.push(Number(t.toPrecision(12)));
  return out;
}

function fmt(x: number): string {
  return Math.abs(x) >= 1000 || Number.isInteger(x) ? String(Math.round(x)) : x.toFixed(Math.abs(x) < 1 ? 3 : 2);
}
