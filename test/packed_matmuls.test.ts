// The inference matmuls on packed weights (kernels/panel_matmul.zig through src/infer/packed_matmuls.ts):
//   - matmulForwardPrepacked against a float64 reference, on both sides of the few-row limit
//     (packed panels up to matmulSmallRowsMax rows, the GEMM beyond);
//   - the engine on packed weights against the independent float64 GPT-2 forward, and a prompt's
//     rows bit-identical to the same tokens decoded one at a time (one FMA chain per output
//     whatever the row count);
//   - repack() after the weights change, and a weight that was never packed is refused.
import { describe, expect, test } from "bun:test";
import { kernelLimits, matmulForwardPrepacked, matmulPack, packedWeightFloats } from "../src/ffi.ts";
import { InferenceEngine } from "../src/infer/engine.ts";
import { PackedMatmuls } from "../src/infer/packed_matmuls.ts";
import type { GPT2Config } from "../src/model/config.ts";
import { KERNELS } from "../src/model/gpt2.ts";
import { randomWeights } from "../src/model/init.ts";
import { gpt2ForwardRef } from "../src/ref/gpt2.ts";
import { randomF32, randomTokens, worstRatio } from "./helpers/random.ts";

describe("matmulForwardPrepacked", () => {
  const small = kernelLimits().matmulSmallRowsMax;
  for (const [BT, C, OC] of [[1, 37, 45], [8, 64, 100], [small, 20, 33], [small + 1, 20, 33], [70, 48, 17]]) {
    test(`${BT}×${C} · (${OC}×${C})ᵀ + bias matches float64`, () => {
      const inp = randomF32(BT * C, 1), weight = randomF32(OC * C, 2), bias = randomF32(OC, 3);
      const packed = new Float32Array(packedWeightFloats(C, OC));
      matmulPack(packed, weight, C, OC);
      const out = new Float32Array(BT * OC);
      matmulForwardPrepacked(out, inp, weight, packed, bias, BT, C, OC);
      let worst = 0;
      for (let i = 0; i < BT; i++) {
        for (let o = 0; o < OC; o++) {
          let sum = bias[o];
          for (let k = 0; k < C; k++) sum += inp[i * C + k] * weight[o * C + k];
          worst = Math.max(worst, Math.abs(out[i * OC + o] - sum));
        }
      }
      // Terms uniform in [-1, 1]: float32 rounding of a C-term sum stays far below 1e-5·C; a wrong
      // or missing term is of order 0.1–1.
      expect(worst).toBeLessThan(1e-5 * C);
    });
  }
});

describe("the engine on packed weights", () => {
  const config: GPT2Config = { maxT: 40, V: 100, Vp: 128, L: 2, NH: 4, C: 64 };
  const { V, Vp } = config;
  const weights = randomWeights(config, 8, { std: 0.3 });
  const tokens = randomTokens(30, V, 4);

  test("a prompt's logits match the float64 reference and, bit for bit, the same tokens decoded one by one", () => {
    const packed = new PackedMatmuls(weights);
    const prompt = new InferenceEngine(weights, { packed }).prefill(tokens, { allLogits: true });
    const ref = gpt2ForwardRef(weights, tokens);
    const rows = new Float32Array(tokens.length * V);
    for (let t = 0; t < tokens.length; t++) rows.set(prompt.subarray(t * Vp, t * Vp + V), t * V);
    expect(worstRatio(rows, ref, 1e-4, 1e-4)).toBeLessThanOrEqual(1); // tolerance: test/generate.test.ts
    const single = new InferenceEngine(weights, { packed });
    for (let t = 0; t < tokens.length; t++) {
      const logits = t === 0 ? single.prefill(tokens.subarray(0, 1)) : single.decode(tokens[t]);
      const same = logits.every((x, j) => Object.is(x, prompt[t * Vp + j]));
      expect(`row ${t}: ${same ? "identical" : "differs"}`).toBe(`row ${t}: identical`);
    }
  });

  test("repack() follows changed weights; without it the snapshot stays", () => {
    const changed = randomWeights(config, 8, { std: 0.3 });
    const packed = new PackedMatmuls(changed);
    const before = new InferenceEngine(changed, { packed }).prefill(tokens.subarray(0, 5)).slice();
    for (let i = 0; i < changed.tensors.fcw.length; i++) changed.tensors.fcw[i] *= -1;
    expect(new InferenceEngine(changed, { packed }).prefill(tokens.subarray(0, 5))).toEqual(before);
    packed.repack();
    const after = new InferenceEngine(changed, { packed }).prefill(tokens.subarray(0, 5)).slice();
    const unpacked = new InferenceEngine(changed).prefill(tokens.subarray(0, 5));
    expect(worstRatio(after.subarray(0, V), unpacked.subarray(0, V), 1e-5, 1e-5)).toBeLessThanOrEqual(1);
    expect(worstRatio(after.subarray(0, V), before.subarray(0, V), 1e-5, 1e-5)).toBeGreaterThan(1);
  });

  test("a weight that was not packed, or packed matmuls of other weights, are refused", () => {
    const packed = new PackedMatmuls(weights);
    const { C } = config;
    expect(() => packed.kernels.matmulForward(new Float32Array(C), new Float32Array(C), new Float32Array(C * C), null, 1, C, C)).toThrow(/no packed weight of shape/);
    expect(() => new InferenceEngine(randomWeights(config, 9, { std: 0.3 }), { packed })).toThrow(/made from the engine's weights/);
    expect(packed.kernels.layernormForward).toBe(KERNELS.layernormForward);
  });
});
