// GPT-2's parameters: ONE Float32Array in llm.c's order, with named views of the 16 tensors and
// per-layer views of the 12 that have a leading L dimension. Everything that holds a model-shaped
// vector — weights, gradients, AdamW moments, the float64 reference, the llm.c/HF/llm.ts loaders
// and writers — uses this one layout; views are subarrays, never copies.
//
//   wte (Vp,C)  wpe (maxT,C)  ln1w ln1b (L,C)  qkvw (L,3C,C)  qkvb (L,3C)  attprojw (L,C,C)
//   attprojb (L,C)  ln2w ln2b (L,C)  fcw (L,4C,C)  fcb (L,4C)  fcprojw (L,C,4C)  fcprojb (L,C)
//   lnfw lnfb (C)
// The lm_head is wte (tied); rows V..Vp of wte are padding that no token selects.
import { type GPT2Config, validateConfig } from "./config.ts";

export const PARAMETER_NAMES = [
  "wte", "wpe", "ln1w", "ln1b", "qkvw", "qkvb", "attprojw", "attprojb",
  "ln2w", "ln2b", "fcw", "fcb", "fcprojw", "fcprojb", "lnfw", "lnfb",
] as const;
export type ParameterName = (typeof PARAMETER_NAMES)[number];

/** The tensors that exist once per transformer block (leading dimension L). */
export const BLOCK_TENSOR_NAMES = [
  "ln1w", "ln1b", "qkvw", "qkvb", "attprojw", "attprojb", "ln2w", "ln2b", "fcw", "fcb", "fcprojw", "fcprojb",
] as const;
export type BlockTensorName = (typeof BLOCK_TENSOR_NAMES)[number];

/** One transformer block's slice of each per-layer tensor. */
export type BlockWeights = Record<BlockTensorName, Float32Array>;

/** Shapes of the 16 tensors, in llm.c's order. */
export function parameterShapes(config: GPT2Config): Record<ParameterName, number[]> {
  const { maxT, Vp, L, C } = config;
  return {
    wte: [Vp, C], wpe: [maxT, C],
    ln1w: [L, C], ln1b: [L, C],
    qkvw: [L, 3 * C, C], qkvb: [L, 3 * C],
    attprojw: [L, C, C], attprojb: [L, C],
    ln2w: [L, C], ln2b: [L, C],
    fcw: [L, 4 * C, C], fcb: [L, 4 * C],
    fcprojw: [L, C, 4 * C], fcprojb: [L, C],
    lnfw: [C], lnfb: [C],
  };
}

export interface ParameterLayout {
  /** element offset of each tensor in the flat buffer */
  offsets: Record<ParameterName, number>;
  sizes: Record<ParameterName, number>;
  shapes: Record<ParameterName, number[]>;
  total: number;
}

export function parameterLayout(config: GPT2Config): ParameterLayout {
  const shapes = parameterShapes(config);
  const offsets = {} as Record<ParameterName, number>;
  const sizes = {} as Record<ParameterName, number>;
  let total = 0;
  for (const name of PARAMETER_NAMES) {
    offsets[name] = total;
    sizes[name] = shapes[name].reduce((a, b) => a * b, 1);
    total += sizes[name];
  }
  return { offsets, sizes, shapes, total };
}

/** Floats in the flat buffer (the padded wte rows included): THE parameter count. */
export function parameterCount(config: GPT2Config): number {
  return parameterLayout(config).total;
}

export class GPT2Weights {
  readonly config: GPT2Config;
  /** the flat buffer, llm.c order */
  readonly params: Float32Array;
  /** named views of the 16 tensors */
  readonly tensors: Readonly<Record<ParameterName, Float32Array>>;
  /** layer l's views of the 12 per-layer tensors */
  readonly layers: readonly BlockWeights[];

  /** Views over `params` (taken over, not copied); zeros when omitted. */
  constructor(config: GPT2Config, params?: Float32Array) {
    validateConfig(config);
    const layout = parameterLayout(config);
    if (params !== undefined && (!(params instanceof Float32Array) || params.length !== layout.total)) {
      throw new Error(`GPT2Weights: the parameter buffer must be a Float32Array of ${layout.total} floats for this config, got ${params?.length}`);
    }
    this.config = Object.freeze({ ...config });
    this.params = params ?? new Float32Array(layout.total);
    const tensors = {} as Record<ParameterName, Float32Array>;
    for (const name of PARAMETER_NAMES) tensors[name] = this.params.subarray(layout.offsets[name], layout.offsets[name] + layout.sizes[name]);
    this.tensors = tensors;
    this.layers = Array.from({ length: config.L }, (_, l) => {
      const block = {} as BlockWeights;
      for (const name of BLOCK_TENSOR_NAMES) {
        const per = layout.sizes[name] / config.L;
        block[name] = tensors[name].subarray(l * per, (l + 1) * per);
      }
      return block;
    });
  }

  /** The first NaN or ±Inf, by tensor and element index, or null when all are finite. */
  firstNonFinite(): { tensor: ParameterName; index: number; value: number } | null {
    const p = this.params;
    // No closure over the loop variable: one capturing `i` made the engine allocate a scope per
    // iteration (+1 GB RSS and seconds on a 124M-parameter model).
    let bad = -1;
    for (let i = 0; i < p.length; i++) {
      const x = p[i];
      if (x - x !== 0) {
        bad = i;
        break;
      }
    }
    if (bad < 0) return null;
    const layout = parameterLayout(this.config);
    const tensor = PARAMETER_NAMES.findLast((n) => layout.offsets[n] <= bad) ?? "wte";
    return { tensor, index: bad - layout.offsets[tensor], value: p[bad] };
  }
}
