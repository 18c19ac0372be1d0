// llm.c's model checkpoint (gpt2_124M.bin and friends), read and written byte-compatibly:
// 256 little-endian int32 header words — [0] magic 20240326, [1] version (3 = fp32), [2] maxT,
// [3] V, [4] L, [5] NH, [6] C, [7] Vp — then the fp32 parameters in llm.c's order.
import { closeSync, fstatSync } from "node:fs";
import { type GPT2Config, validateConfig } from "../model/config.ts";
import { GPT2Weights, parameterCount } from "../model/weights.ts";
import { openForReading, writeFileAtomic } from "./atomic.ts";
import { CheckpointError, checkFinite, readCheckpointBytes } from "./checks.ts";

export const LLMC_MODEL_MAGIC = 20240326;
export const LLMC_MODEL_VERSION_FP32 = 3;
export const LLMC_MODEL_VERSION_BF16 = 5;
const HEADER_BYTES = 256 * 4;

export function readLlmcHeader(fd: number, path: string, fileBytes: number): GPT2Config {
  if (fileBytes < HEADER_BYTES) throw new CheckpointError(`${path}: ${fileBytes} bytes is shorter than the 1024-byte llm.c header`);
  const header = new Int32Array(256);
  readCheckpointBytes(fd, new Uint8Array(header.buffer), 0, path, "the header");
  if (header[0] !== LLMC_MODEL_MAGIC) throw new CheckpointError(`${path}: header magic is ${header[0]}, an llm.c model file has ${LLMC_MODEL_MAGIC}`);
  if (header[1] === LLMC_MODEL_VERSION_BF16) throw new CheckpointError(`${path}: header version 5 (bf16 weights) is not supported; llm.ts reads version 3 (fp32)`);
  if (header[1] !== LLMC_MODEL_VERSION_FP32) throw new CheckpointError(`${path}: header version is ${header[1]}, expected 3 (fp32)`);
  const config: GPT2Config = { maxT: header[2], V: header[3], L: header[4], NH: header[5], C: header[6], Vp: header[7] };
  try {
    validateConfig(config, `${path}: header`);
  } catch (error) {
    throw new CheckpointError((error as Error).message);
  }
  return config;
}

/** Reads an llm.c fp32 model checkpoint, validating the header, the size and every value. */
export function readLlmcCheckpoint(path: string): GPT2Weights {
  const fd = openForReading(path, (message) => new CheckpointError(message));
  try {
    const fileBytes = fstatSync(fd).size;
    const config = readLlmcHeader(fd, path, fileBytes);
    const expected = HEADER_BYTES + parameterCount(config) * 4;
    if (fileBytes < expected) throw new CheckpointError(`${path}: truncated: ${fileBytes} bytes, the header's shapes need ${expected}`);
    if (fileBytes > expected) throw new CheckpointError(`${path}: ${fileBytes} bytes, but the header's shapes need exactly ${expected} (${fileBytes - expected} extra)`);
    const weights = new GPT2Weights(config);
    readCheckpointBytes(fd, new Uint8Array(weights.params.buffer), HEADER_BYTES, path, "the parameters");
    checkFinite(weights, path);
    return weights;
  } finally {
    closeSync(fd);
  }
}

export function llmcHeader(config: GPT2Config): Int32Array {
  const header = new Int32Array(256);
  header.set([LLMC_MODEL_MAGIC, LLMC_MODEL_VERSION_FP32, config.maxT, config.V, config.L, config.NH, config.C, config.Vp]);
  return header;
}

/** Writes an llm.c fp32 model checkpoint atomically (temp file, fsync, rename). */
export function writeLlmcCheckpoint(path: string, weights: GPT2Weights): void {
  writeFileAtomic(path, [llmcHeader(weights.config), weights.params]);
}
