// A training run's folder (--ckpt-dir): checkpoints named ckpt_<step, 8+ digits>.llmts beside the
// run's log. Readers (generate, convert, train --resume latest) find the newest checkpoint here.
import { existsSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";

const CHECKPOINT_NAME = /^ckpt_(\d{8,})\.llmts$/;

export function checkpointPath(dir: string, step: number): string {
  return join(dir, `ckpt_${String(step).padStart(8, "0")}.llmts`);
}

/** Checkpoints (regular files) in `dir`, oldest (lowest step) first; [] when the folder does not exist. */
export function listCheckpoints(dir: string): Array<{ step: number; path: string }> {
  return checkpointEntries(dir).filter((e) => e.isFile).map(({ step, path }) => ({ step, path }));
}

/** Everything in `dir` named like a checkpoint, files or not (a folder there blocks a write). */
export function checkpointEntries(dir: string): Array<{ step: number; path: string; isFile: boolean }> {
  if (!existsSync(dir) || !statSync(dir).isDirectory()) return [];
  const out: Array<{ step: number; path: string; isFile: boolean }> = [];
  for (const name of readdirSync(dir)) {
    const match = CHECKPOINT_NAME.exec(name);
    if (match) out.push({ step: Number(match[1]), path: join(dir, name), isFile: statSync(join(dir, name)).isFile() });
  }
  return out.sort((a, b) => a.step - b.step);
}

/** The newest (highest step) checkpoint in `dir`, or null when it holds none. */
export function newestCheckpoint(dir: string): string | null {
  const all = listCheckpoints(dir);
  return all.length === 0 ? null : all[all.length - 1].path;
}
