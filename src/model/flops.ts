// How many floating-point operations GPT-2 needs: the numerator of every MFU figure in the project
// (the trainer's progress line, bench:step, the README). Model FLOPs, not hardware FLOPs: the
// padded vocabulary columns (V..Vp) and the bias/layernorm/softmax work are not counted, and
// attention is counted as causal (token t attends to t+1 keys), as our kernels compute it.
//   forward, per token: 2 FLOPs per matmul weight (L·12C² in the blocks + V·C in the lm_head)
//                       + attention: q·kᵀ and p·v over (T+1)/2 keys on average, 2·2·C·(T+1)/2 per layer
//   training step = forward + backward = 3 × forward (the backward does two matmuls per forward one)
import type { GPT2Config } from "./config.ts";

/** Weights that take part in matmuls (the lm_head counted over the V real tokens). */
export function matmulWeights(config: GPT2Config): number {
  const { L, C, V } = config;
  return L * 12 * C * C + V * C;
}

/** Forward FLOPs per token for sequences of T tokens. */
export function forwardFlopsPerToken(config: GPT2Config, T: number): number {
  return 2 * matmulWeights(config) + 2 * config.L * config.C * (T + 1);
}

/** FLOPs of one training step (forward + backward) over `tokens` tokens in sequences of T. */
export function trainingStepFlops(config: GPT2Config, T: number, tokens: number): number {
  return 3 * forwardFlopsPerToken(config, T) * tokens;
}
