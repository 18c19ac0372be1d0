// Plain TypeScript reference of causal multi-head attention, in float64: the yardstick the Zig
// kernels are tested against. Naive on purpose: it builds each full row of scores, and its backward
// is the textbook softmax backward (no D = dout·out shortcut, no stored statistics), so it checks
// the flash-style algebra rather than repeating it. Slow; never used on a hot path.
//
// Layout (llm.c's): qkv (B,T,3C) holds per (b,t) the row [q(C) | k(C) | v(C)]; head h uses channels
// [h·hs, (h+1)·hs), hs = C/NH; out (B,T,C); lse (B,NH,T) = ln Σ_{s≤t} exp(q_t·k_s/√hs).

export interface AttentionForwardRef {
  out: Float64Array;
  lse: Float64Array;
}

interface Layout {
  hs: number;
  scale: number;
  /** index of channel 0 of part (0=q, 1=k, 2=v) of head h at (b,t) in qkv */
  qkvAt: (b: number, t: number, part: number, h: number) => number;
  /** index of channel 0 of head h at (b,t) in out */
  outAt: (b: number, t: number, h: number) => number;
}

function layout(T: number, C: number, NH: number): Layout {
  if (C % NH !== 0) throw new Error(`C (${C}) must be a multiple of NH (${NH})`);
  const hs = C / NH;
  return {
    hs,
    scale: 1 / Math.sqrt(hs),
    qkvAt: (b, t, part, h) => (b * T + t) * 3 * C + part * C + h * hs,
    outAt: (b, t, h) => (b * T + t) * C + h * hs,
  };
}

/** Softmax weights p[s] (s ≤ t) of query t of head h, and the row's logsumexp. */
export function attentionRowRef(qkv: ArrayLike<number>, B: number, T: number, C: number, NH: number, b: number, t: number, h: number): { p: Float64Array; lse: number } {
  if (b >= B || t >= T || h >= NH) throw new Error(`row (${b}, ${t}, ${h}) outside (${B}, ${T}, ${NH})`);
  return probabilities(qkv, layout(T, C, NH), b, t, h);
}

function probabilities(qkv: ArrayLike<number>, L: Layout, b: number, t: number, h: number): { p: Float64Array; lse: number } {
  const p = new Float64Array(t + 1);
  const q = L.qkvAt(b, t, 0, h);
  let max = -Infinity;
  for (let s = 0; s <= t; s++) {
    const k = L.qkvAt(b, s, 1, h);
    let dot = 0;
    for (let d = 0; d < L.hs; d++) dot += qkv[q + d] * qkv[k + d];
    p[s] = dot * L.scale;
    max = Math.max(max, p[s]);
  }
  let total = 0;
  for (let s = 0; s <= t; s++) {
    p[s] = Math.exp(p[s] - max);
    total += p[s];
  }
  for (let s = 0; s <= t; s++) p[s] /= total;
  return { p, lse: max + Math.log(total) };
}

export function attentionForwardRef(qkv: ArrayLike<number>, B: number, T: number, C: number, NH: number): AttentionForwardRef {
  const L = layout(T, C, NH);
  const out = new Float64Array(B * T * C);
  const lse = new Float64Array(B * NH * T);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < NH; h++) {
      for (let t = 0; t < T; t++) {
        const row = probabilities(qkv, L, b, t, h);
        lse[(b * NH + h) * T + t] = row.lse;
        const o = L.outAt(b, t, h);
        for (let s = 0; s <= t; s++) {
          const v = L.qkvAt(b, s, 2, h);
          for (let d = 0; d < L.hs; d++) out[o + d] += row.p[s] * qkv[v + d];
        }
      }
    }
  }
  return { out, lse };
}

/** dqkv (B,T,3C): the gradient of Σ dout⊙out with respect to qkv. */
export function attentionBackwardRef(dout: ArrayLike<number>, qkv: ArrayLike<number>, B: number, T: number, C: number, NH: number): Float64Array {
  const L = layout(T, C, NH);
  const dqkv = new Float64Array(B * T * 3 * C);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < NH; h++) {
      for (let t = 0; t < T; t++) {
        const { p } = probabilities(qkv, L, b, t, h);
        const go = L.outAt(b, t, h);
        // dp[s] = dL/dp_s = dout_t·v_s; softmax backward: dx_s = p_s (dp_s − Σ_u p_u dp_u).
        const dp = new Float64Array(t + 1);
        let weighted = 0;
        for (let s = 0; s <= t; s++) {
          const v = L.qkvAt(b, s, 2, h);
          for (let d = 0; d < L.hs; d++) {
            dp[s] += dout[go + d] * qkv[v + d];
            dqkv[v + d] += p[s] * dout[go + d];
          }
          weighted += p[s] * dp[s];
        }
        const q = L.qkvAt(b, t, 0, h);
        for (let s = 0; s <= t; s++) {
          const dscore = p[s] * (dp[s] - weighted) * L.scale;
          const k = L.qkvAt(b, s, 1, h);
          for (let d = 0; d < L.hs; d++) {
            dqkv[q + d] += dscore * qkv[k + d];
            dqkv[k + d] += dscore * qkv[q + d];
          }
        }
      }
    }
  }
  return dqkv;
}
