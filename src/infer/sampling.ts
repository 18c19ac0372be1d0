// Next-token sampling over the first V logits (the padded ones, V..Vp-1, never take part):
//   temperature 0          greedy: the argmax (lowest id on ties)
//   temperature t > 0      softmax(logits / t), then
//   topK k > 0             keep the k most probable tokens (0 = all)
//   topP p < 1             of those, keep the smallest most-probable prefix whose mass reaches
//                          p·(their total mass), "nucleus" sampling (1 = all)
// Candidates are ordered by probability, then by id, so a seeded generator gives the same token
// on every run. Sorting all 50k tokens per step would cost milliseconds, so only tokens above a
// probability threshold are sorted, and the threshold is lowered until they provably suffice.

export interface SamplingOptions {
  temperature: number;
  topK: number;
  topP: number;
}

export const DEFAULT_SAMPLING: SamplingOptions = { temperature: 1, topK: 0, topP: 1 };

export class SamplingError extends Error {
  override name = "SamplingError";
}

export function validateSampling(options: SamplingOptions): void {
  const { temperature, topK, topP } = options;
  if (!Number.isFinite(temperature) || temperature < 0) throw new SamplingError(`temperature must be a finite number ≥ 0, got ${temperature}`);
  if (!Number.isInteger(topK) || topK < 0) throw new SamplingError(`top-k must be an integer ≥ 0 (0 = off), got ${topK}`);
  if (!Number.isFinite(topP) || topP <= 0 || topP > 1) throw new SamplingError(`top-p must be in (0, 1] (1 = off), got ${topP}`);
}

/** A seeded stream of uniforms in [0, 1) with 53 random bits (two mulberry32 draws). */
export class SeededRandom {
  private state: number;
  constructor(seed: number) {
    if (!Number.isInteger(seed)) throw new SamplingError(`seed must be an integer, got ${seed}`);
    this.state = seed >>> 0;
  }
  private next32(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  }
  uniform(): number {
    return ((this.next32() >>> 5) * 67108864 + (this.next32() >>> 6)) / 9007199254740992;
  }
}

export function argmax(logits: Float32Array, V: number): number {
  checkLogits(logits, V);
  let best = 0;
  for (let i = 1; i < V; i++) if (logits[i] > logits[best]) best = i;
  return best;
}

function checkLogits(logits: Float32Array, V: number): void {
  if (!Number.isInteger(V) || V < 1 || V > logits.length) throw new SamplingError(`V (${V}) must be from 1 to the logits' length ${logits.length}`);
}

/** The tokens that can be sampled and their normalised probabilities: most probable first when
 * top-k or top-p cut the vocabulary, else all V tokens in id order. */
export interface Distribution {
  ids: Int32Array;
  probs: Float64Array;
}

/** The distribution `sample` draws from (temperature > 0), exposed for tests and inspection. */
export function samplingDistribution(logits: Float32Array, V: number, options: SamplingOptions): Distribution {
  validateSampling(options);
  checkLogits(logits, V);
  if (options.temperature === 0) return { ids: Int32Array.of(argmax(logits, V)), probs: Float64Array.of(1) };
  const weights = unnormalised(logits, V, options.temperature);
  let total = 0;
  for (let i = 0; i < V; i++) total += weights[i];
  const topK = options.topK === 0 || options.topK >= V ? 0 : options.topK;
  if (topK === 0 && options.topP >= 1) {
    const ids = Int32Array.from({ length: V }, (_, i) => i);
    return { ids, probs: Float64Array.from(weights, (w) => w / total) };
  }
  // Weights are relative to the top one (which is 1); try thresholds until the kept set is exact.
  for (const threshold of [1e-4, 1e-8, 0]) {
    const candidates = sortedAbove(weights, threshold);
    let kept = candidates;
    let mass: number;
    if (topK > 0) {
      if (candidates.length < topK && threshold > 0) continue; // some of the top k lie below the threshold
      kept = candidates.slice(0, topK);
      mass = 0;
      for (const id of kept) mass += weights[id];
    } else {
      mass = total;
    }
    if (options.topP < 1) {
      const target = options.topP * mass;
      let cumulative = 0;
      let count = 0;
      while (count < kept.length && cumulative < target) cumulative += weights[kept[count++]];
      if (cumulative < target && threshold > 0 && topK === 0) continue; // the nucleus reaches below the threshold
      kept = kept.slice(0, Math.max(1, count));
    }
    let keptMass = 0;
    for (const id of kept) keptMass += weights[id];
    return { ids: Int32Array.from(kept), probs: Float64Array.from(kept, (id) => weights[id] / keptMass) };
  }
  throw new Error("unreachable: threshold 0 keeps every token");
}

/** exp((logit - max) / temperature) over the first V logits. */
function unnormalised(logits: Float32Array, V: number, temperature: number): Float64Array {
  let max = -Infinity;
  for (let i = 0; i < V; i++) max = Math.max(max, logits[i]);
  if (!Number.isFinite(max)) throw new SamplingError(`logits are not finite (max ${max})`);
  const weights = new Float64Array(V);
  for (let i = 0; i < V; i++) weights[i] = Math.exp((logits[i] - max) / temperature);
  return weights;
}

function sortedAbove(weights: Float64Array, threshold: number): number[] {
  const ids: number[] = [];
  for (let i = 0; i < weights.length; i++) if (weights[i] >= threshold) ids.push(i);
  return ids.sort((a, b) => weights[b] - weights[a] || a - b);
}

export class Sampler {
  private readonly random: SeededRandom;
  constructor(readonly options: SamplingOptions, seed: number) {
    validateSampling(options);
    this.random = new SeededRandom(seed);
  }

  /** Draws the next token from the first V logits. */
  sample(logits: Float32Array, V: number): number {
    if (this.options.temperature === 0) return argmax(logits, V);
    const { ids, probs } = samplingDistribution(logits, V, this.options);
    const u = this.random.uniform();
    let cumulative = 0;
    for (let i = 0; i < ids.length; i++) {
      cumulative += probs[i];
      if (u < cumulative) return ids[i];
    }
    return ids[ids.length - 1]; // u fell in the rounding gap below 1
  }
}
