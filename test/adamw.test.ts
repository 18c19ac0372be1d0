// AdamW and the gradient norm: a 2-step example worked by hand, PyTorch's torch.optim.AdamW
// (fixture written by scripts/gen_adamw_fixture.py), the float32-exact TypeScript reference, thread
// independence, and hyperparameter checks.
import { describe, expect, test } from "bun:test";
import { adamwUpdate, defaultThreadCount, gradNormSquared, KernelArgumentError, setThreads } from "../src/ffi.ts";
import { adamwUpdateRef, gradNormSquaredRef } from "../src/ref/layers.ts";
import fixture from "./fixtures/adamw.json";
import { randomF32 } from "./helpers/random.ts";

const same = (a: Float32Array, b: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
const ulp = (x: number) => 2 ** (Math.floor(Math.log2(Math.max(Math.abs(x), 2 ** -126))) - 23);

describe("adamw", () => {
  test("two steps worked by hand", () => {
    // lr 0.1, weight decay 0.5, β1 0.5, β2 0.75, p0 = 1, raw grads 1 then -1 with gradScale 0.5.
    // Step 1: p = 1·(1-0.05) = 0.95; m = 0.5·0.5 = 0.25; v = 0.25·0.5² = 0.0625;
    //   bc1 = 0.5, bc2 = 0.25; denom = √0.0625/√0.25 = 0.5; p = 0.95 - (0.1/0.5)·0.25/0.5 = 0.85.
    // Step 2: p = 0.85·0.95 = 0.8075; m = 0.125 - 0.25 = -0.125; v = 0.046875 + 0.0625 = 0.109375;
    //   bc1 = 0.75, bc2 = 0.4375; denom = √(0.109375/0.4375) = 0.5; p = 0.8075 + (0.1/0.75)·0.125/0.5 = 0.8408333….
    // The eps of 1e-8 shifts p by ~1e-9, below float32 resolution here; every other step is a few
    // float32 roundings of values near 1, so 3e-7 absolute.
    const n = 11;
    const p = new Float32Array(n).fill(1), m = new Float32Array(n), v = new Float32Array(n);
    adamwUpdate(p, new Float32Array(n).fill(1), m, v, 0.1, 0.5, 0.75, 1e-8, 0.5, 1, 0.5);
    for (let i = 0; i < n; i++) {
      expect(Math.abs(p[i] - 0.85)).toBeLessThan(3e-7);
      expect(m[i]).toBe(0.25);
      expect(v[i]).toBe(0.0625);
    }
    adamwUpdate(p, new Float32Array(n).fill(-1), m, v, 0.1, 0.5, 0.75, 1e-8, 0.5, 2, 0.5);
    for (let i = 0; i < n; i++) {
      expect(Math.abs(p[i] - (0.8075 + 0.1 / 0.75 * 0.25))).toBeLessThan(3e-7);
      expect(m[i]).toBe(-0.125);
      expect(v[i]).toBe(0.109375);
    }
  });

  test("matches torch.optim.AdamW (torch 1.13) over 3 steps", () => {
    // We mirror torch's operation order and its float64→float32 rounding of the scalars, so the
    // only possible differences are FMA contractions inside torch's vectorised CPU kernels
    // (add with alpha, addcmul, addcdiv): ≤ 1 ulp per op, a few ulp after 3 steps, i.e. ≤ ~5e-7
    // relative. We allow 1e-6 relative on p, m, v, and check each step's update p_t - p_{t-1}
    // against torch's to 4 ulp of p: with updates of ~1e-3·|p| that catches any error in the
    // update above ~0.05%, which the 1e-6 check on p alone could not.
    const n = fixture.initial.length;
    const p = Float32Array.from(fixture.initial), m = new Float32Array(n), v = new Float32Array(n);
    let previousTorch = Float32Array.from(fixture.initial);
    fixture.steps.forEach((s, index) => {
      const before = p.slice();
      adamwUpdate(p, Float32Array.from(s.grad), m, v, fixture.lr, fixture.beta1, fixture.beta2, fixture.eps, fixture.weight_decay, index + 1, 1);
      const torchP = Float32Array.from(s.param), torchM = Float32Array.from(s.m), torchV = Float32Array.from(s.v);
      for (let i = 0; i < n; i++) {
        expect(Math.abs(p[i] - torchP[i])).toBeLessThanOrEqual(1e-6 * Math.abs(torchP[i]));
        expect(Math.abs(m[i] - torchM[i])).toBeLessThanOrEqual(1e-6 * Math.abs(torchM[i]));
        expect(Math.abs(v[i] - torchV[i])).toBeLessThanOrEqual(1e-6 * Math.abs(torchV[i]));
        const ours = p[i] - before[i], theirs = torchP[i] - previousTorch[i];
        expect(Math.abs(ours - theirs)).toBeLessThanOrEqual(4 * ulp(torchP[i]));
      }
      previousTorch = torchP;
    });
  });

  test("Zig equals the float32 op-by-op reference bit for bit (odd n, several steps, grad scale)", () => {
    const n = 100_003;
    const p = randomF32(n, 1), m = new Float32Array(n), v = new Float32Array(n);
    const rp = p.slice(), rm = m.slice(), rv = v.slice();
    for (let step = 1; step <= 3; step++) {
      const g = randomF32(n, 10 + step, 10 ** (step - 2));
      adamwUpdate(p, g, m, v, 6e-4, 0.9, 0.95, 1e-8, 0.1, step, 0.25);
      adamwUpdateRef(rp, g, rm, rv, 6e-4, 0.9, 0.95, 1e-8, 0.1, step, 0.25);
    }
    expect(same(p, rp) && same(m, rm) && same(v, rv)).toBe(true);
  });

  test("hyperparameter and length checks", () => {
    const a = new Float32Array(4), b = new Float32Array(4), c = new Float32Array(4), d = new Float32Array(4);
    const call = (lr: number, b1: number, b2: number, eps: number, wd: number, step: number, scale = 1) => () => adamwUpdate(a, b, c, d, lr, b1, b2, eps, wd, step, scale);
    expect(call(1e-3, 0.9, 0.999, 1e-8, 0, 1)).not.toThrow();
    expect(call(-1, 0.9, 0.999, 1e-8, 0, 1)).toThrow(/lr must be finite and ≥ 0, got -1/);
    expect(call(NaN, 0.9, 0.999, 1e-8, 0, 1)).toThrow(/lr must be/);
    expect(call(1e-3, 1, 0.999, 1e-8, 0, 1)).toThrow(/beta1 must be in \[0, 1\)/);
    expect(call(1e-3, 0.9, -0.1, 1e-8, 0, 1)).toThrow(/beta2 must be in \[0, 1\)/);
    expect(call(1e-3, 0.9, 0.999, 0, 0, 1)).toThrow(/eps must be finite and > 0/);
    expect(call(1e-3, 0.9, 0.999, 1e-50, 0, 1)).toThrow(/eps must be finite and > 0 in float32/);
    expect(call(1e-3, 0.9, 0.999, 1e-8, Infinity, 1)).toThrow(/weightDecay/);
    expect(call(1e-3, 0.9, 0.999, 1e-8, 0, 0)).toThrow(/step must be an integer ≥ 1, got 0/);
    expect(call(1e-3, 0.9, 0.999, 1e-8, 0, 1.5)).toThrow(/step must be an integer/);
    expect(call(1e-3, 0.9, 0.999, 1e-8, 0, 1, NaN)).toThrow(/gradScale must be finite/);
    expect(call(1e-3, 0.9, 0.999, 1e-8, 0, 1, 1e39)).toThrow(/gradScale must be finite in float32/);
    expect(() => adamwUpdate(a, b, new Float32Array(3), d, 1e-3, 0.9, 0.999, 1e-8, 0, 1, 1)).toThrow(/m has 3 elements, the shape needs 4/);
    expect(() => adamwUpdate(new Float32Array(0), b, c, d, 1e-3, 0.9, 0.999, 1e-8, 0, 1, 1)).toThrow(KernelArgumentError);
  });
});

describe("gradNormSquared", () => {
  test("matches the float64 reference and is independent of the thread count", () => {
    // Squares of float32 values are exact in float64, so the only error is the float64 summation
    // order: ≤ n·2^-53·Σg² relative, 1e-11 at n = 1e5; we allow 1e-10.
    for (const n of [1, 7, 9, 255, 257, 100_003, 1_000_001]) {
      const g = randomF32(n, 20 + n, 3);
      const got = gradNormSquared(g), want = gradNormSquaredRef(g);
      expect(Math.abs(got - want)).toBeLessThanOrEqual(1e-10 * want);
      expect(gradNormSquared(g)).toBe(got);
      setThreads(1);
      try {
        expect(gradNormSquared(g)).toBe(got);
      } finally {
        setThreads(defaultThreadCount());
      }
    }
    expect(gradNormSquared(Float32Array.of(3, -4))).toBe(25);
    expect(() => gradNormSquared(new Float32Array(0))).toThrow(/grads is empty/);
  });
});
