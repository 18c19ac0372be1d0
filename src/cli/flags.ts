// Shared command-line plumbing for every CLI: the typed flag values of src/base/flag_values.ts,
// --matmul-precision, and runCli, which maps errors to the exit codes of src/base/errors.ts
// (EXIT): bad input (any InputError: flags, files, prompts) exits 2 with a one-line message,
// anything else exits 1.
import { EXIT, InputError, UsageError } from "../base/errors.ts";
import { choiceFlag } from "../base/flag_values.ts";
import { bf16Unavailable, MATMUL_PRECISIONS, type MatmulPrecision, setMatmulPrecision } from "../ffi.ts";

export { UsageError };
export { choiceFlag, intFlag, intListFlag, nonEmptyFlag, numberFlag } from "../base/flag_values.ts";

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
