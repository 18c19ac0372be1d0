// bun run convert --from PATH --to PATH [--format llmc|hf]
// Converts GPT-2 weights between an llm.c model file and a Hugging Face folder (config.json +
// model.safetensors); the source may also be an llm.ts training checkpoint or a run folder (its
// newest checkpoint; the parameters only). Without --format, a --to ending in ".bin" means llm.c,
// anything else a Hugging Face folder. Exit codes (src/base/errors.ts): 0 done, 2 bad arguments or
// an unreadable/invalid source, 1 anything else.
import { parseArgs } from "node:util";
import { EXIT } from "../base/errors.ts";
import { writeHuggingFaceFolder } from "../io/hf.ts";
import { writeLlmcCheckpoint } from "../io/llmc.ts";
import { loadWeights, resolveWeightsPath } from "../io/load_weights.ts";
import { parameterCount } from "../model/weights.ts";
import { choiceFlag, nonEmptyFlag, runCli, UsageError } from "./flags.ts";

const HELP = `usage: bun run convert --from PATH --to PATH [--format llmc|hf]

  --from PATH     llm.c model file, llm.ts checkpoint, Hugging Face GPT-2 folder, or run folder
  --to PATH       output: an llm.c model file, or a folder for Hugging Face format
  --format F      llmc or hf (default: llmc when --to ends in .bin, else hf)`;

export function main(argv: string[]): number {
  const { values } = parseArgs({
    args: argv,
    options: { from: { type: "string" }, to: { type: "string" }, format: { type: "string" }, help: { type: "boolean", short: "h", default: false } },
    strict: true,
  });
  if (values.help) {
    process.stdout.write(`${HELP}\n`);
    return EXIT.done;
  }
  if (values.from === undefined || values.to === undefined) throw new UsageError("--from PATH and --to PATH are required");
  const from = nonEmptyFlag("from", values.from), to = nonEmptyFlag("to", values.to);
  const format = values.format === undefined ? (to.endsWith(".bin") ? "llmc" : "hf") : choiceFlag("format", values.format, ["llmc", "hf"] as const);
  const start = performance.now();
  const source = resolveWeightsPath(from);
  const weights = loadWeights(from);
  if (format === "llmc") writeLlmcCheckpoint(to, weights);
  else writeHuggingFaceFolder(to, weights);
  const { maxT, V, L, NH, C } = weights.config;
  process.stderr.write(
    `convert: ${source.format} ${source.path} → ${format} ${to}: L=${L} NH=${NH} C=${C} V=${V} maxT=${maxT}, ` +
      `${(parameterCount(weights.config) / 1e6).toFixed(1)}M parameters, ${((performance.now() - start) / 1000).toFixed(2)} s\n`,
  );
  return EXIT.done;
}

if (import.meta.main) await runCli("convert", () => main(process.argv.slice(2)));
