// Plain TypeScript references of the matmul layouts, in float64 accumulation: the yardstick the
// Zig kernels are tested against. Slow on purpose; never used on a hot path.

export function matmulForwardRef(out: Float32Array, inp: Float32Array, weight: Float32Array, bias: Float32Array | null, BT: number, C: number, OC: number): void {
  for (let i = 0; i < BT; i++) {
    for (let o = 0; o < OC; o++) {
      let sum = bias === null ? 0 : bias[o];
      for (let k = 0; k < C; k++) sum += inp[i * C + k] * weight[o * C + k];
      out[i * OC + o] = sum;
    }
  }
}

export function matmulBackwardInputRef(dinp: Float32Array, dout: Float32Array, weight: Float32Array, BT: number, C: number, OC: number): void {
  for (let i = 0; i < BT; i++) {
    for (let k = 0; k < C; k++) {
      let sum = 0;
      for (let o = 0; o < OC; o++) sum += dout[i * OC + o] * weight[o * C + k];
      dinp[i * C + k] += sum;
    }
  }
}

export function matmulBackwardWeightRef(dweight: Float32Array, dbias: Float32Array | null, dout: Float32Array, inp: Float32Array, BT: number, C: number, OC: number): void {
  for (let o = 0; o < OC; o++) {
    for (let k = 0; k < C; k++) {
      let sum = 0;
      for (let i = 0; i < BT; i++) sum += dout[i * OC + o] * inp[i * C + k];
      dweight[o * C + k] += sum;
    }
    if (dbias !== null) {
      let sum = 0;
      for (let i = 0; i < BT; i++) sum += dout[i * OC + o];
      dbias[o] += sum;
    }
  }
}
