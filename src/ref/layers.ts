// Plain TypeScript references of the layer kernels (src/ffi.ts, section "layers"), accumulating in
// float64: the yardstick the Zig kernels are tested against, and the float64 forwards the
// finite-difference gradient checks differentiate. Arrays may be Float32Array or Float64Array
// (float64 outputs keep the reference from rounding). Slow on purpose; never on a hot path.

export type Floats = Float32Array | Float64Array;

export const LAYERNORM_EPS = 1e-5;
const GELU_K = Math.sqrt(2 / Math.PI);
const GELU_CUBIC = 0.044715;

export function encoderForwardRef(out: Floats, inp: Int32Array, wte: Floats, wpe: Floats, B: number, T: number, C: number): void {
  for (let row = 0; row < B * T; row++) {
    const id = inp[row], t = row % T;
    for (let c = 0; c < C; c++) out[row * C + c] = wte[id * C + c] + wpe[t * C + c];
  }
}

export function encoderBackwardRef(dwte: Floats, dwpe: Floats, dout: Floats, inp: Int32Array, B: number, T: number, C: number, Vp: number, maxT: number): void {
  const gw = new Float64Array(Vp * C), gp = new Float64Array(maxT * C);
  for (let row = 0; row < B * T; row++) {
    const id = inp[row], t = row % T;
    for (let c = 0; c < C; c++) {
      gw[id * C + c] += dout[row * C + c];
      gp[t * C + c] += dout[row * C + c];
    }
  }
  for (let i = 0; i < gw.length; i++) dwte[i] += gw[i];
  for (let i = 0; i < gp.length; i++) dwpe[i] += gp[i];
}

export function layernormForwardRef(out: Floats, mean: Floats, rstd: Floats, inp: Floats, weight: Floats, bias: Floats, N: number, C: number): void {
  for (let n = 0; n < N; n++) {
    let m = 0;
    for (let c = 0; c < C; c++) m += inp[n * C + c];
    m /= C;
    let v = 0;
    for (let c = 0; c < C; c++) v += (inp[n * C + c] - m) ** 2;
    v /= C;
    const r = 1 / Math.sqrt(v + LAYERNORM_EPS);
    for (let c = 0; c < C; c++) out[n * C + c] = (inp[n * C + c] - m) * r * weight[c] + bias[c];
    mean[n] = m;
    rstd[n] = r;
  }
}

export function layernormBackwardRef(dinp: Floats, dweight: Floats, dbias: Floats, dout: Floats, inp: Floats, weight: Floats, mean: Floats, rstd: Floats, N: number, C: number): void {
  const gw = new Float64Array(C), gb = new Float64Array(C);
  for (let n = 0; n < N; n++) {
    const m = mean[n], r = rstd[n];
    let sumDnorm = 0, sumDnormNorm = 0;
    for (let c = 0; c < C; c++) {
      const norm = (inp[n * C + c] - m) * r, dnorm = weight[c] * dout[n * C + c];
      sumDnorm += dnorm;
      sumDnormNorm += dnorm * norm;
      gw[c] += dout[n * C + c] * norm;
      gb[c] += dout[n * C + c];
    }
    for (let c = 0; c < C; c++) {
      const norm = (inp[n * C + c] - m) * r, dnorm = weight[c] * dout[n * C + c];
      dinp[n * C + c] += r * (dnorm - sumDnorm / C - norm * (sumDnormNorm / C));
    }
  }
  for (let c = 0; c < C; c++) {
    dweight[c] += gw[c];
    dbias[c] += gb[c];
  }
}

export function residualForwardRef(out: Floats, a: Floats, b: Floats, n: number): void {
  for (let i = 0; i < n; i++) out[i] = a[i] + b[i];
}


export function geluRef(x: number): number {
  return 0.5 * x * (1 + Math.tanh(GELU_K * (x + GELU_CUBIC * x ** 3)));
}

export function geluGradRef(x: number): number {
  const th = Math.tanh(GELU_K * (x + GELU_CUBIC * x ** 3));
  // (1 - th²) underflows to exactly 0 long before the polynomial factor overflows (|x| > ~1e100).
  return 0.5 * (1 + th) + 0.5 * x * (1 - th * th) * GELU_K * (1 + 3 * GELU_CUBIC * x * x);
}

export function geluForwardRef(out: Floats, inp: Floats, n: number): void {
  for (let i = 0; i < n; i++) out[i] = geluRef(inp[i]);
}

export function geluBackwardRef(dinp: Floats, inp: Floats, dout: Floats, n: number): void {
  for (let i = 0; i < n; i++) dinp[i] += geluGradRef(inp[i]) * dout[i];
}

export function softmaxCrossEntropyForwardRef(probs: Floats, losses: Floats, logits: Floats, targets: Int32Array, BT: number, V: number, Vp: number): void {
  for (let i = 0; i < BT; i++) {
    const row = i * Vp;
    let max = -Infinity;
    for (let c = 0; c < V; c++) max = Math.max(max, logits[row + c]);
    let sum = 0;
    for (let c = 0; c < V; c++) sum += Math.exp(logits[row + c] - max);
    for (let c = 0; c < Vp; c++) probs[row + c] = c < V ? Math.exp(logits[row + c] - max) / sum : 0;
    losses[i] = Math.log(sum) - (logits[row + targets[i]] - max);
  }
}

export function softmaxCrossEntropyBackwardRef(dlogits: Floats, probs: Floats, targets: Int32Array, dlossScale: number, BT: number, V: number, Vp: number): void {
  for (let i = 0; i < BT; i++) {
    for (let c = 0; c < Vp; c++) {
      const k = i * Vp + c;
      dlogits[k] = c < V ? (probs[k] - (c === targets[i] ? 1 : 0)) * dlossScale : 0;
    }
  }
}

/**
 * torch.optim.AdamW (single-tensor path) step by step: scalars in float64 as Python computes them,
 * each tensor op rounded to float32 (Math.fround) as PyTorch's float32 kernels do, no FMA.
 */
export function adamwUpdateRef(params: Float32Array, grads: Float32Array, m: Float32Array, v: Float32Array, lr: number, beta1: number, beta2: number, eps: number, weightDecay: number, step: number, gradScale: number): void {
  const f = Math.fround;
  const decay = f(1 - lr * weightDecay), b1 = f(beta1), b2 = f(beta2), omb1 = f(1 - beta1), omb2 = f(1 - beta2);
  const bc2Sqrt = f(Math.sqrt(1 - beta2 ** step)), negStep = f(-(lr / (1 - beta1 ** step))), e = f(eps), scale = f(gradScale);
  for (let i = 0; i < params.length; i++) {
    const g = f(grads[i] * scale);
    const p = f(params[i] * decay);
    const mi = f(f(m[i] * b1) + f(omb1 * g));
    const vi = f(f(v[i] * b2) + f(f(omb2 * g) * g));
    const denom = f(f(f(Math.sqrt(vi)) / bc2Sqrt) + e);
    params[i] = f(p + f(f(negStep * mi) / denom));
    m[i] = mi;
    v[i] = vi;
  }
}

export function gradNormSquaredRef(grads: Floats): number {
  let sum = 0;
  for (let i = 0; i < grads.length; i++) sum += grads[i] * grads[i];
  return sum;
}
