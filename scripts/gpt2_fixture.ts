// Regenerates the PyTorch fixture of test/gpt2.test.ts:
//   bun scripts/gpt2_fixture.ts      (needs /usr/bin/python3 with torch; tests don't)
// 1. writes test/fixtures/gpt2_small.bin, an llm.c checkpoint of a small odd-sized GPT-2 whose
//    tensors are all random and not tiny (so attention is far from uniform, layernorm weights and
//    biases matter, and the padded rows of wte hold values that must NOT reach the loss);
// 2. runs scripts/torch_reference.py on it → test/fixtures/gpt2_ref.{json,bin}.
import { mkdirSync } from "node:fs";
import { join, resolve } from "node:path";
import { writeLlmcCheckpoint } from "../src/io/llmc.ts";
import type { GPT2Config } from "../src/model/config.ts";
import { randomWeights } from "../src/model/init.ts";

export const FIXTURE_CONFIG: GPT2Config = { maxT: 32, V: 300, Vp: 384, L: 2, NH: 3, C: 48 };
/** Matrices (residual projections too) N(0, 0.15), embeddings N(0, 0.3), biases N(0, 0.05), padded wte rows filled. */
export const FIXTURE_WEIGHTS = { std: 0.15, embeddingStd: 0.3, residualStd: 0.15, biasStd: 0.05, padRows: true };

if (import.meta.main) {
  const root = resolve(import.meta.dir, "..");
  const dir = join(root, "test", "fixtures");
  mkdirSync(dir, { recursive: true });
  const checkpoint = join(dir, "gpt2_small.bin");
  writeLlmcCheckpoint(checkpoint, randomWeights(FIXTURE_CONFIG, 20261128, FIXTURE_WEIGHTS));
  const proc = Bun.spawnSync(["/usr/bin/python3", join(root, "scripts", "torch_reference.py"), checkpoint, join(dir, "gpt2_ref"), "--B", "4", "--T", "16", "--seed", "7", "--steps", "10"], { stdout: "inherit", stderr: "inherit" });
  if (proc.exitCode !== 0) throw new Error(`torch_reference.py failed (exit ${proc.exitCode})`);
}
