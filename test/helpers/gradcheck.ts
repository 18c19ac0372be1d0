// Central finite differences of a float64 scalar function: the check every reference backward
// must pass before it can serve as the yardstick of a Zig backward.

/**
 * d loss / d x[i] for every i, by (loss(x + h·e_i) - loss(x - h·e_i)) / 2h. With float64 and
 * h = 1e-5 the truncation error is O(h²·|f'''|) ≈ 1e-10 and the rounding error ≈ 1e-16·|loss|/h.
 */
export function numericGradient(x: Float64Array, loss: () => number, h = 1e-5): Float64Array {
  const grad = new Float64Array(x.length);
  for (let i = 0; i < x.length; i++) {
    const saved = x[i];
    x[i] = saved + h;
    const up = loss();
    x[i] = saved - h;
    const down = loss();
    x[i] = saved;
    grad[i] = (up - down) / (2 * h);
  }
  return grad;
}

/** Σ out·weights: the scalar whose gradient w.r.t. out is `weights` (the dout of a backward). */
export function weightedSum(out: ArrayLike<number>, weights: ArrayLike<number>): number {
  let sum = 0;
  for (let i = 0; i < out.length; i++) sum += out[i] * weights[i];
  return sum;
}

export function toF64(a: ArrayLike<number>): Float64Array {
  return Float64Array.from(a);
}
