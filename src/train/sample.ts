// Sampling from the model being trained, for a look at progress: a plain forward pass over the
// growing context (no KV cache: that is the inference engine's job), the last position's logits,
// then greedy or temperature sampling over the real vocabulary (padding ids never come out).
import type { GPT2 } from "../model/gpt2.ts";
import type { Rng } from "./rng.ts";

/** Appends `count` sampled tokens to `prompt` (which must be non-empty); returns only the new ones. */
export function sampleTokens(model: GPT2, prompt: number[], count: number, temperature: number, rng: Rng, maxContext: number): number[] {
  const { V, Vp, maxT } = model.config;
  if (prompt.length === 0) throw new Error("sampleTokens: the prompt must hold at least one token");
  const window = Math.max(1, Math.min(maxContext, maxT));
  const context = [...prompt];
  const out: number[] = [];
  const inputs = new Int32Array(window);
  const probs = new Float64Array(V);
  for (let n = 0; n < count; n++) {
    const start = Math.max(0, context.length - window);
    const T = context.length - start;
    for (let t = 0; t < T; t++) inputs[t] = context[start + t];
    model.forward(inputs.subarray(0, T), null, 1, T);
    const logits = model.logits().subarray((T - 1) * Vp, (T - 1) * Vp + V);
    const next = temperature === 0 ? argmax(logits) : draw(logits, temperature, rng, probs);
    context.push(next);
    out.push(next);
  }
  return out;
}

function argmax(logits: Float32Array): number {
  let best = 0;
  for (let i = 1; i < logits.length; i++) if (logits[i] > logits[best]) best = i;
  return best;
}

function draw(logits: Float32Array, temperature: number, rng: Rng, probs: Float64Array): number {
  let max = -Infinity;
  for (let i = 0; i < logits.length; i++) if (logits[i] > max) max = logits[i];
  let sum = 0;
  for (let i = 0; i < logits.length; i++) {
    probs[i] = Math.exp((logits[i] - max) / temperature);
    sum += probs[i];
  }
  let u = rng.nextFloat() * sum;
  for (let i = 0; i < logits.length; i++) {
    u -= probs[i];
    if (u < 0) return i;
  }
  return logits.length - 1;
}
