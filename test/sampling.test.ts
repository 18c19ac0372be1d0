// The sampler draws by inverse CDF: token i when u·mass falls in [w_0+…+w_{i-1}, w_0+…+w_i), with
// w = exp((logit - max)/T) in ascending id order and u the Rng's next uniform53. Checked here
// against that definition written out on its own (with Math.exp; the kernel library's weights are
// within 4·2^-53 of it, so a draw could differ only for a uniform within ~1e-15 of a boundary),
// and the frequencies against the probabilities.
import { expect, test } from "bun:test";
import { Rng } from "../src/base/rng.ts";
import { samplingWeights } from "../src/ffi.ts";
import { MIN_TEMPERATURE, Sampler, SamplingError, samplingDistribution } from "../src/infer/sampling.ts";

function logitsOf(V: number, seed: number): Float32Array {
  const r = new Rng(seed);
  return Float32Array.from({ length: V }, () => (r.uniform53() - 0.5) * 8);
}

test("without top-k/top-p every draw is the inverse-CDF token of the same uniform", () => {
  const V = 300, T = 0.8;
  const logits = logitsOf(V, 5);
  const sampler = new Sampler({ temperature: T, topK: 0, topP: 1 }, 11);
  const uniforms = new Rng(11);
  const max = Math.max(...logits);
  const w = Array.from(logits, (l) => Math.exp((l - max) * (1 / T)));
  const mass = w.reduce((a, b) => a + b, 0);
  for (let draw = 0; draw < 2000; draw++) {
    const target = uniforms.uniform53() * mass;
    let want = V - 1;
    for (let i = 0, cumulative = 0; i < V; i++) {
      cumulative += w[i];
      if (target < cumulative) {
        want = i;
        break;
      }
    }
    expect(sampler.sample(logits, V)).toBe(want);
  }
});

test("frequencies follow the distribution, with and without top-k/top-p", () => {
  const V = 6, draws = 60_000;
  const logits = logitsOf(V, 9);
  for (const options of [{ temperature: 1, topK: 0, topP: 1 }, { temperature: 0.7, topK: 4, topP: 0.9 }]) {
    const { ids, probs } = samplingDistribution(logits, V, options);
    const sampler = new Sampler(options, 3);
    const counts = new Map<number, number>();
    for (let i = 0; i < draws; i++) {
      const t = sampler.sample(logits, V);
      counts.set(t, (counts.get(t) ?? 0) + 1);
    }
    expect([...counts.keys()].every((t) => ids.includes(t))).toBe(true);
    ids.forEach((id, k) => {
      // 5 standard deviations of a binomial count: fails by chance with probability < 1e-5.
      const sd = Math.sqrt(draws * probs[k] * (1 - probs[k]));
      expect(Math.abs((counts.get(id) ?? 0) - draws * probs[k])).toBeLessThan(5 * sd + 1);
    });
  }
});

test("the kernel's weights are exp((logit − max)/T) within 4·2^-53 over GPT-2's vocabulary", () => {
  const V = 50257;
  const logits = logitsOf(V, 21).map((x) => x * 4);
  for (const T of [0.05, 0.8, 1, 3]) {
    const got = new Float64Array(V);
    samplingWeights(got, logits, V, T);
    let max = -Infinity;
    for (const x of logits) max = Math.max(max, x);
    let worst = 0;
    for (let i = 0; i < V; i++) {
      const want = Math.exp((logits[i] - max) * (1 / T));
      if (want > 0) worst = Math.max(worst, Math.abs(got[i] - want) / want);
      else expect(got[i]).toBe(0);
    }
    expect(worst).toBeLessThan(4 * 2 ** -53);
  }
});

test("a temperature without a finite inverse is refused", () => {
  expect(() => new Sampler({ temperature: MIN_TEMPERATURE / 10, topK: 0, topP: 1 }, 1)).toThrow(SamplingError);
  expect(() => new Sampler({ temperature: MIN_TEMPERATURE, topK: 0, topP: 1 }, 1)).not.toThrow();
});
