// Sampling during training: the last position's logits of a forward over the (windowed) context,
// greedy or with temperature, never a padding id. A fake model with known logits makes the
// expected tokens exact.
import { describe, expect, test } from "bun:test";
import type { GPT2 } from "../src/model/gpt2.ts";
import { Rng } from "../src/train/rng.ts";
import { sampleTokens } from "../src/train/sample.ts";

const V = 10, Vp = 16;

/** Logits favour (last token + 1) mod V by `margin`; padding columns get a huge logit that must be ignored. */
function fakeModel(margin: number, maxT = 64) {
  let logits = new Float32Array(0);
  const calls: number[][] = [];
  const model = {
    config: { maxT, V, Vp, L: 1, NH: 1, C: 4 },
    forward(inputs: Int32Array, targets: Int32Array | null, B: number, T: number): number {
      expect(targets).toBeNull();
      expect(B).toBe(1);
      expect(inputs.length).toBe(T);
      calls.push(Array.from(inputs));
      logits = new Float32Array(T * Vp);
      for (let t = 0; t < T; t++) {
        for (let v = Vp - 1; v >= V; v--) logits[t * Vp + v] = 1e6;
        logits[t * Vp + ((inputs[t] + 1) % V)] = margin;
      }
      return NaN;
    },
    logits: () => logits,
  };
  return { model: model as unknown as GPT2, calls };
}

describe("sampleTokens", () => {
  test("greedy follows the argmax of the last position and slides a window of maxContext", () => {
    const { model, calls } = fakeModel(5);
    const out = sampleTokens(model, [7], 6, 0, new Rng(1), 3);
    expect(out).toEqual([8, 9, 0, 1, 2, 3]);
    expect(calls[0]).toEqual([7]);
    expect(calls[3]).toEqual([8, 9, 0]); // context 7,8,9,0 → its last 3
    expect(calls.every((c) => c.length <= 3)).toBe(true);
  });

  test("temperature sampling is seeded, stays in the real vocabulary, and sharpens as T falls", () => {
    const draw = (temperature: number, seed: number) => sampleTokens(fakeModel(2).model, [0], 400, temperature, new Rng(seed), 8);
    expect(draw(1, 5)).toEqual(draw(1, 5));
    expect(draw(1, 5)).not.toEqual(draw(1, 6));
    const hitRate = (tokens: number[], prompt: number) => {
      let hits = 0, prev = prompt;
      for (const t of tokens) (hits += t === (prev + 1) % V ? 1 : 0), (prev = t);
      return hits / tokens.length;
    };
    const hot = draw(1, 7), cold = draw(0.25, 7);
    for (const t of [...hot, ...cold]) expect(t).toBeLessThan(V);
    // P(favoured) = e^(2/T) / (e^(2/T) + 9): 0.45 at T = 1, ≈ 1 at T = 0.25 (400 draws: σ ≈ 0.025).
    expect(Math.abs(hitRate(hot, 0) - Math.exp(2) / (Math.exp(2) + 9))).toBeLessThan(0.1);
    expect(hitRate(cold, 0)).toBeGreaterThan(0.97);
  });

  test("an empty prompt is refused", () => {
    expect(() => sampleTokens(fakeModel(1).model, [], 1, 0, new Rng(1), 4)).toThrow(/at least one token/);
  });
});
