// Deterministic GPT-2 initialisation: the same seed gives the same parameters bit for bit, on any
// machine (integer PRNG + Box–Muller in float64, rounded once to float32).
import type { GPT2Config } from "./config.ts";
import { parameterViews } from "./parameters.ts";

/** Seeded standard normal generator: splitmix32 state → uniform pairs → Box–Muller. */
export function gaussian(seed: number): () => number {
  let state = seed >>> 0;
  const uniform = (): number => {
    state = (state + 0x9e3779b9) >>> 0;
    let z = state;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
    z = (z ^ (z >>> 16)) >>> 0;
    return (z + 0.5) / 4294967296; // in (0,1): log() below never sees 0
  };
  let spare = NaN;
  return () => {
    if (spare === spare) {
      const out = spare;
      spare = NaN;
      return out;
    }
    const radius = Math.sqrt(-2 * Math.log(uniform()));
    const angle = 2 * Math.PI * uniform();
    spare = radius * Math.sin(angle);
    return radius * Math.cos(angle);
  };
}

function fillNormal(target: Float32Array, std: number, next: () => number): void {
  for (let i = 0; i < target.length; i++) target[i] = next() * std;
}

/**
 * GPT-2's initialisation (as in the GPT-2 paper / nanoGPT): weights N(0, 0.02), the two projections
 * that write into the residual stream (attprojw, fcprojw) scaled by 1/sqrt(2L), biases 0, layernorm
 * weights 1. The padded rows V..Vp of wte stay 0: no token ever selects them and the loss never
 * sees their logits. Tensors are filled in llm.c order from one generator stream.
 */
export function initParameters(config: GPT2Config, seed: number, params: Float32Array): void {
  const views = parameterViews(params, config);
  const next = gaussian(seed);
  const std = 0.02, projectionStd = 0.02 / Math.sqrt(2 * config.L);
  params.fill(0);
  fillNormal(views.wte.subarray(0, config.V * config.C), std, next);
  fillNormal(views.wpe, std, next);
  views.ln1w.fill(1);
  fillNormal(views.qkvw, std, next);
  fillNormal(views.attprojw, projectionStd, next);
  views.ln2w.fill(1);
  fillNormal(views.fcw, std, next);
  fillNormal(views.fcprojw, projectionStd, next);
  views.lnfw.fill(1);
}
