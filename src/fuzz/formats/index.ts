// Every fuzzed format, in report order. `selftest` is only run when asked for by name.
import type { Format } from "../format.ts";
import { HF } from "./hf.ts";
import { LLMC_BF16, LLMC_FP32 } from "./llmc.ts";
import { LLMTS } from "./llmts.ts";
import { RUN_FOLDER } from "./run_folder.ts";
import { SELFTEST } from "./selftest.ts";
import { TOKENIZER } from "./tokenizer.ts";
import { TOKENS } from "./tokens.ts";

export const DEFAULT_FORMATS: Format[] = [LLMC_FP32, LLMC_BF16, TOKENS, TOKENIZER, LLMTS, HF, RUN_FOLDER];
export const ALL_FORMATS: Format[] = [...DEFAULT_FORMATS, SELFTEST];

export function formatNamed(name: string): Format | undefined {
  return ALL_FORMATS.find((f) => f.name === name);
}
