// Activation memory of GPT-2 for one (B,T) shape, llm.c-style: ONE Float32Array for everything the
// forward pass keeps for the backward pass, and ONE for the backward pass's scratch gradients; every
// tensor is a subarray view (no copies, no per-step allocation).
//
// Forward buffer, in floats (BT = B·T, per layer ×L where marked):
//   encoded   BT·C                 embedding sum, the input of layer 0
//   ln1       L·BT·C, ln1Mean/ln1Rstd L·BT
//   qkv       L·BT·3C              row = [q | k | v]
//   atty      L·BT·C               attention output (heads concatenated)
//   attLse    L·B·NH·T             log-sum-exp of each attention row (flash-style: no (T,T) scores)
//   attproj   L·BT·C
//   residual2 L·BT·C
//   ln2       L·BT·C, ln2Mean/ln2Rstd L·BT
//   fch       L·BT·4C, fchGelu L·BT·4C
//   fcproj    L·BT·C
//   residual3 L·BT·C               layer l's output = layer l+1's input
//   lnf       BT·C, lnfMean/lnfRstd BT
//   logits    BT·Vp
//   probs     BT·Vp                overwritten in place by dlogits in backward
//   losses    BT
// Total = BT·(L·(18C + NH + 4) + 2C + 2·Vp + 3) floats: d12 at B=4,T=64 is 68.7M floats = 275 MB
// (logits+probs 103 MB of it); d6 at B=8,T=128 is 146M floats = 585 MB (logits+probs 412 MB).
//
// Gradient scratch buffer (sized for one layer, reused by every layer, because the backward pass
// finishes layer l before it starts layer l-1):
//   dresidual BT·C    gradient of the residual stream. residual = a + b has the identity as its
//                     backward, so the stream's gradient is shared by both inputs and never copied:
//                     dresidual3[l] = dfcproj = the part of dresidual2[l] coming from the skip path.
//   dln       BT·C    dln1 / dln2 / dlnf (zeroed before each use: the matmul input grad adds)
//   datty     BT·C
//   dqkv      BT·3C   (attention backward overwrites it)
//   dfch      BT·4C, dfchGelu BT·4C
// Total 14·BT·C floats: d12 at B=4,T=64 is 2.75M floats = 11 MB; d6 at B=8,T=128 22 MB.
// dlogits lives in probs.
//
// Inference keeps nothing for a backward pass, so its activations ("inference" kind) hold ONE set
// of layer buffers that every layer reuses (layer l's residual3 is layer l+1's input, consumed
// before it is overwritten), no attention logsumexp (the KV-cache attention does not need it) and
// no logits/probs/losses (the engine writes logits where its caller wants them):
// rows·(19C + 2C + 2) floats + rows·C for the embedding.
//
// Shape policy (chosen): the buffers are allocated lazily for the first (B,T). A later (B,T) reuses
// them when both buffers are big enough (views are re-cut for the new shape; stale values are
// harmless since every tensor is written before it is read), and otherwise they are reallocated
// bigger (the old ones are left to the garbage collector). So generation with a growing T or a short last batch works,
// and memory never exceeds what the largest shape seen needs.
import type { GPT2Config } from "./config.ts";

/** "training": per-layer buffers and the head's logits/probs/losses; "inference": see above. */
export type ActivationKind = "training" | "inference";

export interface LayerActivations {
  ln1: Float32Array; ln1Mean: Float32Array; ln1Rstd: Float32Array;
  qkv: Float32Array; atty: Float32Array; attLse: Float32Array; attproj: Float32Array;
  residual2: Float32Array;
  ln2: Float32Array; ln2Mean: Float32Array; ln2Rstd: Float32Array;
  fch: Float32Array; fchGelu: Float32Array; fcproj: Float32Array;
  residual3: Float32Array;
}

export interface Activations {
  B: number;
  T: number;
  encoded: Float32Array;
  layers: LayerActivations[];
  lnf: Float32Array; lnfMean: Float32Array; lnfRstd: Float32Array;
  logits: Float32Array;
  probs: Float32Array;
  losses: Float32Array;
}

export interface GradientScratch {
  dresidual: Float32Array;
  dln: Float32Array;
  datty: Float32Array;
  dqkv: Float32Array;
  dfch: Float32Array;
  dfchGelu: Float32Array;
}

/** Cuts consecutive views out of one buffer. */
class Carver {
  offset = 0;
  constructor(readonly buffer: Float32Array | null) {}
  take(n: number): Float32Array {
    const start = this.offset;
    this.offset += n;
    return this.buffer === null ? new Float32Array(0) : this.buffer.subarray(start, start + n);
  }
}

function carveLayer(carver: Carver, config: GPT2Config, B: number, T: number, lseFloats: number): LayerActivations {
  const C = config.C, BT = B * T;
  return {
    ln1: carver.take(BT * C), ln1Mean: carver.take(BT), ln1Rstd: carver.take(BT),
    qkv: carver.take(BT * 3 * C), atty: carver.take(BT * C), attLse: carver.take(lseFloats), attproj: carver.take(BT * C),
    residual2: carver.take(BT * C),
    ln2: carver.take(BT * C), ln2Mean: carver.take(BT), ln2Rstd: carver.take(BT),
    fch: carver.take(BT * 4 * C), fchGelu: carver.take(BT * 4 * C), fcproj: carver.take(BT * C),
    residual3: carver.take(BT * C),
  };
}

function carveActivations(carver: Carver, config: GPT2Config, B: number, T: number, kind: ActivationKind): Activations {
  const { L, C, NH, Vp } = config;
  const BT = B * T;
  const training = kind === "training";
  const encoded = carver.take(BT * C);
  const layers: LayerActivations[] = [];
  if (training) for (let l = 0; l < L; l++) layers.push(carveLayer(carver, config, B, T, B * NH * T));
  else layers.push(...Array(L).fill(carveLayer(carver, config, B, T, 0)));
  const headRows = training ? BT : 0;
  return {
    B, T, encoded, layers,
    lnf: carver.take(BT * C), lnfMean: carver.take(BT), lnfRstd: carver.take(BT),
    logits: carver.take(headRows * Vp), probs: carver.take(headRows * Vp), losses: carver.take(headRows),
  };
}

function carveScratch(carver: Carver, config: GPT2Config, B: number, T: number): GradientScratch {
  const BT = B * T, C = config.C;
  return {
    dresidual: carver.take(BT * C), dln: carver.take(BT * C), datty: carver.take(BT * C),
    dqkv: carver.take(BT * 3 * C), dfch: carver.take(BT * 4 * C), dfchGelu: carver.take(BT * 4 * C),
  };
}

/** Floats the forward buffer needs for (B,T). */
export function activationFloats(config: GPT2Config, B: number, T: number, kind: ActivationKind = "training"): number {
  const carver = new Carver(null);
  carveActivations(carver, config, B, T, kind);
  return carver.offset;
}

export function scratchFloats(config: GPT2Config, B: number, T: number): number {
  const carver = new Carver(null);
  carveScratch(carver, config, B, T);
  return carver.offset;
}

/** Owns the two buffers; hands out views for the current shape (see the shape policy above). */
export class ActivationMemory {
  private forwardBuffer: Float32Array | null = null;
  private scratchBuffer: Float32Array | null = null;
  private acts: Activations | null = null;
  private scratchViews: GradientScratch | null = null;

  constructor(readonly config: GPT2Config, readonly kind: ActivationKind = "training") {}

  activations(B: number, T: number): Activations {
    if (this.acts !== null && this.acts.B === B && this.acts.T === T) return this.acts;
    const need = activationFloats(this.config, B, T, this.kind);
    if (this.forwardBuffer === null || this.forwardBuffer.length < need) {
      this.forwardBuffer = null; // drop the old buffer before allocating, so both never coexist
      this.acts = null;
      this.forwardBuffer = new Float32Array(need);
    }
    this.acts = carveActivations(new Carver(this.forwardBuffer), this.config, B, T, this.kind);
    return this.acts;
  }

  scratch(B: number, T: number): GradientScratch {
    const need = scratchFloats(this.config, B, T);
    if (this.scratchBuffer === null || this.scratchBuffer.length < need) {
      this.scratchBuffer = null;
      this.scratchViews = null;
      this.scratchBuffer = new Float32Array(need);
    }
    const current = this.scratchViews;
    if (current === null || current.dresidual.length !== B * T * this.config.C) {
      this.scratchViews = carveScratch(new Carver(this.scratchBuffer), this.config, B, T);
    }
    return this.scratchViews as GradientScratch;
  }

  /** Bytes currently allocated by the two buffers. */
  bytes(): number {
    return ((this.forwardBuffer?.length ?? 0) + (this.scratchBuffer?.length ?? 0)) * 4;
  }
}
