// Shared command-line plumbing: typed flag values with errors that name the flag, and the exit
// code convention (2 = bad usage or bad input files, before any work; 1 = failure during work).
import { DataError } from "../data/loader.ts";
import { PrepareError } from "../data/prepare.ts";
import { TokenFileError } from "../data/token_file.ts";
import { TokenizerFileError } from "../data/tokenizer_file.ts";
import { CheckpointError } from "../io/llmc.ts";
import { SafetensorsError } from "../io/safetensors.ts";

export class UsageError extends Error {
  override name = "UsageError";
}

export const EXIT_USAGE = 2;

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

/** The readers' errors: a file given to the command is unreadable or invalid (the message names it). */
const BAD_INPUT_ERRORS = [CheckpointError, SafetensorsError, TokenFileError, TokenizerFileError, DataError, PrepareError];

/** Runs a CLI main: usage errors and bad input files exit 2 with the message, other errors exit 1. */
export async function runCli(main: () => Promise<number | void> | number | void): Promise<never> {
  try {
    const code = await main();
    process.exit(code ?? 0);
  } catch (error) {
    if (error instanceof UsageError || (error as { code?: string }).code?.startsWith("ERR_PARSE_ARGS")) {
      process.stderr.write(`error: ${(error as Error).message}\n(see --help)\n`);
      process.exit(EXIT_USAGE);
    }
    if (BAD_INPUT_ERRORS.some((E) => error instanceof E)) {
      process.stderr.write(`error: ${(error as Error).message}\n`);
      process.exit(EXIT_USAGE);
    }
    process.stderr.write(`error: ${(error as Error).message}\n`);
    if (process.env.LLMTS_DEBUG) process.stderr.write(`${(error as Error).stack}\n`);
    process.exit(1);
  }
}
