// Each matmul layout against the float64 TypeScript reference, on odd shapes.
//
// Error bound: a float32 sum of K products, computed in any order with or without FMA, differs from
// the exact sum by at most γ_K·Σ|a_k·b_k| with γ_K = K·u/(1-K·u), u = 2^-24 (Higham, "Accuracy and
// Stability of Numerical Algorithms", §3.1). We check that rigorous bound element by element, using
// the reference applied to |a| and |b| for Σ|a_k·b_k|. For "+=" layouts the pre-existing value adds
// one more rounding (another u·|result|). A wrong index or a missing tile gives errors of order
// |a_k·b_k| itself, far above the bound.
import { describe, expect, test } from "bun:test";
import { bf16Unavailable, defaultThreadCount, matmulBackwardInput, matmulBackwardWeight, matmulForward, setMatmulPrecision, setThreads, KernelArgumentError } from "../src/ffi.ts";
import { roundedToBf16, roundToBf16 } from "../src/ref/bf16.ts";
import { matmulBackwardInputRef, matmulBackwardWeightRef, matmulForwardRef } from "../src/ref/matmul.ts";
import { randomF32 } from "./helpers/random.ts";

const U = 2 ** -24;
const abs = (a: Float32Array) => a.map(Math.abs);

function expectWithinBound(got: Float32Array, want: Float64Array, absSum: Float64Array, terms: number, label: string): void {
  const gamma = (terms * U) / (1 - terms * U);
  let worst = 0;
  for (let i = 0; i < got.length; i++) {
    const bound = gamma * absSum[i] + 2 * U * Math.abs(want[i]) + 1e-30;
    const ratio = Math.abs(got[i] - want[i]) / bound;
    if (!(ratio <= 1)) throw new Error(`${label}: element ${i} got ${got[i]}, want ${want[i]}, bound ${bound}`);
    worst = Math.max(worst, ratio);
  }
  expect(worst).toBeLessThanOrEqual(1);
}

// Float64 copies of the reference, so the yardstick itself does not round to float32.
function refForward(inp: Float32Array, w: Float32Array, bias: Float32Array | null, BT: number, C: number, OC: number): Float64Array {
  const out = new Float64Array(BT * OC);
  matmulForwardRef(out as unknown as Float32Array, inp, w, bias, BT, C, OC);
  return out;
}

const SHAPES: Array<[number, number, number]> = [
  [1, 1, 1], [1, 7, 1], [7, 1, 9], [3, 5, 7], [65, 33, 17], [129, 65, 7], [2, 769, 65], [17, 768, 129], [64, 96, 200], [257, 128, 48],
  // Past one K block (192–256) and one M sub-block, ragged everywhere; BT 32 and 33 straddle the
  // forward path's switch from streaming dot products to the packed GEMM (kernels/matmul.zig).
  [5, 300, 37], [32, 300, 37], [33, 300, 37], [37, 1025, 45], [199, 519, 67],
];

describe("matmul forward", () => {
  for (const [BT, C, OC] of SHAPES) {
    for (const withBias of [true, false]) {
      test(`BT=${BT} C=${C} OC=${OC} bias=${withBias}`, () => {
        const inp = randomF32(BT * C, 1 + BT), w = randomF32(OC * C, 2 + OC), bias = withBias ? randomF32(OC, 3) : null;
        const out = new Float32Array(BT * OC).fill(NaN);
        matmulForward(out, inp, w, bias, BT, C, OC);
        const want = refForward(inp, w, bias, BT, C, OC);
        const absSum = refForward(abs(inp), abs(w), bias && abs(bias), BT, C, OC);
        expectWithinBound(out, want, absSum, C + 1, "forward");
      });
    }
  }
});

describe("matmul input grad", () => {
  for (const [BT, C, OC] of SHAPES) {
    test(`BT=${BT} C=${C} OC=${OC}`, () => {
      const dout = randomF32(BT * OC, 4 + BT), w = randomF32(OC * C, 5 + C), start = randomF32(BT * C, 6);
      const dinp = start.slice();
      matmulBackwardInput(dinp, dout, w, BT, C, OC);
      const want = new Float64Array(start);
      matmulBackwardInputRef(want as unknown as Float32Array, dout, w, BT, C, OC);
      const absSum = new Float64Array(abs(start));
      matmulBackwardInputRef(absSum as unknown as Float32Array, abs(dout), abs(w), BT, C, OC);
      expectWithinBound(dinp, want, absSum, OC + 1, "input grad");
    });
  }
});

describe("matmul weight grad", () => {
  for (const [BT, C, OC] of SHAPES) {
    for (const withBias of [true, false]) {
      test(`BT=${BT} C=${C} OC=${OC} bias=${withBias}`, () => {
        const dout = randomF32(BT * OC, 7 + OC), inp = randomF32(BT * C, 8 + C);
        const startW = randomF32(OC * C, 9), startB = randomF32(OC, 10);
        const dw = startW.slice(), db = withBias ? startB.slice() : null;
        matmulBackwardWeight(dw, db, dout, inp, BT, C, OC);
        const wantW = new Float64Array(startW), wantB = new Float64Array(startB);
        matmulBackwardWeightRef(wantW as unknown as Float32Array, wantB as unknown as Float32Array, dout, inp, BT, C, OC);
        const absW = new Float64Array(abs(startW)), absB = new Float64Array(abs(startB));
        matmulBackwardWeightRef(absW as unknown as Float32Array, absB as unknown as Float32Array, abs(dout), abs(inp), BT, C, OC);
        expectWithinBound(dw, wantW, absW, BT + 1, "weight grad");
        if (db !== null) expectWithinBound(db, wantB, absB, BT + 1, "bias grad");
      });
    }
  }
});

describe("matmul determinism and threads", () => {
  test("repeated calls and 1 vs N threads give bit-identical results, within the bound", () => {
    const [BT, C, OC] = [97, 200, 131];
    const inp = randomF32(BT * C, 11), w = randomF32(OC * C, 12), bias = randomF32(OC, 13), dout = randomF32(BT * OC, 14);
    const run = () => {
      const out = new Float32Array(BT * OC), dinp = new Float32Array(BT * C), dw = new Float32Array(OC * C), db = new Float32Array(OC);
      matmulForward(out, inp, w, bias, BT, C, OC);
      matmulBackwardInput(dinp, dout, w, BT, C, OC);
      matmulBackwardWeight(dw, db, dout, inp, BT, C, OC);
      return [out, dinp, dw, db];
    };
    const first = run();
    for (let i = 0; i < 5; i++) {
      const again = run();
      for (let j = 0; j < first.length; j++) expect(Buffer.from(again[j].buffer).equals(Buffer.from(first[j].buffer))).toBe(true);
    }
    setThreads(1);
    try {
      const single = run();
      const want = refForward(inp, w, bias, BT, C, OC);
      const absSum = refForward(abs(inp), abs(w), abs(bias), BT, C, OC);
      expectWithinBound(single[0], want, absSum, C + 1, "forward, 1 thread");
      // Tiles are split across threads, never the reduction: any thread count gives the same bits.
      for (let j = 0; j < first.length; j++) expect(Buffer.from(single[j].buffer).equals(Buffer.from(first[j].buffer))).toBe(true);
    } finally {
      setThreads(defaultThreadCount());
    }
  });
});

describe("matmul argument checks", () => {
  const a = new Float32Array(6), w = new Float32Array(6), out = new Float32Array(4);
  test("wrong lengths throw before any call", () => {
    expect(() => matmulForward(out, a, w, null, 2, 3, 3)).toThrow(KernelArgumentError);
    expect(() => matmulForward(out, a, w, new Float32Array(3), 2, 3, 2)).toThrow(/bias has 3 elements/);
    expect(() => matmulBackwardInput(a, out, new Float32Array(5), 2, 3, 2)).toThrow(/weight has 5 elements/);
    expect(() => matmulBackwardWeight(w, new Float32Array(1), out, a, 2, 3, 2)).toThrow(/dbias/);
  });
  test("zero, negative and fractional sizes throw", () => {
    for (const bad of [0, -1, 1.5, NaN, 2 ** 31]) {
      expect(() => matmulForward(out, a, w, null, bad, 3, 2)).toThrow(/BT must be a positive integer/);
    }
  });
  test("arrays of the wrong type throw", () => {
    expect(() => matmulForward(out, new Float64Array(6) as unknown as Float32Array, w, null, 2, 3, 2)).toThrow(/Float32Array/);
  });
});

// --matmul-precision bf16: operands are rounded to bf16 when packed, products of two bf16 values
// are exact in float32 and summed in float32. So against the float64 product of the ROUNDED
// operands the same γ_K bound holds (K additions, the pairs' two adds included); against the
// unrounded operands the result must differ by far more than that bound somewhere — proof that
// the rounding happened — while staying within the bf16 bound: each operand rounds by at most
// 2^-9 relative, so each product by at most 2^-8 + 2^-18, i.e. |error| ≤ (2^-8 + 2^-18 + γ_K)·Σ|a·b|.
describe("matmul with bf16 operands (skipped where the CPU or the build lacks AVX512_BF16)", () => {
  const reason = bf16Unavailable();
  const BF16_SHAPES: Array<[number, number, number]> = [[33, 7, 5], [64, 96, 200], [257, 128, 48], [37, 1025, 45], [199, 519, 67]];
  const layouts = ["forward", "input grad", "weight grad"] as const;
  for (const layout of layouts) {
    for (const [BT, C, OC] of BF16_SHAPES) {
      test.skipIf(reason !== null)(`${layout} BT=${BT} C=${C} OC=${OC}`, () => {
        const x = randomF32(BT * C, 11 + BT), w = randomF32(OC * C, 12 + OC), y = randomF32(BT * OC, 13 + C), bias = randomF32(OC, 14);
        const xr = roundedToBf16(x), wr = roundedToBf16(w), yr = roundedToBf16(y);
        let got: Float32Array, want: Float64Array, exactWant: Float64Array, absSum: Float64Array, terms: number;
        setMatmulPrecision("bf16");
        try {
          if (layout === "forward") {
            got = new Float32Array(BT * OC).fill(NaN);
            matmulForward(got, x, w, bias, BT, C, OC);
            want = refForward(xr, wr, bias, BT, C, OC);
            exactWant = refForward(x, w, bias, BT, C, OC);
            absSum = refForward(abs(x), abs(w), abs(bias), BT, C, OC);
            terms = C + 1;
          } else if (layout === "input grad") {
            got = x.slice();
            matmulBackwardInput(got, y, w, BT, C, OC);
            want = Float64Array.from(x);
            matmulBackwardInputRef(want as unknown as Float32Array, yr, wr, BT, C, OC);
            exactWant = Float64Array.from(x);
            matmulBackwardInputRef(exactWant as unknown as Float32Array, y, w, BT, C, OC);
            absSum = Float64Array.from(abs(x));
            matmulBackwardInputRef(absSum as unknown as Float32Array, abs(y), abs(w), BT, C, OC);
            terms = OC + 1;
          } else {
            got = w.slice();
            matmulBackwardWeight(got, null, y, x, BT, C, OC);
            want = Float64Array.from(w);
            matmulBackwardWeightRef(want as unknown as Float32Array, null, yr, xr, BT, C, OC);
            exactWant = Float64Array.from(w);
            matmulBackwardWeightRef(exactWant as unknown as Float32Array, null, y, x, BT, C, OC);
            absSum = Float64Array.from(abs(w));
            matmulBackwardWeightRef(absSum as unknown as Float32Array, null, abs(y), abs(x), BT, C, OC);
            terms = BT + 1;
          }
        } finally {
          setMatmulPrecision("fp32");
        }
        expectWithinBound(got, want, absSum, terms, `bf16 ${layout}`);
        const gamma = (terms * U) / (1 - terms * U);
        let roundingSeen = false;
        for (let i = 0; i < got.length; i++) {
          const error = Math.abs(got[i] - exactWant[i]);
          if (!(error <= (2 ** -8 + 2 ** -18 + gamma) * absSum[i] + 2 * U * Math.abs(exactWant[i]))) throw new Error(`bf16 ${layout}: element ${i} is ${got[i]}, float64 of the f32 operands ${exactWant[i]}`);
          if (error > 4 * (gamma * absSum[i] + 2 * U * Math.abs(exactWant[i]))) roundingSeen = true;
        }
        expect(roundingSeen).toBe(true);
      });
    }
  }

  test.skipIf(reason !== null)("the few-row forward (≤ 32 rows) stays fp32; switching back to fp32 restores fp32 results bit for bit", () => {
    const [BT, C, OC] = [40, 64, 48];
    const x = randomF32(BT * C, 21), w = randomF32(OC * C, 22);
    const fp32 = new Float32Array(BT * OC), bf16 = new Float32Array(BT * OC), again = new Float32Array(BT * OC);
    const few32 = new Float32Array(8 * OC), few16 = new Float32Array(8 * OC);
    matmulForward(fp32, x, w, null, BT, C, OC);
    matmulForward(few32, x.subarray(0, 8 * C), w, null, 8, C, OC);
    setMatmulPrecision("bf16");
    try {
      matmulForward(bf16, x, w, null, BT, C, OC);
      matmulForward(few16, x.subarray(0, 8 * C), w, null, 8, C, OC);
    } finally {
      setMatmulPrecision("fp32");
    }
    matmulForward(again, x, w, null, BT, C, OC);
    expect(Buffer.from(again.buffer).equals(Buffer.from(fp32.buffer))).toBe(true);
    expect(Buffer.from(bf16.buffer).equals(Buffer.from(fp32.buffer))).toBe(false);
    expect(Buffer.from(few16.buffer).equals(Buffer.from(few32.buffer))).toBe(true);
  });

  test("roundToBf16: nearest even, NaN, overflow", () => {
    expect(roundToBf16(1)).toBe(1);
    expect(roundToBf16(1 + 2 ** -8)).toBe(1); // a tie: to the even significand
    expect(roundToBf16(1 + 3 * 2 ** -8)).toBe(1 + 2 ** -6);
    expect(roundToBf16(3.4028234663852886e38)).toBe(Infinity);
    expect(roundToBf16(NaN)).toBeNaN();
  });
});
