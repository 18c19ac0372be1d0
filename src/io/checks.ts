// What every weight reader shares: the error type for a bad weights file, exact reads that name the
// file, and the check that no weight is NaN or ±Inf.
import { InputError } from "../base/errors.ts";
import { readExactly } from "../base/read.ts";
import type { GPT2Weights } from "../model/weights.ts";

/** A weights or checkpoint file that is missing, damaged or of another kind. */
export class CheckpointError extends InputError {
  override name = "CheckpointError";
}

/** Reads exactly `bytes.length` bytes at `position`, or throws a CheckpointError naming the file. */
export function readCheckpointBytes(fd: number, bytes: Uint8Array, position: number, path: string, what: string): void {
  readExactly(fd, bytes, position, path, what, (message) => new CheckpointError(message));
}

/** Throws naming the tensor and index of the first NaN or Inf. */
export function checkFinite(weights: GPT2Weights, path: string): void {
  const bad = weights.firstNonFinite();
  if (bad !== null) throw new CheckpointError(`${path}: tensor ${bad.tensor} has a non-finite value (${bad.value}) at element ${bad.index}`);
}
