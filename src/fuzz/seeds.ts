// Building blocks of the valid seeds: two small GPT-2 shapes, seeded random weights (the project's
// random-weights generator, not the trainer's init), a token file for the CLIs that train, and the
// region maps of the 16 parameter tensors.
import { tokenFileHeader } from "../data/token_file.ts";
import { type GPT2Config, NAMED_CONFIGS } from "../model/config.ts";
import { randomWeights } from "../model/init.ts";
import { parameterLayout } from "../model/weights.ts";
import type { Region, RegionKind } from "./structure.ts";

export const SEED_CONFIGS: Array<{ name: string; config: GPT2Config; weightsSeed: number }> = [
  { name: "tiny", config: { ...NAMED_CONFIGS.tiny }, weightsSeed: 1 },
  { name: "narrow", config: { maxT: 16, V: 50, Vp: 128, L: 1, NH: 2, C: 8 }, weightsSeed: 2 },
];

export function seedParams(config: GPT2Config, seed: number): Float32Array {
  return randomWeights(config, seed, { std: 0.02 }).params;
}

/** Valid training data for every seed model (ids below the smallest V). */
export const SEED_DATA_FILE = "data/train.bin";

export function seedTokenData(): Uint8Array {
  const tokens = new Uint16Array(200);
  for (let i = 0; i < tokens.length; i++) tokens[i] = (i * 7 + 3) % 50;
  return concat([new Uint8Array(tokenFileHeader(tokens.length).buffer), new Uint8Array(tokens.buffer)]);
}

/** The 16 tensors as regions starting at byte `start`, `width` bytes per value. */
export function tensorRegions(config: GPT2Config, start: number, kind: RegionKind, prefix = ""): Region[] {
  const layout = parameterLayout(config);
  const width = kind === "f32" ? 4 : 2;
  return Object.entries(layout.offsets).map(([name, offset]) => ({
    name: `${prefix}${name}`, kind,
    start: start + offset * width,
    end: start + (offset + layout.sizes[name as keyof typeof layout.sizes]) * width,
  }));
}

export function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** float32 → bfloat16 bits, rounded to nearest even (finite inputs). */
export function toBf16(values: Float32Array): Uint16Array {
  const bits = new Uint32Array(values.buffer, values.byteOffset, values.length);
  const out = new Uint16Array(values.length);
  for (let i = 0; i < bits.length; i++) out[i] = ((bits[i] + 0x7fff + ((bits[i] >>> 16) & 1)) >>> 16) & 0xffff;
  return out;
}
