// The generation loop: prefill the prompt, then sample and decode one token at a time until
// <|endoftext|>, the token budget, or the model's context is full.
// Context rule: the whole sequence (prompt + generated) holds at most maxT tokens, the positions
// the model has embeddings for. A prompt of maxT tokens or more leaves no room and is rejected;
// otherwise generation stops early (reason "context_full") when the sequence reaches maxT.
import type { Rng } from "../base/rng.ts";
import { InferenceEngine, InferenceError } from "./engine.ts";
import { Sampler, type SamplingOptions } from "./sampling.ts";

export type StopReason = "eot" | "max_new_tokens" | "context_full";

export interface GenerateOptions {
  maxNewTokens: number;
  sampling: SamplingOptions;
  /** a seed (a fresh random stream), or an Rng to draw from (its state advances) */
  seed: number | Rng;
  /** generation stops after emitting this token (it is included in the output); null = never */
  stopToken: number | null;
  /** called with each new token as soon as it is sampled */
  onToken?: (token: number) => void;
}

export interface GenerateResult {
  tokens: number[];
  stopReason: StopReason;
  prefillMs: number;
  /** time from the first sample to the end: every sampling step and `decodeSteps` decodes */
  decodeMs: number;
  decodeSteps: number;
}

/** Throws InferenceError when the prompt cannot be generated from (empty, too long, bad ids). */
export function checkPrompt(engine: InferenceEngine, prompt: ArrayLike<number>): void {
  const { maxT, V } = engine.config;
  if (prompt.length === 0) throw new InferenceError("the prompt is empty: give at least one token");
  if (prompt.length >= maxT) throw new InferenceError(`the prompt has ${prompt.length} tokens; the model's context is ${maxT}, so at most ${maxT - 1} leave room to generate`);
  for (let i = 0; i < prompt.length; i++) {
    const t = prompt[i];
    if (!Number.isInteger(t) || t < 0 || t >= V) throw new InferenceError(`prompt token ${i} is ${t}, outside the model's vocabulary [0, ${V})`);
  }
}

export function generate(engine: InferenceEngine, prompt: ArrayLike<number>, options: GenerateOptions): GenerateResult {
  checkPrompt(engine, prompt);
  if (!Number.isInteger(options.maxNewTokens) || options.maxNewTokens < 0) throw new InferenceError(`max new tokens must be an integer ≥ 0, got ${options.maxNewTokens}`);
  const sampler = new Sampler(options.sampling, options.seed);
  const { V, maxT } = engine.config;
  engine.reset();
  const tokens: number[] = [];
  if (options.maxNewTokens === 0) return { tokens, stopReason: "max_new_tokens", prefillMs: 0, decodeMs: 0, decodeSteps: 0 };
  let start = performance.now();
  let logits = engine.prefill(prompt);
  const prefillMs = performance.now() - start;
  start = performance.now();
  let stopReason: StopReason;
  while (true) {
    const token = sampler.sample(logits, V);
    tokens.push(token);
    options.onToken?.(token);
    if (token === options.stopToken) { stopReason = "eot"; break; }
    if (tokens.length === options.maxNewTokens) { stopReason = "max_new_tokens"; break; }
    if (prompt.length + tokens.length === maxT) { stopReason = "context_full"; break; }
    logits = engine.decode(token);
  }
  return { tokens, stopReason, prefillMs, decodeMs: performance.now() - start, decodeSteps: tokens.length - 1 };
}
