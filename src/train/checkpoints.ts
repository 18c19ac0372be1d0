// The trainer's use of its run folder: which checkpoint --resume names, and pruning old ones.
import { existsSync, statSync } from "node:fs";
import { UsageError } from "../base/errors.ts";
import { removeFile } from "../io/atomic.ts";
import { listCheckpoints, newestCheckpoint } from "../io/run_folder.ts";

/** --resume PATH|latest → a checkpoint path, or a usage error saying what is missing. */
export function resolveResume(value: string, dir: string): string {
  if (value === "latest") {
    const newest = newestCheckpoint(dir);
    if (newest === null) throw new UsageError(`--resume: no checkpoints (ckpt_*.llmts) in ${dir}`);
    return newest;
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
    removeFile(path);
    removed.push(path);
  }
  return removed;
}
