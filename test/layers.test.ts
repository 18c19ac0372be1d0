// The layer kernels (src/ffi.ts, section "layers") in three steps:
//   1. each float64 TypeScript reference backward against central finite differences of the
//      float64 reference forward (so the yardstick itself is proven right);
//   2. each Zig kernel against its reference on odd shapes (sizes not multiples of 8 or of any
//      block size, size 1, padded vocabularies), with a tolerance justified where it is used;
//   3. determinism (repeat calls and thread counts give bit-identical results) and argument checks.
// u = 2^-24 is the float32 unit roundoff.
import { describe, expect, test } from "bun:test";
import {
  defaultThreadCount, encoderBackward, encoderForward, geluBackward, geluForward, KernelArgumentError, layernormBackward, layernormForward,
  residualForward, setThreads, zeroFill, softmaxCrossEntropyBackward, softmaxCrossEntropyForward,
} from "../src/ffi.ts";
import {
  encoderBackwardRef, encoderForwardRef, geluBackwardRef, geluForwardRef, layernormBackwardRef, layernormForwardRef,
  residualForwardRef, softmaxCrossEntropyBackwardRef, softmaxCrossEntropyForwardRef,
} from "../src/ref/layers.ts";
import { numericGradient, toF64, weightedSum } from "./helpers/gradcheck.ts";
import { randomF32, randomTokens, worstRatio } from "./helpers/random.ts";

const U = 2 ** -24;
const abs = (a: Float32Array) => a.map(Math.abs);
const same = (a: Float32Array, b: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));

/** Finite differences agree with a float64 analytic gradient to ~1e-9 relative (see numericGradient); 1e-6 leaves margin. */
function expectGradClose(analytic: Float64Array, numeric: Float64Array, label: string): void {
  const ratio = worstRatio(analytic, numeric, 1e-7, 1e-6);
  if (!(ratio <= 1)) throw new Error(`${label}: finite differences disagree (worst ratio ${ratio})`);
}

function withThreads<T>(count: number, run: () => T): T {
  setThreads(count);
  try {
    return run();
  } finally {
    setThreads(defaultThreadCount());
  }
}

// ---------------------------------------------------------------------------------------------
describe("encoder", () => {
  test("reference backward = finite differences of the reference forward", () => {
    const [B, T, C, Vp, maxT] = [2, 3, 5, 4, 4];
    const inp = Int32Array.from([0, 3, 3, 1, 0, 3]);
    const wte = toF64(randomF32(Vp * C, 1)), wpe = toF64(randomF32(maxT * C, 2)), dout = toF64(randomF32(B * T * C, 3));
    const loss = () => {
      const out = new Float64Array(B * T * C);
      encoderForwardRef(out, inp, wte, wpe, B, T, C);
      return weightedSum(out, dout);
    };
    const dwte = new Float64Array(Vp * C), dwpe = new Float64Array(maxT * C);
    encoderBackwardRef(dwte, dwpe, dout, inp, B, T, C, Vp, maxT);
    expectGradClose(dwte, numericGradient(wte, loss), "dwte");
    expectGradClose(dwpe, numericGradient(wpe, loss), "dwpe");
  });

  for (const [B, T, C, Vp, maxT] of [[1, 1, 1, 1, 1], [2, 5, 7, 3, 9], [3, 17, 67, 13, 17], [4, 9, 130, 50, 64]]) {
    test(`Zig vs reference B=${B} T=${T} C=${C} Vp=${Vp} maxT=${maxT}`, () => {
      const inp = randomTokens(B * T, Vp, 4 + C), wte = randomF32(Vp * C, 5), wpe = randomF32(maxT * C, 6), dout = randomF32(B * T * C, 7);
      // Forward is one float32 addition per element, correctly rounded on both sides: exact.
      const out = new Float32Array(B * T * C).fill(NaN), want = new Float32Array(B * T * C);
      encoderForward(out, inp, wte, wpe, B, T, C, Vp, maxT);
      encoderForwardRef(want, inp, wte, wpe, B, T, C);
      expect(same(out, want)).toBe(true);
      // Backward: each element is a float32 running sum of its start value and ≤ B·T gradient
      // rows, so |error| ≤ γ_{B·T+1}·(|start| + Σ|dout|) (Higham §3.1), computed from |inputs|.
      const startW = randomF32(Vp * C, 8), startP = randomF32(maxT * C, 9);
      const dwte = startW.slice(), dwpe = startP.slice();
      encoderBackward(dwte, dwpe, dout, inp, B, T, C, Vp, maxT);
      const wantW = toF64(startW), wantP = toF64(startP), absW = toF64(abs(startW)), absP = toF64(abs(startP));
      encoderBackwardRef(wantW, wantP, dout, inp, B, T, C, Vp, maxT);
      encoderBackwardRef(absW, absP, abs(dout), inp, B, T, C, Vp, maxT);
      const gamma = ((B * T + 1) * U) / (1 - (B * T + 1) * U);
      for (const [got, ref, bound] of [[dwte, wantW, absW], [dwpe, wantP, absP]] as const) {
        for (let i = 0; i < got.length; i++) {
          if (!(Math.abs(got[i] - ref[i]) <= gamma * bound[i] + 1e-30)) throw new Error(`element ${i}: ${got[i]} vs ${ref[i]}`);
        }
      }
    });
  }

  test("backward is bit-identical across repeats and thread counts, with many repeated ids", () => {
    const [B, T, C, Vp, maxT] = [4, 64, 200, 5, 64];
    const inp = randomTokens(B * T, Vp, 10), dout = randomF32(B * T * C, 11);
    const run = () => {
      const dwte = new Float32Array(Vp * C), dwpe = new Float32Array(maxT * C);
      encoderBackward(dwte, dwpe, dout, inp, B, T, C, Vp, maxT);
      return [dwte, dwpe];
    };
    const first = run(), again = run(), single = withThreads(1, run);
    for (let j = 0; j < 2; j++) expect(same(first[j], again[j]) && same(first[j], single[j])).toBe(true);
  });

  test("argument checks", () => {
    const out = new Float32Array(6), wte = new Float32Array(9), wpe = new Float32Array(6), inp = Int32Array.from([0, 2]);
    expect(() => encoderForward(out, inp, wte, wpe, 1, 2, 3, 3, 2)).not.toThrow();
    expect(() => encoderForward(out, Int32Array.from([0, 3]), wte, wpe, 1, 2, 3, 3, 2)).toThrow(/inp\[1\] = 3 is outside \[0, Vp=3\)/);
    expect(() => encoderForward(out, Int32Array.from([-1, 0]), wte, wpe, 1, 2, 3, 3, 2)).toThrow(/inp\[0\] = -1/);
    expect(() => encoderForward(out, inp, wte, wpe, 1, 2, 3, 3, 1)).toThrow(/T \(2\) exceeds maxT \(1\)/);
    expect(() => encoderForward(out, inp, new Float32Array(8), wpe, 1, 2, 3, 3, 2)).toThrow(/wte has 8 elements/);
    expect(() => encoderForward(out, new Float32Array(2) as unknown as Int32Array, wte, wpe, 1, 2, 3, 3, 2)).toThrow(/Int32Array/);
    expect(() => encoderBackward(wte, wpe, out, Int32Array.from([5, 0]), 1, 2, 3, 3, 2)).toThrow(KernelArgumentError);
    expect(() => encoderBackward(wte, wpe, out, inp, 1, 2, 0, 3, 2)).toThrow(/C must be a positive integer/);
  });
});

// ---------------------------------------------------------------------------------------------
describe("layernorm", () => {
  test("reference backward = finite differences of the reference forward", () => {
    const [N, C] = [3, 7];
    const inp = toF64(randomF32(N * C, 20, 2)), weight = toF64(randomF32(C, 21)), bias = toF64(randomF32(C, 22)), dout = toF64(randomF32(N * C, 23));
    const loss = () => {
      const out = new Float64Array(N * C);
      layernormForwardRef(out, new Float64Array(N), new Float64Array(N), inp, weight, bias, N, C);
      return weightedSum(out, dout);
    };
    const mean = new Float64Array(N), rstd = new Float64Array(N);
    layernormForwardRef(new Float64Array(N * C), mean, rstd, inp, weight, bias, N, C);
    const dinp = new Float64Array(N * C), dweight = new Float64Array(C), dbias = new Float64Array(C);
    layernormBackwardRef(dinp, dweight, dbias, dout, inp, weight, mean, rstd, N, C);
    expectGradClose(dinp, numericGradient(inp, loss), "dinp");
    expectGradClose(dweight, numericGradient(weight, loss), "dweight");
    expectGradClose(dbias, numericGradient(bias, loss), "dbias");
  });

  // Tolerances. Forward: the float32 row sums (mean, variance) carry errors of order √C·u relative
  // (worst case C·u), and (x - mean)·rstd·w + b adds a few roundings; with |x| ≤ ~11, |w| ≤ 2, C ≤ 769
  // the observed worst error is ~4e-7·(1+|out|), so we allow 2e-6·(1+|out|). A formula or indexing
  // error (wrong variance divisor, eps outside the sqrt, a lost channel) moves outputs by ≥ 1e-3.
  // Backward: dinp is rstd·(dnorm - mean(dnorm) - norm·mean(dnorm·norm)), whose terms (≤ ~10) cancel,
  // so an absolute bound: observed ≤ 6e-8, allowed 2e-6. dweight/dbias are float32 sums of N terms of
  // size ≤ ~4: γ_N·Σ|terms| ≤ ~1e-5·N worst case (observed ≤ 1e-7·N), so atol 1e-5·N.
  for (const [N, C] of [[1, 1], [1, 9], [5, 1], [7, 13], [33, 67], [17, 769], [64, 768]]) {
    test(`Zig vs reference N=${N} C=${C}`, () => {
      const inp = randomF32(N * C, 24 + C, 3), weight = randomF32(C, 25, 2), bias = randomF32(C, 26), dout = randomF32(N * C, 27);
      for (let i = 0; i < N * C; i++) inp[i] += (i % C) * 0.01; // a row mean that is not ~0
      const out = new Float32Array(N * C).fill(NaN), mean = new Float32Array(N), rstd = new Float32Array(N);
      layernormForward(out, mean, rstd, inp, weight, bias, N, C);
      const want = new Float64Array(N * C), wantMean = new Float64Array(N), wantRstd = new Float64Array(N);
      layernormForwardRef(want, wantMean, wantRstd, inp, weight, bias, N, C);
      expect(worstRatio(out, want, 2e-6, 2e-6)).toBeLessThanOrEqual(1);
      expect(worstRatio(mean, wantMean, 1e-6, 1e-5)).toBeLessThanOrEqual(1);
      expect(worstRatio(rstd, wantRstd, 1e-30, 1e-5)).toBeLessThanOrEqual(1);

      const start = randomF32(N * C + 2 * C, 28);
      const dinp = start.slice(0, N * C), dweight = start.slice(N * C, N * C + C), dbias = start.slice(N * C + C);
      layernormBackward(dinp, dweight, dbias, dout, inp, weight, mean, rstd, N, C);
      // The reference uses the kernel's saved float32 mean/rstd, as a caller would.
      const wantD = toF64(start.subarray(0, N * C)), wantW = toF64(start.subarray(N * C, N * C + C)), wantB = toF64(start.subarray(N * C + C));
      layernormBackwardRef(wantD, wantW, wantB, dout, inp, weight, mean, rstd, N, C);
      expect(worstRatio(dinp, wantD, 2e-6, 2e-6)).toBeLessThanOrEqual(1);
      expect(worstRatio(dweight, wantW, 1e-5 * N, 1e-5)).toBeLessThanOrEqual(1);
      expect(worstRatio(dbias, wantB, 1e-5 * N, 1e-5)).toBeLessThanOrEqual(1);
    });
  }

  test("backward is bit-identical across repeats and thread counts", () => {
    const [N, C] = [97, 200];
    const inp = randomF32(N * C, 30), weight = randomF32(C, 31), bias = randomF32(C, 32), dout = randomF32(N * C, 33);
    const mean = new Float32Array(N), rstd = new Float32Array(N);
    layernormForward(new Float32Array(N * C), mean, rstd, inp, weight, bias, N, C);
    const run = () => {
      const dinp = new Float32Array(N * C), dw = new Float32Array(C), db = new Float32Array(C);
      layernormBackward(dinp, dw, db, dout, inp, weight, mean, rstd, N, C);
      return [dinp, dw, db];
    };
    const first = run(), again = run(), single = withThreads(1, run);
    for (let j = 0; j < 3; j++) expect(same(first[j], again[j]) && same(first[j], single[j])).toBe(true);
  });

  test("argument checks", () => {
    const x = new Float32Array(6), c = new Float32Array(3), n = new Float32Array(2);
    expect(() => layernormForward(x, n, n, x, c, c, 2, 3)).not.toThrow();
    expect(() => layernormForward(x, n, new Float32Array(3), x, c, c, 2, 3)).toThrow(/rstd has 3 elements, the shape needs 2/);
    expect(() => layernormBackward(x, c, new Float32Array(2), x, x, c, n, n, 2, 3)).toThrow(/dbias/);
    expect(() => layernormForward(x, n, n, x, c, c, 2.5, 3)).toThrow(/N must be a positive integer/);
  });
});

// ---------------------------------------------------------------------------------------------
describe("residual", () => {
  test("its gradient is dout for both inputs (why the model shares one residual-gradient buffer and needs no kernel)", () => {
    const n = 5, a = toF64(randomF32(n, 40)), b = toF64(randomF32(n, 41)), dout = toF64(randomF32(n, 42));
    const loss = () => {
      const out = new Float64Array(n);
      residualForwardRef(out, a, b, n);
      return weightedSum(out, dout);
    };
    expectGradClose(dout, numericGradient(a, loss), "da");
    expectGradClose(dout, numericGradient(b, loss), "db");
  });

  for (const n of [1, 7, 9, 16383, 16385, 100_003]) {
    test(`Zig vs reference n=${n} (one float32 addition per element: exact)`, () => {
      const a = randomF32(n, 43), b = randomF32(n, 44);
      const out = new Float32Array(n).fill(NaN), want = new Float32Array(n);
      residualForward(out, a, b, n);
      residualForwardRef(want, a, b, n);
      expect(same(out, want)).toBe(true);
    });
  }

  for (const n of [1, 16385, 100_003]) {
    test(`zeroFill n=${n} clears exactly the array it is given`, () => {
      const whole = randomF32(n + 2, 45);
      const edges = [whole[0], whole[n + 1]];
      zeroFill(whole.subarray(1, n + 1));
      expect([whole[0], whole[n + 1]]).toEqual(edges);
      expect(whole.subarray(1, n + 1).every((x) => x === 0 && !Object.is(x, -0))).toBe(true);
    });
  }

  test("argument checks", () => {
    const x = new Float32Array(4);
    expect(() => residualForward(x, x, new Float32Array(3), 4)).toThrow(/b has 3 elements/);
    expect(() => residualForward(x, x, x, 0)).toThrow(/n must be a positive integer/);
  });
});

// ---------------------------------------------------------------------------------------------
describe("gelu", () => {
  const LARGE = [10, -10, 11.3, -11.3, 20, -20, 50, -50, 1e4, -1e4, 1e13, -1e13, 3e38, -3e38];

  test("reference backward = finite differences of the reference forward, including large |x|", () => {
    const inp = Float64Array.from([...randomF32(9, 50, 4), 0, 10, -10, 50, -50]);
    const dout = toF64(randomF32(inp.length, 51));
    const loss = () => {
      const out = new Float64Array(inp.length);
      geluForwardRef(out, inp, inp.length);
      return weightedSum(out, dout);
    };
    const dinp = new Float64Array(inp.length);
    geluBackwardRef(dinp, inp, dout, inp.length);
    expectGradClose(dinp, numericGradient(inp, loss), "dinp");
  });

  // Forward: gelu is computed as x·sigmoid(z) in float32. The sigmoid's relative error is a few u
  // plus the propagated rounding of z (≤ ~3u·|z|, |z| ≤ ~20 for |x| ≤ 4), so 4e-6 relative with a
  // 1e-7 absolute floor (outputs near 0) holds with margin; the erf GELU differs by ~1e-3 and fails.
  // Backward: gelu' = s + x·s(1-s)·dz/dx with terms ≤ ~2 that cancel where gelu' ≈ 0 (x ≈ -0.75),
  // so an absolute 1e-6 plus 4e-6 relative, times |dout| ≤ 1, on top of the accumulated start.
  for (const n of [1, 7, 9, 16385, 50_001]) {
    test(`Zig vs reference n=${n}`, () => {
      const inp = randomF32(n, 52 + n, 4), dout = randomF32(n, 53);
      const out = new Float32Array(n).fill(NaN), want = new Float64Array(n);
      geluForward(out, inp, n);
      geluForwardRef(want, inp, n);
      expect(worstRatio(out, want, 1e-7, 4e-6)).toBeLessThanOrEqual(1);
      const start = randomF32(n, 54), dinp = start.slice(), wantD = toF64(start);
      geluBackward(dinp, inp, dout, n);
      geluBackwardRef(wantD, inp, dout, n);
      expect(worstRatio(dinp, wantD, 1e-6, 4e-6)).toBeLessThanOrEqual(1);
    });
  }

  test("large |x|: finite, and equal to x/0 forward and 1/0 backward", () => {
    const inp = Float32Array.from(LARGE), n = inp.length;
    const out = new Float32Array(n), dinp = new Float32Array(n);
    geluForward(out, inp, n);
    geluBackward(dinp, inp, new Float32Array(n).fill(1), n);
    for (let i = 0; i < n; i++) {
      const x = inp[i];
      expect(Number.isFinite(out[i]) && Number.isFinite(dinp[i])).toBe(true);
      if (Math.abs(x) < 1e30) {
        expect(Math.abs(out[i] - geluForwardRefScalar(x))).toBeLessThanOrEqual(4e-6 * Math.abs(x) + 1e-30);
        expect(Math.abs(dinp[i] - geluGradRefScalar(x))).toBeLessThanOrEqual(1e-6);
      }
      expect(out[i]).toBe(x > 0 ? x : Math.abs(x) > 20 ? -0 : out[i]);
      if (Math.abs(x) >= 20) expect(dinp[i]).toBe(x > 0 ? 1 : 0);
    }
  });

  test("NaN in, NaN out (no clamp hides it)", () => {
    const out = new Float32Array(2), dinp = new Float32Array(2);
    geluForward(out, Float32Array.from([NaN, 1]), 2);
    geluBackward(dinp, Float32Array.from([NaN, 1]), Float32Array.from([1, 1]), 2);
    expect(Number.isNaN(out[0]) && Number.isNaN(dinp[0])).toBe(true);
  });

  test("argument checks", () => {
    expect(() => geluForward(new Float32Array(3), new Float32Array(4), 4)).toThrow(/out has 3 elements/);
    expect(() => geluBackward(new Float32Array(4), new Float32Array(4), new Float32Array(4), -4)).toThrow(KernelArgumentError);
  });
});

function geluForwardRefScalar(x: number): number {
  const out = new Float64Array(1);
  geluForwardRef(out, Float64Array.of(x), 1);
  return out[0];
}
function geluGradRefScalar(x: number): number {
  const d = new Float64Array(1);
  geluBackwardRef(d, Float64Array.of(x), Float64Array.of(1), 1);
  return d[0];
}

// ---------------------------------------------------------------------------------------------
describe("softmax cross-entropy", () => {
  test("reference backward = finite differences of the reference loss, padded columns included", () => {
    const [BT, V, Vp] = [3, 5, 8];
    const logits = toF64(randomF32(BT * Vp, 60, 3)), targets = Int32Array.from([4, 0, 2]), scale = 0.7;
    const loss = () => {
      const losses = new Float64Array(BT);
      softmaxCrossEntropyForwardRef(new Float64Array(BT * Vp), losses, logits, targets, BT, V, Vp);
      return scale * losses.reduce((a, b) => a + b, 0);
    };
    const probs = new Float64Array(BT * Vp);
    softmaxCrossEntropyForwardRef(probs, new Float64Array(BT), logits, targets, BT, V, Vp);
    const dlogits = new Float64Array(BT * Vp);
    softmaxCrossEntropyBackwardRef(dlogits, probs, targets, scale, BT, V, Vp);
    expectGradClose(dlogits, numericGradient(logits, loss), "dlogits");
  });

  // Losses: brief target is PyTorch-level agreement, ~1e-6 relative. The kernel subtracts the row
  // max, takes float32 exp (≤ 1 ulp) of float32 differences and sums in float64: the loss error is
  // ~u·|l_t - max| + ~u·log(sum) absolute, so 1e-6 relative (1e-6 absolute floor) holds. Probs:
  // exp of a rounded difference (≤ u·|x - max| ≤ ~30u relative here) and one scaling: 4e-6
  // relative, 1e-12 absolute for the far tail. Backward: (p - onehot)·scale in float32 from the
  // kernel's own probs, at most 2 roundings: 3u relative (and exact 0 on padded columns).
  for (const [BT, V, Vp] of [[1, 1, 1], [1, 1, 8], [3, 5, 8], [7, 257, 300], [5, 1001, 1024], [2, 50257, 50304]]) {
    test(`Zig vs reference BT=${BT} V=${V} Vp=${Vp}`, () => {
      const logits = randomF32(BT * Vp, 61 + V, 8);
      for (let i = 0; i < logits.length; i++) if (i % Vp >= V) logits[i] = 1e30; // padding must be ignored
      const targets = randomTokens(BT, V, 62);
      const probs = new Float32Array(BT * Vp).fill(NaN), losses = new Float32Array(BT).fill(NaN);
      softmaxCrossEntropyForward(probs, losses, logits, targets, BT, V, Vp);
      const wantP = new Float64Array(BT * Vp), wantL = new Float64Array(BT);
      softmaxCrossEntropyForwardRef(wantP, wantL, logits, targets, BT, V, Vp);
      expect(worstRatio(losses, wantL, 1e-6, 1e-6)).toBeLessThanOrEqual(1);
      expect(worstRatio(probs, wantP, 1e-12, 4e-6)).toBeLessThanOrEqual(1);
      for (let i = 0; i < probs.length; i++) if (i % Vp >= V) expect(probs[i]).toBe(0);

      const scale = 1 / (BT * 3);
      const dlogits = new Float32Array(BT * Vp).fill(NaN), wantD = new Float64Array(BT * Vp);
      softmaxCrossEntropyBackward(dlogits, probs, targets, scale, BT, V, Vp);
      softmaxCrossEntropyBackwardRef(wantD, probs, targets, Math.fround(scale), BT, V, Vp);
      expect(worstRatio(dlogits, wantD, 1e-30, 3 * U)).toBeLessThanOrEqual(1);
      for (let i = 0; i < dlogits.length; i++) if (i % Vp >= V) expect(dlogits[i]).toBe(0);
      // In place (dlogits aliasing probs) gives the same bits.
      const inPlace = probs.slice();
      softmaxCrossEntropyBackward(inPlace, inPlace, targets, scale, BT, V, Vp);
      expect(same(inPlace, dlogits)).toBe(true);
    });
  }

  test("extreme logits: exp never overflows (the row max is subtracted)", () => {
    const [BT, V, Vp] = [2, 6, 8];
    const logits = Float32Array.from([100, 200, -1e30, 1e4, -1e4, 0, 5, 5, -1e5, -1e5, -1e5, -1e5, -1e5, -1e5, 0, 0]);
    const targets = Int32Array.from([3, 1]), probs = new Float32Array(BT * Vp), losses = new Float32Array(BT);
    softmaxCrossEntropyForward(probs, losses, logits, targets, BT, V, Vp);
    expect(Array.from(probs.subarray(0, 8))).toEqual([0, 0, 0, 1, 0, 0, 0, 0]);
    expect(losses[0]).toBe(0);
    for (let c = 0; c < V; c++) expect(probs[8 + c]).toBeCloseTo(1 / 6, 7);
    expect(losses[1]).toBeCloseTo(Math.log(6), 6);
  });

  test("argument checks", () => {
    const p = new Float32Array(16), l = new Float32Array(2);
    expect(() => softmaxCrossEntropyForward(p, l, p, Int32Array.from([0, 6]), 2, 6, 8)).toThrow(/targets\[1\] = 6 is outside \[0, V=6\)/);
    expect(() => softmaxCrossEntropyForward(p, l, p, Int32Array.from([0, 1]), 2, 9, 8)).toThrow(/V \(9\) exceeds Vp \(8\)/);
    expect(() => softmaxCrossEntropyBackward(p, p, Int32Array.from([-2, 1]), 1, 2, 6, 8)).toThrow(/targets\[0\] = -2/);
    expect(() => softmaxCrossEntropyBackward(p, p, Int32Array.from([0, 1]), NaN, 2, 6, 8)).toThrow(/dlossScale must be finite/);
    expect(() => softmaxCrossEntropyBackward(p, new Float32Array(15), Int32Array.from([0, 1]), 1, 2, 6, 8)).toThrow(/probs has 15/);
  });
});

// ---------------------------------------------------------------------------------------------
describe("determinism of the row/element kernels", () => {
  test("forward and backward repeat bit-identically on 1 and 2 threads", () => {
    const [N, C, V, Vp] = [37, 101, 1000, 1031];
    const x = randomF32(N * C, 70, 3), w = randomF32(C, 71), b = randomF32(C, 72), logits = randomF32(N * Vp, 73, 5), targets = randomTokens(N, V, 74);
    const run = () => {
      const ln = new Float32Array(N * C), mean = new Float32Array(N), rstd = new Float32Array(N);
      layernormForward(ln, mean, rstd, x, w, b, N, C);
      const g = new Float32Array(N * C), dg = new Float32Array(N * C);
      geluForward(g, ln, N * C);
      geluBackward(dg, ln, x, N * C);
      const probs = new Float32Array(N * Vp), losses = new Float32Array(N);
      softmaxCrossEntropyForward(probs, losses, logits, targets, N, V, Vp);
      softmaxCrossEntropyBackward(probs, probs, targets, 1 / N, N, V, Vp);
      return [ln, mean, rstd, g, dg, probs, losses];
    };
    const first = run(), again = run(), single = withThreads(1, run);
    for (let j = 0; j < first.length; j++) expect(same(first[j], again[j]) && same(first[j], single[j])).toBe(true);
  });
});
