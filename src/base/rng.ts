// The project's one seeded random number generator: xoshiro128** (Blackman & Vigna), seeded
// through splitmix32. Its whole state is four uint32 words, so a checkpoint can store it as JSON
// and a resumed run continues the same stream bit for bit. Every consumer — weight init, the data
// shuffle, token sampling, test data — draws from an Rng; no other generator exists.

import { describeJson } from "./describe_json.ts";

export type RngState = [number, number, number, number];

const TWO_POW_32 = 4294967296;
const TWO_POW_53 = 9007199254740992;

/** splitmix32: turns one seed into a stream of well-mixed words (used only to seed Rng). */
function splitmix32(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x9e3779b9) >>> 0;
    let z = s;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
    return (z ^ (z >>> 16)) >>> 0;
  };
}

function rotl(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0;
}

export class Rng {
  private readonly s = new Uint32Array(4);
  /** the second normal of the last Box–Muller pair, or NaN (part of the state: see state()) */
  private spareNormal = NaN;

  /** Any safe integer seeds a distinct stream (the high 32 bits are folded into the low ones). */
  constructor(seed: number) {
    if (!Number.isSafeInteger(seed)) throw new Error(`Rng: seed must be a safe integer, got ${seed}`);
    const mix = splitmix32((seed >>> 0) ^ Math.floor(seed / TWO_POW_32));
    this.s.set([mix(), mix(), mix(), mix()]);
    if (this.s.every((w) => w === 0)) this.s[0] = 1; // the all-zero state is a fixed point
  }

  static fromState(state: unknown): Rng {
    const rng = new Rng(0);
    rng.setState(state);
    return rng;
  }

  /** The four state words. A pending Box–Muller spare is dropped: call at a clean point. */
  state(): RngState {
    return [this.s[0], this.s[1], this.s[2], this.s[3]];
  }

  setState(state: unknown): void {
    const ok = Array.isArray(state) && state.length === 4 && state.every((w) => Number.isInteger(w) && w >= 0 && w <= 0xffffffff);
    if (!ok || (state as number[]).every((w) => w === 0)) {
      throw new Error(`invalid rng state ${describeJson(state)}: expected four uint32 words, not all zero`);
    }
    this.s.set(state as number[]);
    this.spareNormal = NaN;
  }

  nextU32(): number {
    const s = this.s;
    const result = Math.imul(rotl(Math.imul(s[1], 5) >>> 0, 7), 9) >>> 0;
    const t = (s[1] << 9) >>> 0;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 11);
    return result;
  }

  /** Uniform in [0, 1) with 32 random bits. */
  uniform32(): number {
    return this.nextU32() / TWO_POW_32;
  }

  /** Uniform in [0, 1) with 53 random bits (every float64 step in [0.5, 1) reachable). */
  uniform53(): number {
    return ((this.nextU32() >>> 5) * 67108864 + (this.nextU32() >>> 6)) / TWO_POW_53;
  }

  /** Uniform integer in [0, n), unbiased (rejection sampling), n ≤ 2^32. */
  below(n: number): number {
    if (!Number.isInteger(n) || n < 1 || n > TWO_POW_32) throw new Error(`Rng.below(${n}): n must be an integer in [1, 2^32]`);
    const limit = TWO_POW_32 - (TWO_POW_32 % n);
    for (;;) {
      const x = this.nextU32();
      if (x < limit) return x % n;
    }
  }

  /** In-place Fisher–Yates shuffle. */
  shuffle(a: Uint32Array): void {
    for (let i = a.length - 1; i > 0; i--) {
      const j = this.below(i + 1);
      const tmp = a[i];
      a[i] = a[j];
      a[j] = tmp;
    }
  }

  /** A standard normal (float64), Box–Muller on two uniforms in (0, 1). */
  normal(): number {
    if (this.spareNormal === this.spareNormal) {
      const out = this.spareNormal;
      this.spareNormal = NaN;
      return out;
    }
    const u1 = (this.nextU32() + 0.5) / TWO_POW_32; // never 0: log() stays finite
    const u2 = this.nextU32() / TWO_POW_32;
    const radius = Math.sqrt(-2 * Math.log(u1));
    const angle = 2 * Math.PI * u2;
    this.spareNormal = radius * Math.sin(angle);
    return radius * Math.cos(angle);
  }

  /** Fills `out` with N(mean, std²) values rounded to float32. */
  fillNormal(out: Float32Array, std: number, mean = 0): void {
    for (let i = 0; i < out.length; i++) out[i] = mean + std * this.normal();
  }
}
