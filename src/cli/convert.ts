// bun run convert --from PATH --to PATH [--format llmc|hf]
// Converts GPT-2 weights between an llm.c model file and a Hugging Face folder (config.json +
// model.safetensors); the source may also be an llm.ts training checkpoint (its parameters only).
// Without --format, a --to ending in ".bin" means llm.c, anything else a Hugging Face folder.
// Exit codes: 0 done, 2 bad arguments or unreadable/invalid source, 1 anything unexpected.
import { parseArgs } from "node:util";
import { writeHuggingFaceFolder } from "../io/hf.ts";
import { CheckpointError, writeLlmcCheckpoint } from "../io/llmc.ts";
import { detectWeightsFormat, loadWeights } from "../io/load_weights.ts";
import { parameterCount } from "../model/config.ts";

const HELP = `usage: bun run convert --from PATH --to PATH [--format llmc|hf]

  --from PATH     llm.c model file, llm.ts checkpoint, or Hugging Face GPT-2 folder
  --to PATH       output: an llm.c model file, or a folder for Hugging Face format
  --format F      llmc or hf (default: llmc when --to ends in .bin, else hf)`;

class UsageError extends Error {}

function main(argv: string[]): number {
  try {
    const { values } = parseArgs({
      args: argv,
      options: { from: { type: "string" }, to: { type: "string" }, format: { type: "string" }, help: { type: "boolean", default: false } },
      strict: true,
    });
    if (values.help) {
      process.stdout.write(`${HELP}\n`);
      return 0;
    }
    if (values.from === undefined || values.to === undefined) throw new UsageError("--from PATH and --to PATH are required");
    const format = values.format ?? (values.to.endsWith(".bin") ? "llmc" : "hf");
    if (format !== "llmc" && format !== "hf") throw new UsageError(`--format must be llmc or hf, got "${format}"`);
    const start = performance.now();
    const sourceFormat = detectWeightsFormat(values.from);
    const { config, params } = loadWeights(values.from);
    if (format === "llmc") writeLlmcCheckpoint(values.to, config, params);
    else writeHuggingFaceFolder(values.to, config, params);
    const { maxT, V, L, NH, C } = config;
    process.stderr.write(
      `convert: ${sourceFormat} ${values.from} → ${format} ${values.to}: L=${L} NH=${NH} C=${C} V=${V} maxT=${maxT}, ` +
        `${(parameterCount(config) / 1e6).toFixed(1)}M parameters, ${((performance.now() - start) / 1000).toFixed(2)} s\n`,
    );
    return 0;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (error instanceof UsageError || error instanceof CheckpointError || (typeof code === "string" && code.startsWith("ERR_PARSE_ARGS"))) {
      process.stderr.write(`convert: ${(error as Error).message}\n`);
      return 2;
    }
    throw error;
  }
}

process.exitCode = main(process.argv.slice(2));
