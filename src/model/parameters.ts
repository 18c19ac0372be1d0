// The 16 GPT-2 parameter tensors live in one Float32Array, in llm.c's order; everything else
// (gradients, AdamW moments) uses the same layout. Views are subarrays: no copies.
import { type GPT2Config, type ParameterName, PARAMETER_NAMES, parameterShapes } from "./config.ts";

export type ParameterViews = Record<ParameterName, Float32Array>;

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

/** Views of the 16 tensors inside `flat` (which must hold exactly the layout's total). */
export function parameterViews(flat: Float32Array, config: GPT2Config): ParameterViews {
  const layout = parameterLayout(config);
  if (flat.length !== layout.total) throw new Error(`parameter buffer has ${flat.length} floats, the config needs ${layout.total}`);
  const views = {} as ParameterViews;
  for (const name of PARAMETER_NAMES) views[name] = flat.subarray(layout.offsets[name], layout.offsets[name] + layout.sizes[name]);
  return views;
}

/** Layer l's slice of a per-layer tensor whose first dimension is L. */
export function layerSlice(tensor: Float32Array, L: number, l: number): Float32Array {
  const per = tensor.length / L;
  return tensor.subarray(l * per, (l + 1) * per);
}
