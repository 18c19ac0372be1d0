// node:util's parseArgs for the benchmarks, with a bad flag reported as one line and exit status 2
// (like the CLIs, src/cli/flags.ts) instead of an uncaught exception's stack trace.
import { basename } from "node:path";
import { type ParseArgsConfig, parseArgs } from "node:util";
import { EXIT } from "../src/base/errors.ts";

export function parseBenchArgs<T extends ParseArgsConfig>(config: T): ReturnType<typeof parseArgs<T>> {
  try {
    return parseArgs(config);
  } catch (error) {
    if (!(error as { code?: string }).code?.startsWith("ERR_PARSE_ARGS")) throw error;
    const script = `bench/${basename(process.argv[1] ?? "")}`;
    process.stderr.write(`${script}: ${(error as Error).message}\n(usage: the comment at the top of ${script})\n`);
    process.exit(EXIT.badInput);
  }
}
