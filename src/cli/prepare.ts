// bun run prepare <text files or folders> --out <dir>: tokenize text into llm.c token shards.
import { parseArgs } from "node:util";
import { prepareDataset } from "../data/prepare.ts";
import { intFlag, nonEmptyFlag, numberFlag, runCli, UsageError } from "./flags.ts";

const HELP = `usage: bun run prepare <text files or folders…> --out <dir> [options]

Tokenizes text with GPT-2's BPE (tiktoken) into llm.c token files for \`bun run train\`.
Each file is one document, preceded by <|endoftext|>; folders are read recursively in sorted
order (hidden entries skipped); files must be UTF-8.
Validation is the LAST --val-fraction of the concatenated token stream (a token-level cut, so a
single book still gets both splits).

options:
  --out DIR              output folder (required): train_000000.bin…, val_000000.bin…,
                         gpt2_tokenizer.bin (llm.c's tokenizer file), prepare.json
  --val-fraction X       fraction of tokens for validation, in [0, 1)   (default 0.1)
  --shard-tokens N       maximum tokens per shard file                   (default 100000000)
  -h, --help             this help
`;

export async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    strict: true,
    options: {
      out: { type: "string" },
      "val-fraction": { type: "string", default: "0.1" },
      "shard-tokens": { type: "string", default: "100000000" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  if (values.out === undefined) throw new UsageError("--out: required (the output folder)");
  const outDir = nonEmptyFlag("out", values.out);
  const valFraction = numberFlag("val-fraction", values["val-fraction"]!, 0, 1, { maxExclusive: true });
  const shardTokens = intFlag("shard-tokens", values["shard-tokens"]!, 1, 0x7fffffff);
  if (positionals.length === 0) throw new UsageError("no input files or folders given");
  const summary = prepareDataset({
    inputs: positionals, outDir, valFraction, shardTokens,
    onProgress: (message) => process.stderr.write(`${message}\n`),
  });
  const mbps = summary.bytes / 1e6 / summary.tokenizeSeconds;
  process.stderr.write(
    `prepared ${summary.documents} documents, ${summary.tokens.toLocaleString("en-US")} tokens ` +
      `(train ${summary.trainTokens.toLocaleString("en-US")}, val ${summary.valTokens.toLocaleString("en-US")}) in ${summary.seconds.toFixed(2)} s; ` +
      `encoding took ${summary.tokenizeSeconds.toFixed(3)} s (${mbps.toFixed(1)} MB/s; loading the tokenizer ${summary.loadSeconds.toFixed(3)} s)\n`,
  );
  return 0;
}

// "prepare" is also an npm lifecycle name: `bun install` (and npm) run it after installing, with
// no arguments. That is not a user asking for data: do nothing then. (`bun run prepare` sets
// npm_command=run-script; an install does not.)
const installHook = process.env.npm_lifecycle_event === "prepare" && process.env.npm_command !== "run-script" && process.argv.length <= 2;
if (import.meta.main && !installHook) await runCli("prepare", () => main(process.argv.slice(2)));
