// The weights of the model's forward matmuls, packed once more in the panel layout of
// kernels/panel_matmul.zig, for inference: the four matrices of every block and the tied lm_head
// (wte). A decode pass of a few rows then reads each weight as one sequential stream and spends
// little compute on it, so 8 sequences decode in about the time of one (docs/serving.md has the
// figures). The original weights stay as they are: the embedding reads wte's rows, and calls with
// more than kernelLimits().matmulSmallRowsMax rows (long prompts) take the GEMM on them.
//
// It costs a second copy of those weights (for d12 ~124M floats, 497 MB) and a pass to pack them
// (~0.1 s for d12). The packed copy is a snapshot: after the weights change, call repack() — which
// is why the trainer's sampler, whose model changes every step, runs unpacked.
import { matmulForwardPrepacked, matmulPack, packedWeightFloats } from "../ffi.ts";
import { KERNELS, type Kernels } from "../model/gpt2.ts";
import type { GPT2Weights } from "../model/weights.ts";

interface PackedMatrix { weight: Float32Array; packed: Float32Array; C: number; OC: number }

export class PackedMatmuls {
  readonly weights: GPT2Weights;
  /** The model's kernel table with matmulForward on the packed weights (then passed through `wrap`). */
  readonly kernels: Kernels;
  /** One allocation for every packed matrix. */
  private readonly buffer: Float32Array;
  private readonly byWeight = new Map<Float32Array, PackedMatrix>();

  /** `wrap` may decorate the finished table, e.g. with timedKernels (bench/decode_pass.ts). */
  constructor(weights: GPT2Weights, wrap: (kernels: Kernels) => Kernels = (kernels) => kernels) {
    this.weights = weights;
    const { C, Vp } = weights.config;
    const shapes: Array<[Float32Array, number, number]> = [];
    for (const p of weights.layers) shapes.push([p.qkvw, C, 3 * C], [p.attprojw, C, C], [p.fcw, C, 4 * C], [p.fcprojw, 4 * C, C]);
    shapes.push([weights.tensors.wte, C, Vp]);
    this.buffer = new Float32Array(shapes.reduce((sum, [, c, oc]) => sum + packedWeightFloats(c, oc), 0));
    let offset = 0;
    for (const [weight, c, oc] of shapes) {
      const floats = packedWeightFloats(c, oc);
      this.byWeight.set(weight, { weight, packed: this.buffer.subarray(offset, offset + floats), C: c, OC: oc });
      offset += floats;
    }
    this.repack();
    this.kernels = wrap({ ...KERNELS, matmulForward: (out, inp, weight, bias, BT, C, OC) => matmulForwardPrepacked(out, inp, weight, this.packedOf(weight, C, OC), bias, BT, C, OC) });
  }

  /** Packs the weights again (after they changed). */
  repack(): void {
    for (const m of this.byWeight.values()) matmulPack(m.packed, m.weight, m.C, m.OC);
  }

  /** Bytes of the packed copy. */
  bytes(): number {
    return this.buffer.byteLength;
  }

  private packedOf(weight: Float32Array, C: number, OC: number): Float32Array {
    const m = this.byWeight.get(weight);
    // The model's netlist passes only the views packed above; anything else is a wiring mistake.
    if (m === undefined || m.C !== C || m.OC !== OC) throw new Error(`PackedMatmuls: no packed weight of shape (${OC},${C}) for this matmul`);
    return m.packed;
  }
}
