// A plain TypeScript GPT-2 forward pass in float64, written from the model's definition (not from
// any kernel): token + position embedding, L blocks of (pre-layernorm, causal multi-head attention,
// residual, pre-layernorm, tanh-GELU MLP, residual), a final layernorm and the tied lm_head.
// The yardstick the inference engine is tested against; O(T²·C + T·params), for tiny configs only.
import type { GPT2Weights } from "../model/weights.ts";

const LAYERNORM_EPS = 1e-5;
const GELU_SCALE = Math.sqrt(2 / Math.PI);

function layernorm(x: Float64Array, weight: Float32Array, bias: Float32Array, T: number, C: number): Float64Array {
  const out = new Float64Array(T * C);
  for (let t = 0; t < T; t++) {
    let mean = 0;
    for (let i = 0; i < C; i++) mean += x[t * C + i];
    mean /= C;
    let variance = 0;
    for (let i = 0; i < C; i++) variance += (x[t * C + i] - mean) ** 2;
    variance /= C;
    const rstd = 1 / Math.sqrt(variance + LAYERNORM_EPS);
    for (let i = 0; i < C; i++) out[t * C + i] = (x[t * C + i] - mean) * rstd * weight[i] + bias[i];
  }
  return out;
}

/** out(T,OC) = x(T,IC) · W(OC,IC)ᵀ + b. */
function linear(x: Float64Array, weight: Float32Array, bias: Float32Array, T: number, IC: number, OC: number): Float64Array {
  const out = new Float64Array(T * OC);
  for (let t = 0; t < T; t++) {
    for (let o = 0; o < OC; o++) {
      let sum = bias[o];
      for (let i = 0; i < IC; i++) sum += x[t * IC + i] * weight[o * IC + i];
      out[t * OC + o] = sum;
    }
  }
  return out;
}

function causalSelfAttention(qkv: Float64Array, T: number, C: number, NH: number): Float64Array {
  const hs = C / NH;
  const out = new Float64Array(T * C);
  const scores = new Float64Array(T);
  for (let h = 0; h < NH; h++) {
    for (let t = 0; t < T; t++) {
      let max = -Infinity;
      for (let s = 0; s <= t; s++) {
        let dot = 0;
        for (let d = 0; d < hs; d++) dot += qkv[t * 3 * C + h * hs + d] * qkv[s * 3 * C + C + h * hs + d];
        scores[s] = dot / Math.sqrt(hs);
        max = Math.max(max, scores[s]);
      }
      let total = 0;
      for (let s = 0; s <= t; s++) {
        scores[s] = Math.exp(scores[s] - max);
        total += scores[s];
      }
      for (let d = 0; d < hs; d++) {
        let sum = 0;
        for (let s = 0; s <= t; s++) sum += scores[s] * qkv[s * 3 * C + 2 * C + h * hs + d];
        out[t * C + h * hs + d] = sum / total;
      }
    }
  }
  return out;
}

function gelu(x: Float64Array): Float64Array {
  return x.map((v) => 0.5 * v * (1 + Math.tanh(GELU_SCALE * (v + 0.044715 * v * v * v))));
}

function addInPlace(a: Float64Array, b: Float64Array): void {
  for (let i = 0; i < a.length; i++) a[i] += b[i];
}

/** Logits (T, V) of every position of `tokens` (T ≤ maxT), in float64. */
export function gpt2ForwardRef(weights: GPT2Weights, tokens: ArrayLike<number>): Float64Array {
  const { C, L, NH, V, maxT } = weights.config;
  const T = tokens.length;
  if (T < 1 || T > maxT) throw new Error(`gpt2ForwardRef: ${T} tokens, the model takes 1 to ${maxT}`);
  const p = weights.tensors;
  const x = new Float64Array(T * C);
  for (let t = 0; t < T; t++) {
    for (let i = 0; i < C; i++) x[t * C + i] = p.wte[tokens[t] * C + i] + p.wpe[t * C + i];
  }
  for (let l = 0; l < L; l++) {
    const w = weights.layers[l];
    const ln1 = layernorm(x, w.ln1w, w.ln1b, T, C);
    const qkv = linear(ln1, w.qkvw, w.qkvb, T, C, 3 * C);
    const att = causalSelfAttention(qkv, T, C, NH);
    addInPlace(x, linear(att, w.attprojw, w.attprojb, T, C, C));
    const ln2 = layernorm(x, w.ln2w, w.ln2b, T, C);
    const hidden = gelu(linear(ln2, w.fcw, w.fcb, T, C, 4 * C));
    addInPlace(x, linear(hidden, w.fcprojw, w.fcprojb, T, 4 * C, C));
  }
  const final = layernorm(x, p.lnfw, p.lnfb, T, C);
  return linear(final, p.wte.subarray(0, V * C), new Float32Array(V), T, C, V);
}
