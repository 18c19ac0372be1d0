// TEMPORARY stand-ins for the layer and attention kernels (branches `layers` and `attention`),
// with the exact signatures of CONTRACTS.md, so the model can be written and tested before those
// branches land. Replaced by re-exports from ../ffi.ts once main has them.
export { matmulBackwardInput, matmulBackwardWeight, matmulForward } from "../ffi.ts";

export function encoderForward(out: Float32Array, inp: Int32Array, wte: Float32Array, wpe: Float32Array, B: number, T: number, C: number, _Vp: number, _maxT: number): void {
  for (let bt = 0; bt < B * T; bt++) {
    const t = bt % T, id = inp[bt];
    for (let c = 0; c < C; c++) out[bt * C + c] = wte[id * C + c] + wpe[t * C + c];
  }
}

export function encoderBackward(dwte: Float32Array, dwpe: Float32Array, dout: Float32Array, inp: Int32Array, B: number, T: number, C: number, _Vp: number, _maxT: number): void {
  for (let bt = 0; bt < B * T; bt++) {
    const t = bt % T, id = inp[bt];
    for (let c = 0; c < C; c++) {
      dwte[id * C + c] += dout[bt * C + c];
      dwpe[t * C + c] += dout[bt * C + c];
    }
  }
}

export function layernormForward(out: Float32Array, mean: Float32Array, rstd: Float32Array, inp: Float32Array, weight: Float32Array, bias: Float32Array, N: number, C: number): void {
  for (let n = 0; n < N; n++) {
    let m = 0;
    for (let c = 0; c < C; c++) m += inp[n * C + c];
    m /= C;
    let v = 0;
    for (let c = 0; c < C; c++) v += (inp[n * C + c] - m) ** 2;
    const s = 1 / Math.sqrt(v / C + 1e-5);
    for (let c = 0; c < C; c++) out[n * C + c] = (inp[n * C + c] - m) * s * weight[c] + bias[c];
    mean[n] = m;
    rstd[n] = s;
  }
}

export function layernormBackward(dinp: Float32Array, dweight: Float32Array, dbias: Float32Array, dout: Float32Array, inp: Float32Array, weight: Float32Array, mean: Float32Array, rstd: Float32Array, N: number, C: number): void {
  for (let n = 0; n < N; n++) {
    let dnormMean = 0, dnormNormMean = 0;
    for (let c = 0; c < C; c++) {
      const norm = (inp[n * C + c] - mean[n]) * rstd[n];
      const dnorm = weight[c] * dout[n * C + c];
      dnormMean += dnorm;
      dnormNormMean += dnorm * norm;
    }
    dnormMean /= C;
    dnormNormMean /= C;
    for (let c = 0; c < C; c++) {
      const norm = (inp[n * C + c] - mean[n]) * rstd[n];
      const dnorm = weight[c] * dout[n * C + c];
      dbias[c] += dout[n * C + c];
      dweight[c] += norm * dout[n * C + c];
      dinp[n * C + c] += (dnorm - dnormMean - norm * dnormNormMean) * rstd[n];
    }
  }
}

export function residualForward(out: Float32Array, a: Float32Array, b: Float32Array, n: number): void {
  for (let i = 0; i < n; i++) out[i] = a[i] + b[i];
}

export function residualBackward(da: Float32Array, db: Float32Array, dout: Float32Array, n: number): void {
  for (let i = 0; i < n; i++) {
    da[i] += dout[i];
    db[i] += dout[i];
  }
}

const GELU_K = Math.sqrt(2 / Math.PI);
export function geluForward(out: Float32Array, inp: Float32Array, n: number): void {
  for (let i = 0; i < n; i++) {
    const x = inp[i];
    out[i] = 0.5 * x * (1 + Math.tanh(GELU_K * (x + 0.044715 * x * x * x)));
  }
}

export function geluBackward(dinp: Float32Array, inp: Float32Array, dout: Float32Array, n: number): void {
  for (let i = 0; i < n; i++) {
    const x = inp[i];
    const u = GELU_K * (x + 0.044715 * x * x * x);
    const th = Math.tanh(u);
    const du = GELU_K * (1 + 3 * 0.044715 * x * x);
    dinp[i] += dout[i] * (0.5 * (1 + th) + 0.5 * x * (1 - th * th) * du);
  }
}

export function softmaxCrossEntropyForward(probs: Float32Array, losses: Float32Array, logits: Float32Array, targets: Int32Array, BT: number, V: number, Vp: number): void {
  for (let r = 0; r < BT; r++) {
    let max = -Infinity;
    for (let i = 0; i < V; i++) max = Math.max(max, logits[r * Vp + i]);
    let sum = 0;
    for (let i = 0; i < V; i++) sum += Math.exp(logits[r * Vp + i] - max);
    for (let i = 0; i < V; i++) probs[r * Vp + i] = Math.exp(logits[r * Vp + i] - max) / sum;
    for (let i = V; i < Vp; i++) probs[r * Vp + i] = 0;
    losses[r] = -(logits[r * Vp + targets[r]] - max - Math.log(sum));
  }
}

export function softmaxCrossEntropyBackward(dlogits: Float32Array, probs: Float32Array, targets: Int32Array, dlossScale: number, BT: number, V: number, Vp: number): void {
  for (let r = 0; r < BT; r++) {
    for (let i = 0; i < Vp; i++) {
      dlogits[r * Vp + i] = i < V ? (probs[r * Vp + i] - (i === targets[r] ? 1 : 0)) * dlossScale : 0;
    }
  }
}

export function attentionForward(out: Float32Array, lse: Float32Array, qkv: Float32Array, B: number, T: number, C: number, NH: number): void {
  const hs = C / NH, scale = 1 / Math.sqrt(hs), C3 = 3 * C;
  const s = new Float64Array(T);
  for (let b = 0; b < B; b++) for (let h = 0; h < NH; h++) for (let t = 0; t < T; t++) {
    const q = (b * T + t) * C3 + h * hs;
    let max = -Infinity;
    for (let u = 0; u <= t; u++) {
      const k = (b * T + u) * C3 + C + h * hs;
      let d = 0;
      for (let i = 0; i < hs; i++) d += qkv[q + i] * qkv[k + i];
      s[u] = d * scale;
      max = Math.max(max, s[u]);
    }
    let sum = 0;
    for (let u = 0; u <= t; u++) sum += Math.exp(s[u] - max);
    const o = (b * T + t) * C + h * hs;
    for (let i = 0; i < hs; i++) {
      let acc = 0;
      for (let u = 0; u <= t; u++) acc += (Math.exp(s[u] - max) / sum) * qkv[(b * T + u) * C3 + 2 * C + h * hs + i];
      out[o + i] = acc;
    }
    lse[(b * NH + h) * T + t] = max + Math.log(sum);
  }
}

export function attentionBackward(dqkv: Float32Array, dout: Float32Array, qkv: Float32Array, out: Float32Array, lse: Float32Array, B: number, T: number, C: number, NH: number): void {
  const hs = C / NH, scale = 1 / Math.sqrt(hs), C3 = 3 * C;
  dqkv.fill(0);
  for (let b = 0; b < B; b++) for (let h = 0; h < NH; h++) for (let t = 0; t < T; t++) {
    const q = (b * T + t) * C3 + h * hs, o = (b * T + t) * C + h * hs;
    let D = 0;
    for (let i = 0; i < hs; i++) D += dout[o + i] * out[o + i];
    const l = lse[(b * NH + h) * T + t];
    for (let u = 0; u <= t; u++) {
      const k = (b * T + u) * C3 + C + h * hs, v = k + C;
      let d = 0, dp = 0;
      for (let i = 0; i < hs; i++) {
        d += qkv[q + i] * qkv[k + i];
        dp += dout[o + i] * qkv[v + i];
      }
      const p = Math.exp(d * scale - l);
      const ds = p * (dp - D) * scale;
      for (let i = 0; i < hs; i++) {
        dqkv[q + i] += ds * qkv[k + i];
        dqkv[k + i] += ds * qkv[q + i];
        dqkv[v + i] += p * dout[o + i];
      }
    }
  }
}

export function adamwUpdate(params: Float32Array, grads: Float32Array, m: Float32Array, v: Float32Array, lr: number, beta1: number, beta2: number, eps: number, weightDecay: number, step: number, gradScale: number): void {
  const c1 = 1 - beta1 ** step, c2 = 1 - beta2 ** step;
  for (let i = 0; i < params.length; i++) {
    const g = grads[i] * gradScale;
    m[i] = beta1 * m[i] + (1 - beta1) * g;
    v[i] = beta2 * v[i] + (1 - beta2) * g * g;
    params[i] -= lr * (m[i] / c1 / (Math.sqrt(v[i] / c2) + eps) + weightDecay * params[i]);
  }
}

export function gradNormSquared(grads: Float32Array): number {
  let s = 0;
  for (let i = 0; i < grads.length; i++) s += grads[i] * grads[i];
  return s;
}
