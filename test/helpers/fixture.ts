// Reads the PyTorch fixture written by scripts/torch_reference.py (JSON index + one binary file).
import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { GPT2Config } from "../../src/model/config.ts";

export interface TorchFixture {
  config: GPT2Config;
  B: number;
  T: number;
  loss32: number;
  loss64: number;
  losses32: number[];
  losses64: number[];
  inputs: Int32Array;
  targets: Int32Array;
  logits32: Float32Array;
  logits64: Float64Array;
  grads32: Float32Array;
  grads64: Float64Array;
}

export const FIXTURE_DIR = join(import.meta.dir, "..", "fixtures");

export function readTorchFixture(prefix = join(FIXTURE_DIR, "gpt2_ref")): TorchFixture {
  const meta = JSON.parse(readFileSync(`${prefix}.json`, "utf8"));
  const bytes = readFileSync(`${prefix}.bin`);
  const buffer = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
  const tensor = (name: string) => {
    const { dtype, offset, count } = meta.tensors[name];
    if (dtype === "int32") return new Int32Array(buffer, offset, count);
    if (dtype === "float32") return new Float32Array(buffer, offset, count);
    return new Float64Array(buffer.slice(offset, offset + count * 8));
  };
  return {
    config: meta.config, B: meta.B, T: meta.T,
    loss32: meta.loss32, loss64: meta.loss64, losses32: meta.losses32, losses64: meta.losses64,
    inputs: tensor("inputs") as Int32Array, targets: tensor("targets") as Int32Array,
    logits32: tensor("logits32") as Float32Array, logits64: tensor("logits64") as Float64Array,
    grads32: tensor("grads32") as Float32Array, grads64: tensor("grads64") as Float64Array,
  };
}
