// Causal attention (Zig, flash-style) against the float64 TypeScript reference, on odd shapes.
//
// Error bound, element by element (u = 2^-24, γ_n = n·u/(1 − n·u), Higham §3.1), for query row t:
//   A_ts = Σ_d |q_t,d·k_s,d|/√hs bounds a score's size, so a computed score is off by ≤ γ_{hs+1}·A_ts;
//   an exponent error e becomes a relative error ≈ e in the weight P_ts = exp(x_ts − m). Adding the
//   rounding of x − m (≤ u·|x − m| ≤ u·2·max A), the exp's relative error (≤ 3u, tested in Zig) and
//   one rescale by α = exp(m_old − m_new) per key block (≤ 4u each), every weight is within a relative
//     δ_t = 2γ_{hs+4}·max_s A_ts + (4·blocks + 8)·u.
//   out_t = Σ P v / Σ P: the common part of the weights' errors cancels, the rest moves out by at most
//   2δ_t·Σ p|v|, plus two sums of ≤ T terms: |Δout| ≤ (2δ_t + 2γ_{T+2})·Σ_s p_ts|v_s|.
//   lse = m + ln Σ P: |Δlse| ≤ δ_t + γ_{T+2} + u·(|lse| + 1).
//   Backward: P = exp(x − lse) carries ρ_t = 2δ_t + γ_{T+4} + u·(2|lse| + max A) relatively; with
//   E_ts = Σ_d |dO_t,d·v_s,d| (bounds dP and its error γ_hs·E) and G_t = Σ_s p_ts·E_ts (bounds D and the
//   error it inherits from out), dS_ts = P(dP − D)/√hs is within κ_t·M_ts/√hs of exact, where
//   M_ts = p_ts(E_ts + G_t) and κ_t = ρ_t + 2γ_hs + (2δ_t + 2γ_{T+2}) + 3u. Then
//     |Δdq_t| ≤ (κ_t + γ_T)·Σ_s M_ts|k_s|/√hs,  |Δdk_s| ≤ Σ_t (κ_t + γ_T)·M_ts|q_t|/√hs,
//     |Δdv_s| ≤ Σ_t (ρ_t + γ_T)·p_ts|dO_t|.
// The bounds are computed per element below from float64 values. They are relative to the sizes of
// the terms (not of the result, which can cancel: T=1 has dq = 0 exactly), and stay below 2e-3 of
// the largest result for inputs in ±1 (checked; larger inputs give larger scores, hence looser
// bounds). A wrong index, block or mask gives errors of the order of the
// results themselves; even a score scale off by 0.1% is caught (checked).
import { describe, expect, test } from "bun:test";
import { attentionBackward, attentionForward, defaultThreadCount, KernelArgumentError, setThreads } from "../src/ffi.ts";
import { attentionBackwardRef, attentionForwardRef, attentionRowRef } from "../src/ref/attention.ts";
import { randomF32 } from "./helpers/random.ts";

const U = 2 ** -24;
const gamma = (n: number) => (n * U) / (1 - n * U);
const BLOCK = 64; // the Zig kernels' block of keys (only enters the bound through the rescale count)

interface Bounds {
  out: Float64Array;
  lse: Float64Array;
  dqkv: Float64Array;
}

function errorBounds(qkv: Float32Array, dout: Float32Array, lse: Float64Array, B: number, T: number, C: number, NH: number): Bounds {
  const hs = C / NH, scale = 1 / Math.sqrt(hs);
  const at = (b: number, t: number, part: number, h: number) => (b * T + t) * 3 * C + part * C + h * hs;
  const outAt = (b: number, t: number, h: number) => (b * T + t) * C + h * hs;
  const bounds: Bounds = { out: new Float64Array(B * T * C), lse: new Float64Array(B * NH * T), dqkv: new Float64Array(B * T * 3 * C) };
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < NH; h++) {
      for (let t = 0; t < T; t++) {
        const { p } = attentionRowRef(qkv, B, T, C, NH, b, t, h);
        const q = at(b, t, 0, h), go = outAt(b, t, h);
        const A = new Float64Array(t + 1), E = new Float64Array(t + 1);
        for (let s = 0; s <= t; s++) {
          const k = at(b, s, 1, h), v = at(b, s, 2, h);
          for (let d = 0; d < hs; d++) {
            A[s] += Math.abs(qkv[q + d] * qkv[k + d]) * scale;
            E[s] += Math.abs(dout[go + d] * qkv[v + d]);
          }
        }
        const maxA = Math.max(...A);
        const rowLse = Math.abs(lse[(b * NH + h) * T + t]);
        const delta = 2 * gamma(hs + 4) * maxA + (4 * (Math.floor(t / BLOCK) + 1) + 8) * U;
        const eta = 2 * delta + 2 * gamma(T + 2);
        const rho = 2 * delta + gamma(T + 4) + U * (2 * rowLse + maxA);
        const kappa = rho + 2 * gamma(hs) + eta + 3 * U;
        let G = 0;
        for (let s = 0; s <= t; s++) G += p[s] * E[s];
        bounds.lse[(b * NH + h) * T + t] = delta + gamma(T + 2) + U * (rowLse + 1);
        for (let s = 0; s <= t; s++) {
          const k = at(b, s, 1, h), v = at(b, s, 2, h);
          const M = p[s] * (E[s] + G) * scale;
          for (let d = 0; d < hs; d++) {
            bounds.out[go + d] += eta * p[s] * Math.abs(qkv[v + d]);
            bounds.dqkv[q + d] += (kappa + gamma(T)) * M * Math.abs(qkv[k + d]);
            bounds.dqkv[k + d] += (kappa + gamma(T)) * M * Math.abs(qkv[q + d]);
            bounds.dqkv[v + d] += (rho + gamma(T)) * p[s] * Math.abs(dout[go + d]);
          }
        }
      }
    }
  }
  return bounds;
}

/** Largest |got − want| / bound; throws on the first element outside its bound. */
function checkWithin(got: Float32Array, want: Float64Array, bound: Float64Array, label: string): number {
  let worst = 0;
  for (let i = 0; i < got.length; i++) {
    const ratio = Math.abs(got[i] - want[i]) / (bound[i] + 1e-30);
    if (!(ratio <= 1)) throw new Error(`${label}: element ${i} got ${got[i]}, want ${want[i]}, bound ${bound[i]}`);
    worst = Math.max(worst, ratio);
  }
  return worst;
}

function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]));
  return m;
}

function run(qkv: Float32Array, dout: Float32Array, B: number, T: number, C: number, NH: number) {
  const out = new Float32Array(B * T * C).fill(NaN), lse = new Float32Array(B * NH * T).fill(NaN);
  const dqkv = new Float32Array(B * T * 3 * C).fill(NaN); // must be overwritten, not added to
  attentionForward(out, lse, qkv, B, T, C, NH);
  attentionBackward(dqkv, dout, qkv, out, lse, B, T, C, NH);
  return { out, lse, dqkv };
}

// [B, T, NH, hs, input scale]: T=1, T inside one block, T just over one and two blocks; hs=1, 5
// (not a multiple of 8), 8, 64 (GPT-2), 96. B·NH = 1 with T > 64 takes the split backward schedule.
const SHAPES: Array<[number, number, number, number, number]> = [
  [1, 1, 1, 1, 1], [1, 1, 3, 64, 1], [2, 7, 3, 5, 1], [1, 7, 1, 8, 1], [2, 7, 1, 1, 1], [2, 65, 1, 64, 1], [1, 65, 3, 1, 1],
  [1, 65, 3, 5, 1], [1, 130, 3, 8, 1], [2, 130, 1, 5, 1], [1, 130, 1, 64, 1], [2, 130, 3, 64, 1], [1, 130, 1, 64, 3], [1, 7, 3, 5, 4],
  [1, 70, 2, 96, 1], // hs > 64: the score kernel packs keys in two chunks of channels
];

describe("attention vs the float64 reference", () => {
  for (const [B, T, NH, hs, scale] of SHAPES) {
    const C = NH * hs;
    test(`B=${B} T=${T} NH=${NH} hs=${hs} inputs ±${scale}`, () => {
      const qkv = randomF32(B * T * 3 * C, 100 + T + hs, scale), dout = randomF32(B * T * C, 200 + T * NH);
      const got = run(qkv, dout, B, T, C, NH);
      const want = attentionForwardRef(qkv, B, T, C, NH);
      const wantD = attentionBackwardRef(dout, qkv, B, T, C, NH);
      const bounds = errorBounds(qkv, dout, want.lse, B, T, C, NH);
      const ratios = [
        checkWithin(got.out, want.out, bounds.out, "out"),
        checkWithin(got.lse, want.lse, bounds.lse, "lse"),
        checkWithin(got.dqkv, wantD, bounds.dqkv, "dqkv"),
      ];
      for (const r of ratios) expect(r).toBeLessThanOrEqual(1);
      if (process.env.ATTENTION_VERBOSE) console.log(`worst error/bound out ${ratios[0].toFixed(4)} lse ${ratios[1].toFixed(4)} dqkv ${ratios[2].toFixed(4)}; bound/max out ${(maxAbs(bounds.out) / maxAbs(want.out)).toExponential(2)} dqkv ${(maxAbs(bounds.dqkv) / maxAbs(wantD)).toExponential(2)}`);
      if (scale === 1) {
        expect(maxAbs(bounds.out) / maxAbs(want.out)).toBeLessThan(2e-3);
        expect(maxAbs(bounds.dqkv) / maxAbs(wantD)).toBeLessThan(2e-3);
      }
    });
  }

  test("the bounds catch a score scale off by 0.1%", () => {
    const [B, T, NH, hs] = [2, 130, 3, 64];
    const C = NH * hs;
    const qkv = randomF32(B * T * 3 * C, 71), dout = randomF32(B * T * C, 72);
    const got = run(qkv, dout, B, T, C, NH);
    const skewed = qkv.slice();
    for (let i = 0; i < B * T; i++) for (let c = 0; c < C; c++) skewed[i * 3 * C + c] *= 1.001;
    const want = attentionForwardRef(skewed, B, T, C, NH);
    const bounds = errorBounds(skewed, dout, want.lse, B, T, C, NH);
    expect(() => checkWithin(got.out, want.out, bounds.out, "out")).toThrow(/out: element/);
    expect(() => checkWithin(got.dqkv, attentionBackwardRef(dout, skewed, B, T, C, NH), bounds.dqkv, "dqkv")).toThrow(/dqkv: element/);
  });
});

/** L = Σ w⊙out of the float64 reference, and its central-difference gradient. */
function numericGradient(qkv: Float64Array, w: Float32Array, B: number, T: number, C: number, NH: number, step: number): Float64Array {
  const loss = (x: Float64Array) => {
    const { out } = attentionForwardRef(x, B, T, C, NH);
    let sum = 0;
    for (let i = 0; i < out.length; i++) sum += out[i] * w[i];
    return sum;
  };
  const grad = new Float64Array(qkv.length);
  for (let i = 0; i < qkv.length; i++) {
    const saved = qkv[i];
    qkv[i] = saved + step;
    const up = loss(qkv);
    qkv[i] = saved - step;
    const down = loss(qkv);
    qkv[i] = saved;
    grad[i] = (up - down) / (2 * step);
  }
  return grad;
}

describe("attention gradients against central differences", () => {
  test("the float64 reference backward (B=2 T=6 NH=2 hs=3)", () => {
    const [B, T, C, NH] = [2, 6, 6, 2];
    const qkv = new Float64Array(randomF32(B * T * 3 * C, 31, 1.5)), w = randomF32(B * T * C, 32);
    const numeric = numericGradient(qkv, w, B, T, C, NH, 1e-5);
    const analytic = attentionBackwardRef(w, qkv, B, T, C, NH);
    // Central difference: truncation O(step²·|f'''|) ≈ 1e-10, cancellation ≈ 1e-16/step ≈ 1e-11.
    for (let i = 0; i < qkv.length; i++) expect(Math.abs(numeric[i] - analytic[i])).toBeLessThan(1e-8);
    expect(maxAbs(analytic)).toBeGreaterThan(0.1);
  });

  test("Zig's backward (B=1 T=9 NH=3 hs=2)", () => {
    const [B, T, C, NH] = [1, 9, 6, 3];
    const qkv32 = randomF32(B * T * 3 * C, 41, 1.5), w = randomF32(B * T * C, 42);
    const numeric = numericGradient(new Float64Array(qkv32), w, B, T, C, NH, 1e-5);
    const { dqkv } = run(qkv32, w, B, T, C, NH);
    // Zig works in float32: gradients of size ~1 carry errors of a few 1e-7.
    for (let i = 0; i < dqkv.length; i++) expect(Math.abs(numeric[i] - dqkv[i])).toBeLessThan(1e-5);
  });
});

describe("attention determinism and causality", () => {
  test("repeated calls and 1 or 2 threads give bit-identical results", () => {
    const same = (a: Float32Array, b: Float32Array) => Buffer.from(a.buffer).equals(Buffer.from(b.buffer));
    // B·NH = 1 with T > 64: the split schedule on 2 threads, the whole-head one on 1.
    for (const [B, T, NH, hs] of [[1, 200, 1, 64], [2, 130, 3, 5]]) {
      const C = NH * hs;
      const qkv = randomF32(B * T * 3 * C, 51), dout = randomF32(B * T * C, 52);
      const first = run(qkv, dout, B, T, C, NH);
      for (let i = 0; i < 3; i++) {
        const again = run(qkv, dout, B, T, C, NH);
        expect(same(again.out, first.out) && same(again.lse, first.lse) && same(again.dqkv, first.dqkv)).toBe(true);
      }
      setThreads(1);
      try {
        const single = run(qkv, dout, B, T, C, NH);
        expect(same(single.out, first.out) && same(single.lse, first.lse) && same(single.dqkv, first.dqkv)).toBe(true);
      } finally {
        setThreads(defaultThreadCount());
      }
    }
  });

  test("changing future keys and values leaves earlier outputs bit-identical", () => {
    const [B, T, NH, hs] = [2, 150, 3, 8];
    const C = NH * hs;
    const qkv = randomF32(B * T * 3 * C, 61), dout = randomF32(B * T * C, 62);
    for (const cut of [0, 5, 63, 64, 100]) {
      const changed = qkv.slice();
      const noise = randomF32(B * T * 3 * C, 63 + cut, 5);
      for (let b = 0; b < B; b++) {
        for (let t = cut + 1; t < T; t++) {
          for (let i = C; i < 3 * C; i++) changed[(b * T + t) * 3 * C + i] = noise[(b * T + t) * 3 * C + i];
        }
      }
      const a = run(qkv, dout, B, T, C, NH), z = run(changed, dout, B, T, C, NH);
      for (let b = 0; b < B; b++) {
        const rows = (x: Float32Array, t0: number, t1: number) => x.subarray((b * T + t0) * C, (b * T + t1) * C);
        expect(Buffer.from(rows(a.out, 0, cut + 1).slice().buffer).equals(Buffer.from(rows(z.out, 0, cut + 1).slice().buffer))).toBe(true);
        expect(Buffer.from(rows(a.out, cut + 1, T).slice().buffer).equals(Buffer.from(rows(z.out, cut + 1, T).slice().buffer))).toBe(false);
        for (let h = 0; h < NH; h++) {
          const l0 = a.lse.subarray((b * NH + h) * T, (b * NH + h) * T + cut + 1), l1 = z.lse.subarray((b * NH + h) * T, (b * NH + h) * T + cut + 1);
          expect(Array.from(l0)).toEqual(Array.from(l1));
        }
      }
    }
  });
});

describe("attention argument checks", () => {
  const [B, T, C, NH] = [1, 2, 6, 2];
  const qkv = new Float32Array(B * T * 3 * C), out = new Float32Array(B * T * C), lse = new Float32Array(B * NH * T);
  test("wrong lengths throw before any call", () => {
    expect(() => attentionForward(new Float32Array(5), lse, qkv, B, T, C, NH)).toThrow(/out has 5 elements/);
    expect(() => attentionForward(out, new Float32Array(3), qkv, B, T, C, NH)).toThrow(/lse has 3 elements/);
    expect(() => attentionForward(out, lse, new Float32Array(12), B, T, C, NH)).toThrow(KernelArgumentError);
    expect(() => attentionBackward(new Float32Array(12), out, qkv, out, lse, B, T, C, NH)).toThrow(/dqkv has 12 elements/);
    expect(() => attentionBackward(qkv.slice(), out, qkv, out, new Float32Array(1), B, T, C, NH)).toThrow(/lse has 1 elements/);
    expect(() => attentionBackward(qkv.slice(), new Float32Array(1), qkv, out, lse, B, T, C, NH)).toThrow(/dout has 1 elements/);
  });
  test("C not a multiple of NH throws", () => {
    expect(() => attentionForward(out, new Float32Array(B * 4 * T), qkv, B, T, C, 4)).toThrow(/C \(6\) must be a multiple of NH \(4\)/);
    expect(() => attentionBackward(qkv.slice(), out, qkv, out, new Float32Array(B * 4 * T), B, T, C, 4)).toThrow(KernelArgumentError);
  });
  test("zero, negative and fractional sizes throw", () => {
    for (const bad of [0, -1, 1.5, NaN, 2 ** 31]) {
      expect(() => attentionForward(out, lse, qkv, bad, T, C, NH)).toThrow(/B must be a positive integer/);
      expect(() => attentionForward(out, lse, qkv, B, T, C, bad)).toThrow(/NH must be a positive integer/);
      expect(() => attentionBackward(qkv.slice(), out, qkv, out, lse, B, bad, C, NH)).toThrow(/T must be a positive integer/);
    }
  });
  test("arrays of the wrong type throw", () => {
    expect(() => attentionForward(out, lse, new Float64Array(qkv.length) as unknown as Float32Array, B, T, C, NH)).toThrow(/Float32Array/);
  });
});
