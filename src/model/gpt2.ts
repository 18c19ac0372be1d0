// GPT-2, the model: the one description of its computation, read top to bottom like llm.c's
// gpt2_forward / gpt2_backward — one kernel call per line, shapes in the comments.
//   transformer()  token + position embedding and the L blocks. Training and inference run this
//                  same netlist; they differ only in the RowContext passed in, which says where
//                  the rows sit in their sequences and how a block attends: over the whole (B,T)
//                  batch with flash attention that keeps the logsumexp for backward (BatchRows),
//                  or against a KV cache (CachedRows, in src/infer/engine.ts).
//   lmHead()       the final layernorm and the tied lm_head.
//   GPT2           training: forward with the loss, and the backward pass (gradients added into
//                  one buffer with the parameters' layout).
// Whether a matmul takes the one-row / few-row path or the packed GEMM is decided in the kernel
// library (kernels/matmul.zig), not here.
// Shapes: B batch, T time, C channels, NH heads, Vp padded vocabulary, rows = B·T.
import { type GPT2Config, validateConfig } from "./config.ts";
import { type Activations, ActivationMemory, type LayerActivations } from "./activations.ts";
import { initParameters } from "./init.ts";
import { GPT2Weights } from "./weights.ts";
import * as kernels from "../ffi.ts";

/** The kernels the model calls, as one table so that it can be swapped for a timed copy. */
export const KERNELS = {
  encoderForward: kernels.encoderForward,
  encoderBackward: kernels.encoderBackward,
  layernormForward: kernels.layernormForward,
  layernormBackward: kernels.layernormBackward,
  matmulForward: kernels.matmulForward,
  matmulBackwardInput: kernels.matmulBackwardInput,
  matmulBackwardWeight: kernels.matmulBackwardWeight,
  attentionForward: kernels.attentionForward,
  attentionBackward: kernels.attentionBackward,
  decodeAttention: kernels.decodeAttention,
  decodeAttentionRows: kernels.decodeAttentionRows,
  residualForward: kernels.residualForward,
  geluForward: kernels.geluForward,
  geluBackward: kernels.geluBackward,
  softmaxCrossEntropyForward: kernels.softmaxCrossEntropyForward,
  softmaxCrossEntropyBackward: kernels.softmaxCrossEntropyBackward,
};
export type Kernels = typeof KERNELS;

/** The profile bucket of each kernel (the per-layer-type split the benchmarks print). */
export const PROFILE_BUCKETS: Record<keyof Kernels, string> = {
  encoderForward: "encoder", encoderBackward: "encoder",
  layernormForward: "layernorm", layernormBackward: "layernorm",
  matmulForward: "matmul_fwd", matmulBackwardInput: "matmul_bwd", matmulBackwardWeight: "matmul_bwd",
  attentionForward: "attention_fwd", attentionBackward: "attention_bwd", decodeAttention: "attention_fwd", decodeAttentionRows: "attention_fwd",
  residualForward: "residual",
  geluForward: "gelu", geluBackward: "gelu",
  softmaxCrossEntropyForward: "softmax_xent", softmaxCrossEntropyBackward: "softmax_xent",
};

/** A copy of `base` (default KERNELS) whose every call adds its wall time (ms) to its bucket in `profile`. */
export function timedKernels(profile: Map<string, number>, base: Kernels = KERNELS): Kernels {
  const timed = {} as Record<string, unknown>;
  for (const name of Object.keys(base) as Array<keyof Kernels>) {
    const kernel = base[name] as (...args: unknown[]) => void;
    const bucket = PROFILE_BUCKETS[name];
    timed[name] = (...args: unknown[]) => {
      const start = performance.now();
      kernel(...args);
      profile.set(bucket, (profile.get(bucket) ?? 0) + performance.now() - start);
    };
  }
  return timed as Kernels;
}

/** A copy of `k` that calls `after()` once each kernel call returns. */
export function kernelsWithAfter(k: Kernels, after: () => void): Kernels {
  const wrapped = {} as Record<string, unknown>;
  for (const name of Object.keys(k) as Array<keyof Kernels>) {
    const kernel = k[name] as (...args: unknown[]) => void;
    wrapped[name] = (...args: unknown[]) => {
      kernel(...args);
      after();
    };
  }
  return wrapped as Kernels;
}

/**
 * What a data-parallel trainer needs from the backward pass (src/train/data_parallel.ts): to learn
 * when each gradient is final, so that its reduction over the ranks can start while the rest of
 * the pass runs, and (optionally) to take over the encoder's sparse wte/wpe gradient.
 */
export interface BackwardHooks {
  /** the lm_head and the final layernorm are done: wte holds its dense part, lnfw and lnfb are final */
  afterHead(): void;
  /** block l is done: its 12 gradient slices are final */
  afterLayer(l: number): void;
  /** after every kernel call: lets communication in flight progress */
  afterKernel(): void;
  /**
   * When set, replaces the encoder backward: it receives the gradient at the encoder output (B,T,C)
   * (scratch memory, valid during the call only) and the token ids, and this pass adds nothing to
   * wte and wpe.
   */
  encoder?(dout: Float32Array, inputs: Int32Array, B: number, T: number): void;
}

/**
 * Parameters that are not all final yet — ZeRO-1's all-gather after an update, still in flight
 * (src/dist/param_gather.ts) — and how to wait for them part by part. A forward pass calls
 * before(−1) ahead of the encoder, before(l) ahead of block l, before(L) ahead of the lm_head, and
 * afterKernel() after every kernel call; settle() waits for all of it (any other reader).
 */
export interface ParameterFence {
  before(part: number): void;
  afterKernel(): void;
  settle(): void;
}

/** Where a forward pass's rows sit in their sequences, and how a block attends over them. */
export interface RowContext {
  /** out (rows,C) = wte[token] + wpe[position of the row] */
  embed(k: Kernels, out: Float32Array, tokens: Int32Array): void;
  /** x.atty (rows,C) = causal self-attention of x.qkv (rows,3C) in layer l */
  attend(k: Kernels, layer: number, x: LayerActivations): void;
}

/** Training: B sequences of T rows from position 0; flash attention keeps the logsumexp (x.attLse). */
export class BatchRows implements RowContext {
  constructor(private readonly w: GPT2Weights, readonly B: number, readonly T: number) {}
  embed(k: Kernels, out: Float32Array, tokens: Int32Array): void {
    const { C, Vp, maxT } = this.w.config;
    k.encoderForward(out, tokens, this.w.tensors.wte, this.w.tensors.wpe, this.B, this.T, C, Vp, maxT); // (B,T,C)
  }
  attend(k: Kernels, _layer: number, x: LayerActivations): void {
    const { C, NH } = this.w.config;
    k.attentionForward(x.atty, x.attLse, x.qkv, this.B, this.T, C, NH); // (B,T,C), lse (B,NH,T)
  }
}

/**
 * The token and position embedding and the L transformer blocks over `rows` rows; returns the
 * residual stream after the last block (rows,C), a view into `a`. `fence`: parameters still
 * arriving, waited for part by part (the embeddings, then each block).
 */
export function transformer(k: Kernels, w: GPT2Weights, a: Activations, tokens: Int32Array, rows: number, ctx: RowContext, fence?: ParameterFence): Float32Array {
  const { L, C } = w.config;
  fence?.before(-1);
  ctx.embed(k, a.encoded, tokens); // (rows,C) = wte[token] + wpe[position]
  let residual = a.encoded;
  for (let l = 0; l < L; l++) {
    const p = w.layers[l], x = a.layers[l];
    fence?.before(l);
    k.layernormForward(x.ln1, x.ln1Mean, x.ln1Rstd, residual, p.ln1w, p.ln1b, rows, C); // (rows,C), (rows)
    k.matmulForward(x.qkv, x.ln1, p.qkvw, p.qkvb, rows, C, 3 * C); // (rows,3C) = [q | k | v]
    ctx.attend(k, l, x); // (rows,C)
    k.matmulForward(x.attproj, x.atty, p.attprojw, p.attprojb, rows, C, C); // (rows,C)
    k.residualForward(x.residual2, residual, x.attproj, rows * C); // (rows,C)
    k.layernormForward(x.ln2, x.ln2Mean, x.ln2Rstd, x.residual2, p.ln2w, p.ln2b, rows, C); // (rows,C), (rows)
    k.matmulForward(x.fch, x.ln2, p.fcw, p.fcb, rows, C, 4 * C); // (rows,4C)
    k.geluForward(x.fchGelu, x.fch, rows * 4 * C); // (rows,4C)
    k.matmulForward(x.fcproj, x.fchGelu, p.fcprojw, p.fcprojb, rows, 4 * C, C); // (rows,C)
    k.residualForward(x.residual3, x.residual2, x.fcproj, rows * C); // (rows,C)
    residual = x.residual3;
  }
  return residual;
}

/** logits (rows,Vp) = lnf(residual) · wteᵀ: the final layernorm and the lm_head tied to wte (no bias). */
export function lmHead(k: Kernels, w: GPT2Weights, logits: Float32Array, residual: Float32Array, lnf: Float32Array, lnfMean: Float32Array, lnfRstd: Float32Array, rows: number): void {
  const { C, Vp } = w.config;
  k.layernormForward(lnf, lnfMean, lnfRstd, residual, w.tensors.lnfw, w.tensors.lnfb, rows, C); // (rows,C), (rows)
  k.matmulForward(logits, lnf, w.tensors.wte, null, rows, C, Vp); // (rows,Vp)
}

export class GPT2 {
  readonly config: GPT2Config;
  private currentWeights: GPT2Weights;
  /** When set, every kernel call adds its wall time (ms) to its bucket (see PROFILE_BUCKETS). */
  profile: Map<string, number> | null = null;

  private gradWeights: GPT2Weights | null = null;
  private readonly memory: ActivationMemory;
  private acts: Activations | null = null;
  /** copies of the last forward's tokens (the backward pass needs them) */
  private inputs = new Int32Array(0);
  private targets = new Int32Array(0);
  private hasTargets = false;
  private backwardPending = false;
  /** parameters still arriving from the other ranks (deferParameters), else null */
  private fence: ParameterFence | null = null;

  /** Trains `weights` in place (no copy). */
  constructor(weights: GPT2Weights) {
    this.currentWeights = weights;
    this.config = weights.config;
    this.memory = new ActivationMemory(this.config);
  }

  /** A freshly initialised model (init.ts): same config and seed → same parameters, bit for bit. */
  static init(config: GPT2Config, seed: number): GPT2 {
    validateConfig(config);
    const weights = new GPT2Weights(config);
    initParameters(weights, seed);
    return new GPT2(weights);
  }

  /**
   * The parameters being trained (weights.ts views of one allocation). Parameters still arriving
   * (deferParameters) are waited for first: whoever reads them gets the final values.
   */
  get weights(): GPT2Weights {
    this.settleParameters();
    return this.currentWeights;
  }

  /**
   * Says that the parameters are not all final yet: `fence` tells when each part is. The next
   * forward pass waits for each part just before it reads it; anything else that reads the
   * parameters (the `weights` and `params` getters, settleParameters) waits for all of them.
   */
  deferParameters(fence: ParameterFence): void {
    if (this.fence !== null && this.fence !== fence) throw new Error("GPT2.deferParameters: another fence is still pending");
    this.fence = fence;
  }

  /** Waits until every parameter is final (a no-op unless deferParameters is pending). */
  settleParameters(): void {
    const fence = this.fence;
    if (fence === null) return;
    this.fence = null;
    fence.settle();
  }

  /**
   * Trains the parameters in `buffer` from now on (one float per parameter, holding them already)
   * — e.g. memory every data-parallel rank on the machine shares (src/train/data_parallel.ts).
   */
  useParameterBuffer(buffer: Float32Array): void {
    this.currentWeights = new GPT2Weights(this.config, buffer);
  }

  /** All parameters, one allocation, llm.c order (weights.ts). */
  get params(): Float32Array {
    return this.weights.params;
  }

  /** Parameter gradients with the parameters' layout; allocated on first use (inference never needs them). */
  get gradients(): GPT2Weights {
    this.gradWeights ??= new GPT2Weights(this.config);
    return this.gradWeights;
  }

  get grads(): Float32Array {
    return this.gradients.params;
  }

  /**
   * Makes `buffer` (one float per parameter) the gradient buffer instead of one of its own — e.g.
   * this rank's segment of memory shared with the other data-parallel ranks on the machine
   * (src/dist/node_reducer.ts). Only before the gradients are first used.
   */
  useGradientBuffer(buffer: Float32Array): void {
    if (this.gradWeights !== null) throw new Error("GPT2.useGradientBuffer: the gradient buffer is already in use");
    this.gradWeights = new GPT2Weights(this.config, buffer);
  }

  zeroGrad(): void {
    kernels.zeroFill(this.grads);
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
    const { V, Vp } = this.config;
    const BT = B * T;
    const fence = this.fence ?? undefined;
    const k = fence === undefined ? this.kernels() : kernelsWithAfter(this.kernels(), () => fence.afterKernel());
    const w = this.currentWeights;
    const a = this.memory.activations(B, T);
    this.acts = a;
    this.backwardPending = false;
    if (this.inputs.length !== BT) this.inputs = new Int32Array(BT);
    this.inputs.set(inputs);

    const residual = transformer(k, w, a, inputs, BT, new BatchRows(w, B, T), fence); // (B,T,C)
    fence?.before(this.config.L); // the rest: the final layernorm (wte arrived before the encoder)
    this.fence = null;
    lmHead(k, w, a.logits, residual, a.lnf, a.lnfMean, a.lnfRstd, BT); // (B,T,Vp)

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
   * The residual stream's gradient lives in one buffer (s.dresidual): a residual add passes its
   * gradient to both inputs unchanged, so nothing is copied. `hooks` (data-parallel training) are
   * told as the gradients become final; without them the pass is exactly the plain one.
   */
  backward(hooks?: BackwardHooks): void {
    if (!this.backwardPending || this.acts === null) {
      throw new Error("GPT2.backward: needs a forward() with targets first (and runs once per forward)");
    }
    this.backwardPending = false;
    const { V, Vp, L, NH, C, maxT } = this.config;
    const a = this.acts, B = a.B, T = a.T, BT = B * T;
    const k = hooks === undefined ? this.kernels() : kernelsWithAfter(this.kernels(), hooks.afterKernel);
    const p = this.currentWeights.tensors, g = this.gradients.tensors;
    const s = this.memory.scratch(B, T);

    const dlogits = a.probs; // (B,T,Vp), written in place over probs
    k.softmaxCrossEntropyBackward(dlogits, a.probs, this.targets, 1 / BT, BT, V, Vp);
    k.matmulBackwardWeight(g.wte, null, dlogits, a.lnf, BT, C, Vp); // dwte(Vp,C) += dlogitsᵀ·lnf
    s.dln.fill(0);
    k.matmulBackwardInput(s.dln, dlogits, p.wte, BT, C, Vp); // dlnf (B,T,C)
    const lastResidual = L > 0 ? a.layers[L - 1].residual3 : a.encoded;
    s.dresidual.fill(0);
    k.layernormBackward(s.dresidual, g.lnfw, g.lnfb, s.dln, lastResidual, p.lnfw, a.lnfMean, a.lnfRstd, BT, C);
    hooks?.afterHead();

    for (let l = L - 1; l >= 0; l--) {
      const w = this.currentWeights.layers[l], gw = this.gradients.layers[l], x = a.layers[l];
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
      hooks?.afterLayer(l);
    }
    if (hooks?.encoder !== undefined) hooks.encoder(s.dresidual, this.inputs, B, T);
    else k.encoderBackward(g.wte, g.wpe, s.dresidual, this.inputs, B, T, C, Vp, maxT);
  }
}
