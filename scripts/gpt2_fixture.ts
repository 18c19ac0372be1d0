// Regenerates the PyTorch fixture of test/gpt2.test.ts:
//   bun scripts/gpt2_fixture.ts      (needs /usr/bin/python3 with torch; tests don't)
// 1. writes test/fixtures/gpt2_small.bin, an llm.c checkpoint of a small odd-sized GPT-2 whose
//    tensors are all random and not tiny (so attention is far from uniform, layernorm weights and
//    biases matter, and the padded rows of wte hold values that must NOT reach the loss);
// 2. runs scripts/torch_reference.py on it → test/fixtures/gpt2_ref.{json,bin}.
import { join, resolve } from "node:path";
import { mkdirSync } from "node:fs";
import type { GPT2Config } from "../src/model/config.ts";
import { gaussian } from "../src/model/init.ts";
import { parameterLayout, parameterViews } from "../src/model/parameters.ts";
import { writeLlmcCheckpoint } from "../src/io/llmc.ts";

export const FIXTURE_CONFIG: GPT2Config = { maxT: 32, V: 300, Vp: 384, L: 2, NH: 3, C: 48 };

/** Random parameters with std per tensor kind: weights 0.15, biases 0.05, layernorm 1 ± 0.1. */
export function fixtureParameters(config: GPT2Config, seed: number): Float32Array {
  const params = new Float32Array(parameterLayout(config).total);
  const views = parameterViews(params, config);
  const next = gaussian(seed);
  for (const [name, view] of Object.entries(views)) {
    const isLayernormWeight = name === "ln1w" || name === "ln2w" || name === "lnfw";
    const std = isLayernormWeight ? 0.1 : name.endsWith("b") ? 0.05 : name === "wte" || name === "wpe" ? 0.3 : 0.15;
    for (let i = 0; i < view.length; i++) view[i] = (isLayernormWeight ? 1 : 0) + std * next();
  }
  return params;
}

if (import.meta.main) {
  const root = resolve(import.meta.dir, "..");
  const dir = join(root, "test", "fixtures");
  mkdirSync(dir, { recursive: true });
  const checkpoint = join(dir, "gpt2_small.bin");
  writeLlmcCheckpoint(checkpoint, FIXTURE_CONFIG, fixtureParameters(FIXTURE_CONFIG, 20261128));
  const proc = Bun.spawnSync(["/usr/bin/python3", join(root, "scripts", "torch_reference.py"), checkpoint, join(dir, "gpt2_ref"), "--B", "2", "--T", "13", "--seed", "7", "--steps", "10"], { stdout: "inherit", stderr: "inherit" });
  if (proc.exitCode !== 0) throw new Error(`torch_reference.py failed (exit ${proc.exitCode})`);
}
