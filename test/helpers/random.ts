// Seeded random numbers for tests (from the project's one generator, src/base/rng.ts): the same
// seed gives the same arrays on every run.
import { Rng } from "../../src/base/rng.ts";

/** Uniforms in [0, 1) from a seeded stream. */
export function rng(seed: number): () => number {
  const random = new Rng(seed);
  return () => random.uniform32();
}

/** Uniform values in [-scale, scale). */
export function randomF32(n: number, seed: number, scale = 1): Float32Array {
  const next = rng(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = (next() * 2 - 1) * scale;
  return out;
}

export function randomTokens(n: number, vocab: number, seed: number): Int32Array {
  const next = rng(seed);
  const out = new Int32Array(n);
  for (let i = 0; i < n; i++) out[i] = Math.floor(next() * vocab);
  return out;
}

/** Largest |a-b| / (atol + rtol·|b|) over the arrays: ≤ 1 means within tolerance. */
export function worstRatio(got: ArrayLike<number>, want: ArrayLike<number>, atol: number, rtol: number): number {
  if (got.length !== want.length) throw new Error(`length ${got.length} vs ${want.length}`);
  let worst = 0;
  for (let i = 0; i < got.length; i++) {
    const g = got[i], w = want[i];
    if (!Number.isFinite(g)) return Infinity;
    worst = Math.max(worst, Math.abs(g - w) / (atol + rtol * Math.abs(w)));
  }
  return worst;
}
