// One entry point for "give me GPT-2 weights from this path", whatever the format:
//   - an llm.c model checkpoint (magic 20240326 in the first int32)
//   - an llm.ts training checkpoint (src/io/llmts_checkpoint.ts)
//   - a Hugging Face GPT-2 folder (config.json + model.safetensors; src/io/hf.ts)
import { closeSync, existsSync, openSync, readSync, statSync } from "node:fs";
import { readHuggingFaceFolder } from "./hf.ts";
import { CheckpointError, LLMC_MODEL_MAGIC, type LoadedWeights, readLlmcCheckpoint } from "./llmc.ts";
import { readLlmtsCheckpoint } from "./llmts_checkpoint.ts";

export type WeightsFormat = "llmc" | "llmts" | "hf";

/** Sniffs the format of `path` from its first bytes (or its folder contents). */
export function detectWeightsFormat(path: string): WeightsFormat {
  if (!existsSync(path)) throw new CheckpointError(`${path}: no such file or folder`);
  if (statSync(path).isDirectory()) {
    return "hf";
  }
  const head = new Uint8Array(8);
  const fd = openSync(path, "r");
  try {
    readSync(fd, head, 0, 8, 0);
  } finally {
    closeSync(fd);
  }
  const magic = new DataView(head.buffer).getInt32(0, true);
  if (magic === LLMC_MODEL_MAGIC) return "llmc";
  if (new TextDecoder().decode(head) === "LLMTSCKP") return "llmts";
  throw new CheckpointError(`${path}: not an llm.c model file, an llm.ts checkpoint or a Hugging Face GPT-2 folder (first int32 is ${magic})`);
}

export function loadWeights(path: string): LoadedWeights {
  const format = detectWeightsFormat(path);
  switch (format) {
    case "llmc":
      return readLlmcCheckpoint(path);
    case "llmts":
      return readLlmtsCheckpoint(path, { optimizer: false });
    case "hf":
      return readHuggingFaceFolder(path);
  }
}
