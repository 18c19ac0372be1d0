// AdamW with PyTorch's semantics (decoupled weight decay, bias-corrected moments), one fused Zig
// pass over all parameters per update. The moments use the parameters' flat layout.
import { adamwUpdate, gradNormSquared } from "../ffi.ts";

export interface AdamWHyperparameters {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
}

export const ADAMW_DEFAULTS: AdamWHyperparameters = { lr: 1e-4, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0 };

function checkHyperparameters(h: AdamWHyperparameters): void {
  const inUnit = (x: number) => Number.isFinite(x) && x >= 0 && x < 1;
  if (!(Number.isFinite(h.lr) && h.lr >= 0)) throw new Error(`AdamW: lr must be a finite number ≥ 0, got ${h.lr}`);
  if (!inUnit(h.beta1)) throw new Error(`AdamW: beta1 must be in [0, 1), got ${h.beta1}`);
  if (!inUnit(h.beta2)) throw new Error(`AdamW: beta2 must be in [0, 1), got ${h.beta2}`);
  if (!(Number.isFinite(h.eps) && h.eps > 0)) throw new Error(`AdamW: eps must be a finite number > 0, got ${h.eps}`);
  if (!(Number.isFinite(h.weightDecay) && h.weightDecay >= 0)) throw new Error(`AdamW: weightDecay must be a finite number ≥ 0, got ${h.weightDecay}`);
}

export class AdamW {
  readonly m: Float32Array;
  readonly v: Float32Array;
  readonly hyper: AdamWHyperparameters;
  /** updates done so far (the next update uses step + 1 for the bias correction) */
  step = 0;

  constructor(paramCount: number, hyper: Partial<AdamWHyperparameters> = {}) {
    if (!Number.isInteger(paramCount) || paramCount < 1) throw new Error(`AdamW: paramCount must be a positive integer, got ${paramCount}`);
    this.hyper = { ...ADAMW_DEFAULTS, ...hyper };
    checkHyperparameters(this.hyper);
    this.m = new Float32Array(paramCount);
    this.v = new Float32Array(paramCount);
  }

  /** step += 1, then params -= AdamW(grads · gradScale) with learning rate `lr`. */
  update(params: Float32Array, grads: Float32Array, lr: number, gradScale = 1): void {
    if (params.length !== this.m.length || grads.length !== this.m.length) {
      throw new Error(`AdamW.update: optimizer holds ${this.m.length} moments, got ${params.length} params and ${grads.length} grads`);
    }
    if (!(Number.isFinite(lr) && lr >= 0)) throw new Error(`AdamW.update: lr must be a finite number ≥ 0, got ${lr}`);
    if (!Number.isFinite(gradScale)) throw new Error(`AdamW.update: gradScale must be finite, got ${gradScale}`);
    const h = this.hyper;
    this.step += 1;
    adamwUpdate(params, grads, this.m, this.v, lr, h.beta1, h.beta2, h.eps, h.weightDecay, this.step, gradScale);
  }
}

/** The global L2 norm of the gradients (Σg² accumulated in float64, deterministically). */
export function gradNorm(grads: Float32Array): number {
  return Math.sqrt(gradNormSquared(grads));
}
