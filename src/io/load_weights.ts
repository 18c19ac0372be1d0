// One entry point for "give me GPT-2 weights from this path", whatever the format:
//   - an llm.c model checkpoint (the llm.c magic in the first int32)
//   - an llm.ts training checkpoint (src/io/llmts_checkpoint.ts)
//   - a Hugging Face GPT-2 folder (config.json + model.safetensors; src/io/hf.ts)
//   - a training run's folder (--ckpt-dir): its newest checkpoint
import { closeSync, existsSync, readSync, statSync } from "node:fs";
import { join } from "node:path";
import type { GPT2Weights } from "../model/weights.ts";
import { openForReading } from "./atomic.ts";
import { CheckpointError } from "./checks.ts";
import { HF_CONFIG_FILE, readHuggingFaceFolder } from "./hf.ts";
import { LLMC_MODEL_MAGIC, readLlmcCheckpoint } from "./llmc.ts";
import { LLMTS_MAGIC, readLlmtsCheckpoint } from "./llmts_checkpoint.ts";
import { newestCheckpoint } from "./run_folder.ts";

export type WeightsFormat = "llmc" | "llmts" | "hf";

/** The file (or HF folder) that holds the weights `path` names, and its format. */
export function resolveWeightsPath(path: string): { path: string; format: WeightsFormat } {
  if (!existsSync(path)) throw new CheckpointError(`${path}: no such file or folder`);
  if (statSync(path).isDirectory()) {
    if (existsSync(join(path, HF_CONFIG_FILE))) return { path, format: "hf" };
    const newest = newestCheckpoint(path);
    if (newest !== null) return { path: newest, format: "llmts" };
    throw new CheckpointError(`${path}: a folder with neither ${HF_CONFIG_FILE} (a Hugging Face GPT-2 folder) nor ckpt_*.llmts checkpoints (a training run)`);
  }
  const head = new Uint8Array(8);
  const fd = openForReading(path, (message) => new CheckpointError(message));
  let got: number;
  try {
    got = readSync(fd, head, 0, 8, 0);
  } finally {
    closeSync(fd);
  }
  const magic = got >= 4 ? new DataView(head.buffer).getInt32(0, true) : null;
  if (magic === LLMC_MODEL_MAGIC) return { path, format: "llmc" };
  if (got === 8 && new TextDecoder("latin1").decode(head) === LLMTS_MAGIC) return { path, format: "llmts" };
  const seen = magic === null ? `only ${got} bytes` : `first int32 is ${magic}`;
  throw new CheckpointError(`${path}: not an llm.c model file, an llm.ts checkpoint, a Hugging Face GPT-2 folder or a run folder (${seen})`);
}

export function loadWeights(path: string): GPT2Weights {
  const resolved = resolveWeightsPath(path);
  switch (resolved.format) {
    case "llmc":
      return readLlmcCheckpoint(resolved.path);
    case "llmts":
      return readLlmtsCheckpoint(resolved.path, { optimizer: false }).weights;
    case "hf":
      return readHuggingFaceFolder(resolved.path);
  }
}
