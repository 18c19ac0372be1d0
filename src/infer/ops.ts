// The row-wise layers the inference engine needs besides matmuls and attention. They are the
// layers helper's Zig kernels (src/ffi.ts: layernormForward, geluForward, residualForward) when the
// library has them; until those land, float32 TypeScript loops with the same semantics stand in.
// Looked up by name so this file type-checks either way.
import * as ffi from "../ffi.ts";

type LayernormFn = (out: Float32Array, mean: Float32Array, rstd: Float32Array, inp: Float32Array, weight: Float32Array, bias: Float32Array, N: number, C: number) => void;
type UnaryFn = (out: Float32Array, inp: Float32Array, n: number) => void;
type BinaryFn = (out: Float32Array, a: Float32Array, b: Float32Array, n: number) => void;

const exported = ffi as unknown as Record<string, unknown>;
const kernel = <F>(name: string): F | null => (typeof exported[name] === "function" ? (exported[name] as F) : null);

const LAYERNORM_EPS = 1e-5;
const GELU_SCALE = Math.sqrt(2 / Math.PI);

function layernormTs(out: Float32Array, mean: Float32Array, rstd: Float32Array, inp: Float32Array, weight: Float32Array, bias: Float32Array, N: number, C: number): void {
  for (let r = 0; r < N; r++) {
    const base = r * C;
    let m = 0;
    for (let i = 0; i < C; i++) m += inp[base + i];
    m /= C;
    let v = 0;
    for (let i = 0; i < C; i++) v += (inp[base + i] - m) ** 2;
    const s = 1 / Math.sqrt(v / C + LAYERNORM_EPS);
    for (let i = 0; i < C; i++) out[base + i] = (inp[base + i] - m) * s * weight[i] + bias[i];
    mean[r] = m;
    rstd[r] = s;
  }
}

function geluTs(out: Float32Array, inp: Float32Array, n: number): void {
  for (let i = 0; i < n; i++) {
    const x = inp[i];
    out[i] = 0.5 * x * (1 + Math.tanh(GELU_SCALE * (x + 0.044715 * x * x * x)));
  }
}

function residualTs(out: Float32Array, a: Float32Array, b: Float32Array, n: number): void {
  for (let i = 0; i < n; i++) out[i] = a[i] + b[i];
}

export const layernormForward: LayernormFn = kernel<LayernormFn>("layernormForward") ?? layernormTs;
export const geluForward: UnaryFn = kernel<UnaryFn>("geluForward") ?? geluTs;
export const residualForward: BinaryFn = kernel<BinaryFn>("residualForward") ?? residualTs;
/** True when every layer above runs in Zig (false before the layers kernels are merged). */
export const LAYER_KERNELS_IN_ZIG = kernel("layernormForward") !== null && kernel("geluForward") !== null && kernel("residualForward") !== null;
