// Typed flag values: each parser returns the value or throws a UsageError that names the flag, the
// value given and what was expected. Shared by the CLIs (src/cli/flags.ts) and the flag table of
// the trainer (src/train/options.ts), which is why it lives below both.
import { UsageError } from "./errors.ts";

function fail(flag: string, value: string, want: string): never {
  throw new UsageError(`--${flag}: expected ${want}, got ${JSON.stringify(value)}`);
}

/** Integer in [min, max]; accepts 1e6 and 1_000_000 style spellings. */
export function intFlag(flag: string, value: string, min: number, max = Number.MAX_SAFE_INTEGER): number {
  const trimmed = value.trim().replaceAll("_", "");
  const n = trimmed === "" ? NaN : Number(trimmed);
  const want = max === Number.MAX_SAFE_INTEGER ? `an integer ≥ ${min}` : `an integer from ${min} to ${max}`;
  if (!Number.isSafeInteger(n) || n < min || n > max) fail(flag, value, want);
  return n;
}

/** Finite number in [min, max] (exclusive bounds when asked). */
export function numberFlag(flag: string, value: string, min: number, max: number, opts: { minExclusive?: boolean; maxExclusive?: boolean } = {}): number {
  const trimmed = value.trim();
  const n = trimmed === "" ? NaN : Number(trimmed);
  const lo = opts.minExclusive ? `> ${min}` : `≥ ${min}`;
  const hi = max === Infinity ? "" : opts.maxExclusive ? ` and < ${max}` : ` and ≤ ${max}`;
  const ok = Number.isFinite(n) && (opts.minExclusive ? n > min : n >= min) && (opts.maxExclusive ? n < max : n <= max);
  if (!ok) fail(flag, value, `a number ${lo}${hi}`);
  return n;
}

export function choiceFlag<T extends string>(flag: string, value: string, choices: readonly T[]): T {
  if (!(choices as readonly string[]).includes(value)) fail(flag, value, `one of ${choices.join(", ")}`);
  return value as T;
}

export function nonEmptyFlag(flag: string, value: string): string {
  if (value.trim() === "") fail(flag, value, "a non-empty value");
  return value;
}

/** A comma-separated list of integers in [min, max] ("1,2, 3"). */
export function intListFlag(flag: string, value: string, min: number, max: number): number[] {
  const parts = value.split(",").map((s) => s.trim()).filter((s) => s !== "");
  if (parts.length === 0) fail(flag, value, "a comma-separated list of integers");
  return parts.map((part) => {
    if (!/^-?\d+$/.test(part)) fail(flag, value, `integers from ${min} to ${max}, separated by commas ("${part}" is not one)`);
    const n = Number(part);
    if (n < min || n > max) fail(flag, value, `integers from ${min} to ${max} (${part} is not)`);
    return n;
  });
}
