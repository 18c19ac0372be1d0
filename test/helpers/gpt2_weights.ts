// Seeded GPT-2-style weights for tests and benchmarks (independent of the trainer's init):
// N(0, std) matrices and embeddings, zero biases jittered slightly so a bias mix-up shows,
// layernorm weights near 1, padded vocabulary rows zero.
import type { GPT2Config } from "../../src/model/config.ts";
import { parameterLayout } from "../../src/model/parameters.ts";
import { rng } from "./random.ts";

export function normalFill(out: Float32Array, seed: number, std: number, mean = 0): void {
  const next = rng(seed);
  for (let i = 0; i < out.length; i += 2) {
    // Box–Muller: two normals per pair of uniforms (1 - u keeps log away from 0).
    const r = Math.sqrt(-2 * Math.log(1 - next()));
    const angle = 2 * Math.PI * next();
    out[i] = mean + std * r * Math.cos(angle);
    if (i + 1 < out.length) out[i + 1] = mean + std * r * Math.sin(angle);
  }
}

export function randomGpt2Params(config: GPT2Config, seed: number, std = 0.02): Float32Array {
  const layout = parameterLayout(config);
  const params = new Float32Array(layout.total);
  let s = seed;
  for (const [name, offset] of Object.entries(layout.offsets)) {
    const view = params.subarray(offset, offset + layout.sizes[name as keyof typeof layout.sizes]);
    const isLayernormWeight = name === "ln1w" || name === "ln2w" || name === "lnfw";
    const isBias = name.endsWith("b") && !isLayernormWeight;
    if (isLayernormWeight) normalFill(view, s++, 0.1, 1);
    else if (isBias) normalFill(view, s++, std / 4);
    else if (name === "attprojw" || name === "fcprojw") normalFill(view, s++, std / Math.sqrt(2 * config.L));
    else normalFill(view, s++, std);
  }
  params.fill(0, layout.offsets.wte + config.V * config.C, layout.offsets.wte + config.Vp * config.C);
  return params;
}
