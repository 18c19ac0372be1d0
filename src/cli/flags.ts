// Shared command-line plumbing for every CLI: typed flag values with errors that name the flag,
// and runCli, which maps errors to the exit codes of src/base/errors.ts (EXIT): bad input (any
// InputError: flags, files, prompts) exits 2 with a one-line message, anything else exits 1.
import { EXIT, InputError, UsageError } from "../base/errors.ts";
import { bf16Unavailable, MATMUL_PRECISIONS, type MatmulPrecision, setMatmulPrecision } from "../ffi.ts";

export { UsageError };

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

/**
 * --matmul-precision: parses it and sets it for every matmul of this process; bf16 where the CPU
 * or the build cannot run it is a usage error saying why.
 */
export function applyMatmulPrecisionFlag(value: string | undefined): MatmulPrecision {
  const precision = value === undefined ? "fp32" : choiceFlag("matmul-precision", value, MATMUL_PRECISIONS);
  const problem = precision === "bf16" ? bf16Unavailable() : null;
  if (problem !== null) throw new UsageError(`--matmul-precision bf16: ${problem}`);
  setMatmulPrecision(precision);
  return precision;
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

/**
 * Runs a CLI main and exits with its code: bad input (InputError, node:util parseArgs errors)
 * exits 2 with the message, anything else 1 (LLMTS_DEBUG=1 adds the stack).
 */
export async function runCli(name: string, main: () => Promise<number | void> | number | void): Promise<never> {
  try {
    const code = await main();
    process.exit(code ?? EXIT.done);
  } catch (error) {
    const message = (error as Error).message;
    if (error instanceof UsageError || (error as { code?: string }).code?.startsWith("ERR_PARSE_ARGS")) {
      process.stderr.write(`${name}: ${message}\n(see --help)\n`);
      process.exit(EXIT.badInput);
    }
    if (error instanceof InputError) {
      process.stderr.write(`${name}: ${message}\n`);
      process.exit(EXIT.badInput);
    }
    process.stderr.write(`${name}: error: ${message}\n`);
    if (process.env.LLMTS_DEBUG) process.stderr.write(`${(error as Error).stack}\n`);
    process.exit(EXIT.failure);
  }
}
