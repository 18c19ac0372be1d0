// Deterministic GPT-2 initialisation: the same seed gives the same parameters bit for bit, on any
// machine (the project's integer RNG + Box–Muller in float64, each value rounded once to float32).
import { Rng } from "../base/rng.ts";
import type { GPT2Config } from "./config.ts";
import { GPT2Weights } from "./weights.ts";

/**
 * GPT-2's initialisation (as in the GPT-2 paper / nanoGPT): weights N(0, 0.02), the two projections
 * that write into the residual stream (attprojw, fcprojw) scaled by 1/sqrt(2L), biases 0, layernorm
 * weights 1. The padded rows V..Vp of wte stay 0: no token ever selects them and the loss never
 * sees their logits. Tensors are filled in llm.c order from one generator stream.
 */
export function initParameters(weights: GPT2Weights, seed: number): void {
  const { config, tensors: t } = weights;
  const rng = new Rng(seed);
  const std = 0.02, projectionStd = 0.02 / Math.sqrt(2 * config.L);
  weights.params.fill(0);
  rng.fillNormal(t.wte.subarray(0, config.V * config.C), std);
  rng.fillNormal(t.wpe, std);
  t.ln1w.fill(1);
  rng.fillNormal(t.qkvw, std);
  rng.fillNormal(t.attprojw, projectionStd);
  t.ln2w.fill(1);
  rng.fillNormal(t.fcw, std);
  rng.fillNormal(t.fcprojw, projectionStd);
  t.lnfw.fill(1);
}

export interface RandomWeightOptions {
  /** std of the matrices */
  std: number;
  /** std of wte and wpe (default: std) */
  embeddingStd?: number;
  /** std of the two projections into the residual stream (default: std/√(2L), as GPT-2 scales them) */
  residualStd?: number;
  /** std of the biases (default: std/4) */
  biasStd?: number;
  /** fill the padded wte rows V..Vp too (they must never reach a loss or a sampled token) */
  padRows?: boolean;
}

/**
 * Random GPT-2 weights for tests, fixtures and benchmarks, deliberately unlike a fresh init: every
 * tensor random, biases and layernorm weights (N(1, 0.1)) included, so that a dropped bias, a
 * swapped layernorm parameter or a wrong padding row shows in the output.
 */
export function randomWeights(config: GPT2Config, seed: number, options: RandomWeightOptions): GPT2Weights {
  const weights = new GPT2Weights(config);
  const { std, embeddingStd = std, residualStd = std / Math.sqrt(2 * config.L), biasStd = std / 4, padRows = false } = options;
  const rng = new Rng(seed);
  for (const [name, view] of Object.entries(weights.tensors)) {
    if (name === "ln1w" || name === "ln2w" || name === "lnfw") rng.fillNormal(view, 0.1, 1);
    else if (name === "wte" || name === "wpe") rng.fillNormal(view, embeddingStd);
    else if (name.endsWith("b")) rng.fillNormal(view, biasStd);
    else if (name === "attprojw" || name === "fcprojw") rng.fillNormal(view, residualStd);
    else rng.fillNormal(view, std);
  }
  if (!padRows) weights.tensors.wte.fill(0, config.V * config.C);
  return weights;
}
