// Next-token sampling over the first V logits (the padded ones, V..Vp-1, never take part):
//   temperature 0          greedy: the argmax (lowest id on ties)
//   temperature t > 0      softmax(logits / t), then
//   topK k > 0             keep the k most probable tokens (0 = all)
//   topP p < 1             of those, keep the smallest most-probable prefix whose mass reaches
//                          p·(their total mass), "nucleus" sampling (1 = all)
// The cut is found on a natively sorted copy of the probabilities (under a millisecond for 50k
// tokens); the kept tokens are then listed in id order, ties at the cut broken by lowest id, and
// a seeded generator walks them in that order, so the same seed gives the same token every run.
// The weights exp((logit − max)/T) come from the kernel library (kernels/sampling.zig).
import { InputError } from "../base/errors.ts";
import { Rng } from "../base/rng.ts";
import { samplingWeights } from "../ffi.ts";

export interface SamplingOptions {
  temperature: number;
  topK: number;
  topP: number;
}

/** The smallest temperature above 0 (below it, use 0: greedy). */
export const MIN_TEMPERATURE = 1e-300;

export const DEFAULT_SAMPLING: SamplingOptions = { temperature: 1, topK: 0, topP: 1 };

export class SamplingError extends InputError {
  override name = "SamplingError";
}

export function validateSampling(options: SamplingOptions): void {
  const { temperature, topK, topP } = options;
  if (!Number.isFinite(temperature) || temperature < 0) throw new SamplingError(`temperature must be a finite number ≥ 0, got ${temperature}`);
  // The weights are exp((logit − max) · (1/T)): a subnormal T has no finite inverse.
  if (temperature > 0 && temperature < MIN_TEMPERATURE) throw new SamplingError(`temperature must be 0 (greedy) or at least ${MIN_TEMPERATURE}, got ${temperature}`);
  if (!Number.isInteger(topK) || topK < 0) throw new SamplingError(`top-k must be an integer ≥ 0 (0 = off), got ${topK}`);
  if (!Number.isFinite(topP) || topP <= 0 || topP > 1) throw new SamplingError(`top-p must be in (0, 1] (1 = off), got ${topP}`);
}

/** The id of the largest of the first V logits (lowest id on ties); non-finite logits are refused. */
export function argmax(logits: Float32Array, V: number): number {
  checkLogits(logits, V);
  let best = 0;
  for (let i = 1; i < V; i++) if (logits[i] > logits[best]) best = i;
  return best;
}

/** V must fit the logits, and the first V must be finite (NaN/±Inf: weights that overflow float32). */
function checkLogits(logits: Float32Array, V: number): void {
  if (!Number.isInteger(V) || V < 1 || V > logits.length) throw new SamplingError(`V (${V}) must be from 1 to the logits' length ${logits.length}`);
  for (let i = 0; i < V; i++) {
    const x = logits[i];
    if (x - x !== 0) throw new SamplingError(`the model's logits are not finite (${x} for token ${i})`);
  }
}

/** The tokens that can be sampled (ascending ids) and their normalised probabilities. */
export interface Distribution {
  ids: Int32Array;
  probs: Float64Array;
}

/** The distribution `sample` draws from, exposed for tests and inspection. */
export function samplingDistribution(logits: Float32Array, V: number, options: SamplingOptions): Distribution {
  validateSampling(options);
  checkLogits(logits, V);
  if (options.temperature === 0) return { ids: Int32Array.of(argmax(logits, V)), probs: Float64Array.of(1) };
  const weights = unnormalised(logits, V, options.temperature, new Float64Array(V));
  const { cutoff, count } = findCut(weights, options);
  const ids = new Int32Array(count);
  const probs = new Float64Array(count);
  let n = 0, mass = 0;
  forEachKept(weights, cutoff, count, (id) => { ids[n++] = id; mass += weights[id]; });
  for (let i = 0; i < count; i++) probs[i] = weights[ids[i]] / mass;
  return { ids, probs };
}

/**
 * exp((logit - max) · (1/temperature)) over the first V logits, into `out` (length V), in
 * double precision by the kernel library (within 4·2^-53 of Math.exp; in JavaScript this was
 * three quarters of a draw's time). The logits are checked finite before.
 */
function unnormalised(logits: Float32Array, V: number, temperature: number, out: Float64Array): Float64Array {
  samplingWeights(out, logits, V, temperature);
  return out;
}

/**
 * The kept set is the `count` most probable tokens: every token above `cutoff`, then tokens equal
 * to it by lowest id. top-k fixes count ≤ k; top-p shrinks it to the shortest most-probable prefix
 * whose mass reaches p times the top-k mass.
 */
function findCut(weights: Float64Array, options: SamplingOptions): { cutoff: number; count: number } {
  const V = weights.length;
  const k = options.topK === 0 ? V : Math.min(options.topK, V);
  if (k === V && options.topP >= 1) return { cutoff: 0, count: V };
  const sorted = weights.slice().sort(); // ascending; the most probable token is sorted[V - 1]
  if (options.topP >= 1) return { cutoff: sorted[V - k], count: k };
  let mass = 0;
  for (let i = V - k; i < V; i++) mass += sorted[i];
  const target = options.topP * mass;
  let cumulative = 0, count = 0;
  while (count < k && cumulative < target) cumulative += sorted[V - 1 - count++];
  return { cutoff: sorted[V - count], count: Math.max(1, count) };
}

/** Calls f(id) for the kept tokens in ascending id order (see findCut). */
function forEachKept(weights: Float64Array, cutoff: number, count: number, f: (id: number) => void): void {
  const V = weights.length;
  if (count === V) {
    for (let i = 0; i < V; i++) f(i);
    return;
  }
  let above = 0;
  for (let i = 0; i < V; i++) if (weights[i] > cutoff) above++;
  let ties = count - above;
  for (let i = 0; i < V; i++) {
    const w = weights[i];
    if (w > cutoff || (w === cutoff && ties-- > 0)) f(i);
  }
}

export class Sampler {
  private readonly random: Rng;
  private weights = new Float64Array(0);
  /** Draws from `random` (a seed makes a fresh stream; an Rng is shared, e.g. with a checkpoint). */
  constructor(readonly options: SamplingOptions, random: number | Rng) {
    validateSampling(options);
    if (typeof random === "number" && !Number.isSafeInteger(random)) throw new SamplingError(`seed must be an integer, got ${random}`);
    this.random = typeof random === "number" ? new Rng(random) : random;
  }

  /** Draws the next token from the first V logits. */
  sample(logits: Float32Array, V: number): number {
    if (this.options.temperature === 0) return argmax(logits, V);
    checkLogits(logits, V);
    if (this.weights.length !== V) this.weights = new Float64Array(V);
    const weights = unnormalised(logits, V, this.options.temperature, this.weights);
    const { cutoff, count } = findCut(weights, this.options);
    if (count === V) return this.drawFromAll(weights, V);
    let mass = 0;
    forEachKept(weights, cutoff, count, (id) => { mass += weights[id]; });
    const target = this.random.uniform53() * mass;
    let cumulative = 0, chosen = -1, last = -1;
    forEachKept(weights, cutoff, count, (id) => {
      last = id;
      if (chosen < 0) {
        cumulative += weights[id];
        if (target < cumulative) chosen = id;
      }
    });
    return chosen >= 0 ? chosen : last; // target fell in the rounding gap at the top
  }

  /**
   * The same draw as the general path when every token is kept (no top-k/top-p: the serving and
   * generation default), in plain loops: the same sums in the same order, so the same token, at
   * a fraction of the cost of a callback per token (this runs once per token and stream).
   */
  private drawFromAll(weights: Float64Array, V: number): number {
    let mass = 0;
    for (let i = 0; i < V; i++) mass += weights[i];
    const target = this.random.uniform53() * mass;
    let cumulative = 0;
    for (let i = 0; i < V; i++) {
      cumulative += weights[i];
      if (target < cumulative) return i;
    }
    return V - 1; // target fell in the rounding gap at the top
  }
}
