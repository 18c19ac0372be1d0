// Checkpoint files of a run: <dir>/ckpt_<step, 8 digits>.llmts, found, resolved and pruned here.
import { existsSync, readdirSync, statSync, unlinkSync } from "node:fs";
import { join } from "node:path";
import { UsageError } from "../cli/flags.ts";

const NAME = /^ckpt_(\d{8,})\.llmts$/;

export function checkpointPath(dir: string, step: number): string {
  return join(dir, `ckpt_${String(step).padStart(8, "0")}.llmts`);
}

/** Checkpoints in `dir`, oldest (lowest step) first. */
export function listCheckpoints(dir: string): Array<{ step: number; path: string }> {
  if (!existsSync(dir)) return [];
  const out: Array<{ step: number; path: string }> = [];
  for (const name of readdirSync(dir)) {
    const match = NAME.exec(name);
    if (match) out.push({ step: Number(match[1]), path: join(dir, name) });
  }
  return out.sort((a, b) => a.step - b.step);
}

/** --resume PATH|latest → a checkpoint path, or a usage error saying what is missing. */
export function resolveResume(value: string, dir: string): string {
  if (value === "latest") {
    const all = listCheckpoints(dir);
    if (all.length === 0) throw new UsageError(`--resume: no checkpoints (ckpt_*.llmts) in ${dir}`);
    return all[all.length - 1].path;
  }
  if (!existsSync(value) || !statSync(value).isFile()) throw new UsageError(`--resume: ${value} is not a file (give a checkpoint path or "latest")`);
  return value;
}

/** Deletes all but the newest `keep` checkpoints (keep = 0: keep all). */
export function pruneCheckpoints(dir: string, keep: number): string[] {
  if (keep === 0) return [];
  const all = listCheckpoints(dir);
  const removed: string[] = [];
  for (const { path } of all.slice(0, Math.max(0, all.length - keep))) {
    unlinkSync(path);
    removed.push(path);
  }
  return removed;
}
