// GPT-2 inference with a KV cache, separate from the trainer: no gradients, no (B,T) batch, no
// activations kept for a backward pass. Each layer's keys and values live in a cache of (maxT, C)
// floats (allocated once), so a new token costs one pass over the weights plus attention over the
// cache, and the prefix is never recomputed.
//   prefill(tokens)  runs the rows through the model in batched passes (matmuls with BT = rows,
//                    in chunks of at most `prefillChunk` rows) and returns the last row's logits
//   decode(token)    one row: matrix-vector products that stream each weight once
// Both append to the cache at `position` (the number of tokens seen so far).
import { decodeAttention, encoderForward, geluForward, layernormForward, matmulForward, residualForward } from "../ffi.ts";
import { type GPT2Config, validateConfig } from "../model/config.ts";
import { type ParameterViews, parameterLayout, parameterViews } from "../model/parameters.ts";

export class InferenceError extends Error {
  override name = "InferenceError";
}

export interface InferenceOptions {
  /** rows per batched prefill pass (bounds the activation buffers); default min(maxT, 256) */
  prefillChunk?: number;
}

interface LayerWeights {
  ln1w: Float32Array; ln1b: Float32Array; qkvw: Float32Array; qkvb: Float32Array;
  attprojw: Float32Array; attprojb: Float32Array; ln2w: Float32Array; ln2b: Float32Array;
  fcw: Float32Array; fcb: Float32Array; fcprojw: Float32Array; fcprojb: Float32Array;
}

/** Activation buffers for up to `rows` rows; views of the first n rows are taken per pass. */
class Activations {
  constructor(
    readonly rows: number,
    C: number,
    readonly x = new Float32Array(rows * C), // residual stream
    readonly ln = new Float32Array(rows * C),
    readonly qkv = new Float32Array(rows * 3 * C),
    readonly att = new Float32Array(rows * C),
    readonly proj = new Float32Array(rows * C),
    readonly fc = new Float32Array(rows * 4 * C),
    readonly gelu = new Float32Array(rows * 4 * C),
    readonly mean = new Float32Array(rows),
    readonly rstd = new Float32Array(rows),
    readonly tokens = new Int32Array(rows),
  ) {}
}

export class InferenceEngine {
  readonly config: GPT2Config;
  readonly params: Float32Array;
  /** (L, maxT, C) each: layer l's keys of position t at [(l·maxT + t)·C, …+C) */
  readonly kCache: Float32Array;
  readonly vCache: Float32Array;
  /**
   * Tokens in the cache; the next row goes to this position. Only reset() should move it back
   * (benchmarks also set it forward to time a step at a given context length).
   */
  position = 0;
  private readonly weights: ParameterViews;
  private readonly layers: LayerWeights[];
  private readonly acts: Activations;
  private readonly lastLogits: Float32Array;

  constructor(config: GPT2Config, params: Float32Array, options: InferenceOptions = {}) {
    validateConfig(config);
    const total = parameterLayout(config).total;
    if (params.length !== total) throw new InferenceError(`parameters: ${params.length} floats given, the config needs ${total}`);
    this.config = { ...config };
    this.params = params;
    this.weights = parameterViews(params, config);
    this.layers = Array.from({ length: config.L }, (_, l) => this.layerWeights(l));
    const { L, maxT, C, Vp } = config;
    this.kCache = new Float32Array(L * maxT * C);
    this.vCache = new Float32Array(L * maxT * C);
    const chunk = options.prefillChunk ?? Math.min(maxT, 256);
    if (!Number.isInteger(chunk) || chunk < 1) throw new InferenceError(`prefillChunk must be a positive integer, got ${chunk}`);
    this.acts = new Activations(Math.min(chunk, maxT), C);
    this.lastLogits = new Float32Array(Vp);
  }

  /** Forgets the cached tokens (the cache memory is reused). */
  reset(): void {
    this.position = 0;
  }

  /**
   * Appends `tokens` to the cache in batched passes. Returns the logits (Vp) after the last token,
   * or with `allLogits` the logits of every token, (n, Vp) in a new array. The returned (Vp) view
   * is overwritten by the next call.
   */
  prefill(tokens: ArrayLike<number>, options: { allLogits?: boolean } = {}): Float32Array {
    const n = tokens.length;
    this.checkTokens(tokens);
    const { Vp } = this.config;
    const all = options.allLogits === true ? new Float32Array(n * Vp) : null;
    for (let begin = 0; begin < n; begin += this.acts.rows) {
      const rows = Math.min(this.acts.rows, n - begin);
      for (let i = 0; i < rows; i++) this.acts.tokens[i] = tokens[begin + i];
      this.forwardRows(rows);
      if (all !== null) this.logitsOfRows(all.subarray(begin * Vp, (begin + rows) * Vp), rows);
      else if (begin + rows === n) this.logitsOfRows(this.lastLogits, 1, rows - 1);
    }
    return all ?? this.lastLogits;
  }

  /** Appends one token and returns the logits (Vp) for the next; the view is reused per call. */
  decode(token: number): Float32Array {
    this.checkTokens([token]);
    this.acts.tokens[0] = token;
    this.forwardRows(1);
    this.logitsOfRows(this.lastLogits, 1, 0);
    return this.lastLogits;
  }

  private checkTokens(tokens: ArrayLike<number>): void {
    const { V, maxT } = this.config;
    if (tokens.length === 0) throw new InferenceError("no tokens given");
    if (this.position + tokens.length > maxT) {
      throw new InferenceError(`${this.position} cached + ${tokens.length} new tokens exceed the model's context of ${maxT}`);
    }
    for (let i = 0; i < tokens.length; i++) {
      const t = tokens[i];
      if (!Number.isInteger(t) || t < 0 || t >= V) throw new InferenceError(`token ${i} is ${t}, outside the vocabulary [0, ${V})`);
    }
  }

  private layerWeights(l: number): LayerWeights {
    const w = this.weights;
    const { L } = this.config;
    const per = (t: Float32Array) => t.subarray((l * t.length) / L, ((l + 1) * t.length) / L);
    return {
      ln1w: per(w.ln1w), ln1b: per(w.ln1b), qkvw: per(w.qkvw), qkvb: per(w.qkvb),
      attprojw: per(w.attprojw), attprojb: per(w.attprojb), ln2w: per(w.ln2w), ln2b: per(w.ln2b),
      fcw: per(w.fcw), fcb: per(w.fcb), fcprojw: per(w.fcprojw), fcprojb: per(w.fcprojb),
    };
  }

  /**
   * Runs the first n rows of acts.tokens, at positions position..position+n-1, through the blocks;
   * leaves x = residual stream.
   */
  private forwardRows(n: number): void {
    const { C, NH, maxT, Vp } = this.config;
    const pos0 = this.position;
    const a = this.acts;
    const view = (buffer: Float32Array, width: number) => buffer.subarray(0, n * width);
    const x = view(a.x, C), ln = view(a.ln, C), qkv = view(a.qkv, 3 * C), att = view(a.att, C);
    const proj = view(a.proj, C), fc = view(a.fc, 4 * C), gelu = view(a.gelu, 4 * C);
    const mean = a.mean.subarray(0, n), rstd = a.rstd.subarray(0, n);
    const { wte, wpe } = this.weights;
    // The rows sit at positions pos0…: hand the encoder the position table from row pos0 on.
    encoderForward(x, a.tokens.subarray(0, n), wte, wpe.subarray(pos0 * C), 1, n, C, Vp, maxT - pos0);
    for (let l = 0; l < this.config.L; l++) {
      const w = this.layers[l];
      const cache = (buffer: Float32Array) => buffer.subarray(l * maxT * C, (l + 1) * maxT * C);
      layernormForward(ln, mean, rstd, x, w.ln1w, w.ln1b, n, C);
      linear(qkv, ln, w.qkvw, w.qkvb, n, C, 3 * C);
      decodeAttention(att, qkv, cache(this.kCache), cache(this.vCache), pos0, n, C, NH, maxT);
      linear(proj, att, w.attprojw, w.attprojb, n, C, C);
      residualForward(x, x, proj, n * C);
      layernormForward(ln, mean, rstd, x, w.ln2w, w.ln2b, n, C);
      linear(fc, ln, w.fcw, w.fcb, n, C, 4 * C);
      geluForward(gelu, fc, n * 4 * C);
      linear(proj, gelu, w.fcprojw, w.fcprojb, n, 4 * C, C);
      residualForward(x, x, proj, n * C);
    }
    this.position += n;
  }

  /** out(rows, Vp) = lm_head(final layernorm(x rows first..first+rows-1)). */
  private logitsOfRows(out: Float32Array, rows: number, first = 0): void {
    const { C, Vp } = this.config;
    const a = this.acts;
    const x = a.x.subarray(first * C, (first + rows) * C);
    const ln = a.ln.subarray(0, rows * C);
    layernormForward(ln, a.mean.subarray(0, rows), a.rstd.subarray(0, rows), x, this.weights.lnfw, this.weights.lnfb, rows, C);
    linear(out, ln, this.weights.wte, null, rows, C, Vp);
  }
}

/** out(n,OC) = inp(n,IC) · W(OC,IC)ᵀ + b (matmulForward picks the one-row, few-row or GEMM kernel). */
function linear(out: Float32Array, inp: Float32Array, weight: Float32Array, bias: Float32Array | null, n: number, IC: number, OC: number): void {
  matmulForward(out, inp, weight, bias, n, IC, OC);
}
