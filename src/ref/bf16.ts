// bf16 rounding, the reference for --matmul-precision bf16 (kernels/gemm.zig rounds the same way
// when it packs an operand): keep the upper 16 bits of the float32, rounding to nearest even;
// NaN stays a (quiet) NaN, values beyond the largest bf16 round to ±Infinity.
const f32 = new Float32Array(1);
const bits = new Uint32Array(f32.buffer);

/** x rounded to the nearest bf16 value (returned as a number). */
export function roundToBf16(x: number): number {
  f32[0] = x;
  const b = bits[0];
  if ((b & 0x7fffffff) > 0x7f800000) return NaN;
  bits[0] = ((b + 0x7fff + ((b >>> 16) & 1)) >>> 16) << 16;
  return f32[0];
}

/** A copy of `values` with every element rounded to bf16. */
export function roundedToBf16(values: Float32Array): Float32Array {
  return values.map(roundToBf16);
}
