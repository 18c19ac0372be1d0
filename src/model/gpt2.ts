// GPT-2: parameters in one Float32Array (llm.c order), activations in one more (activations.ts),
// and a forward and backward pass that are nothing but a sequence of kernel calls into Zig.
// Shapes in comments use B (batch), T (time), C (channels), NH (heads), Vp (padded vocabulary).
import { type GPT2Config, type ParameterName, PARAMETER_NAMES, validateConfig } from "./config.ts";
import { type Activations, ActivationMemory } from "./activations.ts";
import { initParameters } from "./init.ts";
import { loadWeights } from "../io/load_weights.ts";
import * as kernels from "../ffi.ts";
import { type ParameterViews, layerSlice, parameterLayout, parameterViews } from "./parameters.ts";

/** The tensors with a leading L dimension (all but wte, wpe, lnfw, lnfb). */
const LAYER_TENSOR_NAMES = PARAMETER_NAMES.filter((n) => n !== "wte" && n !== "wpe" && n !== "lnfw" && n !== "lnfb");
type LayerTensorName = Exclude<ParameterName, "wte" | "wpe" | "lnfw" | "lnfb">;
type LayerTensors = Record<LayerTensorName, Float32Array>;

/** The kernels the model calls, as one table so it can be swapped for a timed copy. */
const KERNELS = {
  encoderForward: kernels.encoderForward,
  encoderBackward: kernels.encoderBackward,
  layernormForward: kernels.layernormForward,
  layernormBackward: kernels.layernormBackward,
  matmulForward: kernels.matmulForward,
  matmulBackwardInput: kernels.matmulBackwardInput,
  matmulBackwardWeight: kernels.matmulBackwardWeight,
  attentionForward: kernels.attentionForward,
  attentionBackward: kernels.attentionBackward,
  residualForward: kernels.residualForward,
  geluForward: kernels.geluForward,
  geluBackward: kernels.geluBackward,
  softmaxCrossEntropyForward: kernels.softmaxCrossEntropyForward,
  softmaxCrossEntropyBackward: kernels.softmaxCrossEntropyBackward,
};
type Kernels = typeof KERNELS;

/** The profile bucket of each kernel (the per-layer-type split the benchmark prints). */
export const PROFILE_BUCKETS: Record<keyof Kernels, string> = {
  encoderForward: "encoder", encoderBackward: "encoder",
  layernormForward: "layernorm", layernormBackward: "layernorm",
  matmulForward: "matmul_fwd", matmulBackwardInput: "matmul_bwd", matmulBackwardWeight: "matmul_bwd",
  attentionForward: "attention_fwd", attentionBackward: "attention_bwd",
  residualForward: "residual",
  geluForward: "gelu", geluBackward: "gelu",
  softmaxCrossEntropyForward: "softmax_xent", softmaxCrossEntropyBackward: "softmax_xent",
};

function timedKernels(profile: Map<string, number>): Kernels {
  const timed = {} as Record<string, unknown>;
  for (const name of Object.keys(KERNELS) as Array<keyof Kernels>) {
    const kernel = KERNELS[name] as (...args: unknown[]) => void;
    const bucket = PROFILE_BUCKETS[name];
    timed[name] = (...args: unknown[]) => {
      const start = performance.now();
      kernel(...args);
      profile.set(bucket, (profile.get(bucket) ?? 0) + performance.now() - start);
    };
  }
  return timed as Kernels;
}

/** Views of layer l's slice of each per-layer tensor. */
function layerTensors(views: ParameterViews, L: number, l: number): LayerTensors {
  const out = {} as LayerTensors;
  for (const name of LAYER_TENSOR_NAMES as LayerTensorName[]) out[name] = layerSlice(views[name], L, l);
  return out;
}

export class GPT2 {
  readonly config: GPT2Config;
  /** all parameters, one allocation, llm.c order (see parameters.ts) */
  readonly params: Float32Array;
  /** When set, every kernel call adds its wall time (ms) to its bucket (see PROFILE_BUCKETS). */
  profile: Map<string, number> | null = null;

  private readonly views: ParameterViews;
  private readonly layers: LayerTensors[];
  private gradBuffer: Float32Array | null = null;
  private gradViews: ParameterViews | null = null;
  private gradLayers: LayerTensors[] = [];
  private readonly memory: ActivationMemory;
  private acts: Activations | null = null;
  /** copies of the last forward's tokens (the backward pass needs them) */
  private inputs = new Int32Array(0);
  private targets = new Int32Array(0);
  private hasTargets = false;
  private backwardPending = false;

  /** Takes ownership of `params` (no copy); zeros when omitted. */
  constructor(config: GPT2Config, params?: Float32Array) {
    validateConfig(config);
    this.config = { ...config };
    const total = parameterLayout(config).total;
    if (params !== undefined && (!(params instanceof Float32Array) || params.length !== total)) {
      throw new Error(`GPT2: the parameter buffer must be a Float32Array of ${total} floats for this config, got ${params.length}`);
    }
    this.params = params ?? new Float32Array(total);
    this.views = parameterViews(this.params, config);
    this.layers = Array.from({ length: config.L }, (_, l) => layerTensors(this.views, config.L, l));
    this.memory = new ActivationMemory(this.config);
  }

  /** A freshly initialised model (init.ts): same config and seed → same parameters, bit for bit. */
  static init(config: GPT2Config, seed: number): GPT2 {
    const model = new GPT2(config);
    initParameters(model.config, seed, model.params);
    return model;
  }

  /** Loads weights from any format loadWeights knows, straight into the model's buffer (one copy). */
  static fromFile(path: string): GPT2 {
    const { config, params } = loadWeights(path);
    return new GPT2(config, params);
  }

  /** Parameter gradients, same layout as params; allocated on first use (inference never needs them). */
  get grads(): Float32Array {
    if (this.gradBuffer === null) {
      this.gradBuffer = new Float32Array(this.params.length);
      this.gradViews = parameterViews(this.gradBuffer, this.config);
      const views = this.gradViews;
      this.gradLayers = Array.from({ length: this.config.L }, (_, l) => layerTensors(views, this.config.L, l));
    }
    return this.gradBuffer;
  }

  /** Named views of the parameters (no copies). */
  parameterViews(): ParameterViews {
    return this.views;
  }

  gradientViews(): ParameterViews {
    void this.grads;
    return this.gradViews as ParameterViews;
  }

  zeroGrad(): void {
    this.grads.fill(0);
  }

  /** Bytes of activation memory currently allocated. */
  activationBytes(): number {
    return this.memory.bytes();
  }

  /** Throws a clear error for any shape or token the kernels must never see. */
  private checkBatch(inputs: Int32Array, targets: Int32Array | null, B: number, T: number): void {
    const { maxT, V } = this.config;
    if (!Number.isInteger(B) || B < 1) throw new Error(`GPT2.forward: B must be a positive integer, got ${B}`);
    if (!Number.isInteger(T) || T < 1) throw new Error(`GPT2.forward: T must be a positive integer, got ${T}`);
    if (T > maxT) throw new Error(`GPT2.forward: T = ${T} exceeds the model's maximum sequence length maxT = ${maxT}`);
    const check = (tokens: Int32Array | null, what: string) => {
      if (tokens === null) return;
      if (!(tokens instanceof Int32Array)) throw new Error(`GPT2.forward: ${what} must be an Int32Array`);
      if (tokens.length !== B * T) throw new Error(`GPT2.forward: ${what} has ${tokens.length} tokens, B·T = ${B}·${T} = ${B * T}`);
      for (let i = 0; i < tokens.length; i++) {
        const id = tokens[i];
        if (id < 0 || id >= V) {
          throw new Error(`GPT2.forward: ${what}[${i}] (batch ${Math.floor(i / T)}, position ${i % T}) is ${id}, outside the vocabulary [0, ${V})`);
        }
      }
    };
    check(inputs, "inputs");
    check(targets, "targets");
  }

  private kernels(): Kernels {
    return this.profile === null ? KERNELS : timedKernels(this.profile);
  }

  /** Mean cross-entropy loss over the B·T positions, or NaN when targets is null (logits only). */
  forward(inputs: Int32Array, targets: Int32Array | null, B: number, T: number): number {
    this.checkBatch(inputs, targets, B, T);
    const { V, Vp, L, NH, C, maxT } = this.config;
    const BT = B * T;
    const k = this.kernels();
    const p = this.views;
    const a = this.memory.activations(B, T);
    this.acts = a;
    this.backwardPending = false;
    if (this.inputs.length !== BT) this.inputs = new Int32Array(BT);
    this.inputs.set(inputs);

    k.encoderForward(a.encoded, inputs, p.wte, p.wpe, B, T, C, Vp, maxT); // (B,T,C) = wte[token] + wpe[t]
    let residual = a.encoded;
    for (let l = 0; l < L; l++) {
      const w = this.layers[l], x = a.layers[l];
      k.layernormForward(x.ln1, x.ln1Mean, x.ln1Rstd, residual, w.ln1w, w.ln1b, BT, C); // (B,T,C), (B,T)
      k.matmulForward(x.qkv, x.ln1, w.qkvw, w.qkvb, BT, C, 3 * C); // (B,T,3C)
      k.attentionForward(x.atty, x.attLse, x.qkv, B, T, C, NH); // (B,T,C), lse (B,NH,T)
      k.matmulForward(x.attproj, x.atty, w.attprojw, w.attprojb, BT, C, C); // (B,T,C)
      k.residualForward(x.residual2, residual, x.attproj, BT * C); // (B,T,C)
      k.layernormForward(x.ln2, x.ln2Mean, x.ln2Rstd, x.residual2, w.ln2w, w.ln2b, BT, C); // (B,T,C), (B,T)
      k.matmulForward(x.fch, x.ln2, w.fcw, w.fcb, BT, C, 4 * C); // (B,T,4C)
      k.geluForward(x.fchGelu, x.fch, BT * 4 * C); // (B,T,4C)
      k.matmulForward(x.fcproj, x.fchGelu, w.fcprojw, w.fcprojb, BT, 4 * C, C); // (B,T,C)
      k.residualForward(x.residual3, x.residual2, x.fcproj, BT * C); // (B,T,C)
      residual = x.residual3;
    }
    k.layernormForward(a.lnf, a.lnfMean, a.lnfRstd, residual, p.lnfw, p.lnfb, BT, C); // (B,T,C), (B,T)
    k.matmulForward(a.logits, a.lnf, p.wte, null, BT, C, Vp); // (B,T,Vp): lm_head tied to wte, no bias

    this.hasTargets = targets !== null;
    if (targets === null) return NaN;
    if (this.targets.length !== BT) this.targets = new Int32Array(BT);
    this.targets.set(targets);
    k.softmaxCrossEntropyForward(a.probs, a.losses, a.logits, targets, BT, V, Vp); // (B,T,Vp), (B,T)
    let sum = 0;
    for (let i = 0; i < BT; i++) sum += a.losses[i];
    this.backwardPending = true;
    return sum / BT;
  }

  /** (B,T,Vp) view of the last forward's logits (columns V..Vp are padding). */
  logits(): Float32Array {
    if (this.acts === null) throw new Error("GPT2.logits: call forward() first");
    return this.acts.logits;
  }

  /** (B,T) per-position losses of the last forward with targets. */
  losses(): Float32Array {
    if (this.acts === null || !this.hasTargets) throw new Error("GPT2.losses: call forward() with targets first");
    return this.acts.losses;
  }

  /**
   * Gradient of the last forward's mean loss, ADDED into grads (so several forward/backward pairs
   * accumulate; zeroGrad() between updates). Once per forward: it overwrites probs with dlogits.
   */
  backward(): void {
    if (!this.backwardPending || this.acts === null) {
      throw new Error("GPT2.backward: needs a forward() with targets first (and runs once per forward)");
    }
    this.backwardPending = false;
    void this.grads;
    const { V, Vp, L, NH, C, maxT } = this.config;
    const a = this.acts, B = a.B, T = a.T, BT = B * T;
    const k = this.kernels();
    const p = this.views, g = this.gradViews as ParameterViews;
    const s = this.memory.scratch(B, T);

    const dlogits = a.probs; // (B,T,Vp), written in place over probs
    k.softmaxCrossEntropyBackward(dlogits, a.probs, this.targets, 1 / BT, BT, V, Vp);
    k.matmulBackwardWeight(g.wte, null, dlogits, a.lnf, BT, C, Vp); // dwte(Vp,C) += dlogitsᵀ·lnf
    s.dln.fill(0);
    k.matmulBackwardInput(s.dln, dlogits, p.wte, BT, C, Vp); // dlnf (B,T,C)
    const lastResidual = L > 0 ? a.layers[L - 1].residual3 : a.encoded;
    s.dresidual.fill(0);
    k.layernormBackward(s.dresidual, g.lnfw, g.lnfb, s.dln, lastResidual, p.lnfw, a.lnfMean, a.lnfRstd, BT, C);

    for (let l = L - 1; l >= 0; l--) {
      const w = this.layers[l], gw = this.gradLayers[l], x = a.layers[l];
      const residual = l === 0 ? a.encoded : a.layers[l - 1].residual3;
      // residual3 = residual2 + fcproj: both get dresidual3 (s.dresidual), nothing to copy.
      s.dfchGelu.fill(0);
      k.matmulBackwardWeight(gw.fcprojw, gw.fcprojb, s.dresidual, x.fchGelu, BT, 4 * C, C);
      k.matmulBackwardInput(s.dfchGelu, s.dresidual, w.fcprojw, BT, 4 * C, C); // (B,T,4C)
      s.dfch.fill(0);
      k.geluBackward(s.dfch, x.fch, s.dfchGelu, BT * 4 * C); // (B,T,4C)
      k.matmulBackwardWeight(gw.fcw, gw.fcb, s.dfch, x.ln2, BT, C, 4 * C);
      s.dln.fill(0);
      k.matmulBackwardInput(s.dln, s.dfch, w.fcw, BT, C, 4 * C); // dln2 (B,T,C)
      k.layernormBackward(s.dresidual, gw.ln2w, gw.ln2b, s.dln, x.residual2, w.ln2w, x.ln2Mean, x.ln2Rstd, BT, C); // now dresidual2
      // residual2 = residual + attproj: both get dresidual2.
      k.matmulBackwardWeight(gw.attprojw, gw.attprojb, s.dresidual, x.atty, BT, C, C);
      s.datty.fill(0);
      k.matmulBackwardInput(s.datty, s.dresidual, w.attprojw, BT, C, C); // (B,T,C)
      k.attentionBackward(s.dqkv, s.datty, x.qkv, x.atty, x.attLse, B, T, C, NH); // (B,T,3C), overwritten
      k.matmulBackwardWeight(gw.qkvw, gw.qkvb, s.dqkv, x.ln1, BT, C, 3 * C);
      s.dln.fill(0);
      k.matmulBackwardInput(s.dln, s.dqkv, w.qkvw, BT, C, 3 * C); // dln1 (B,T,C)
      k.layernormBackward(s.dresidual, gw.ln1w, gw.ln1b, s.dln, residual, w.ln1w, x.ln1Mean, x.ln1Rstd, BT, C); // now d(layer input)
    }
    k.encoderBackward(g.wte, g.wpe, s.dresidual, this.inputs, B, T, C, Vp, maxT);
  }
}
