// Log-probabilities of tokens under the model (log-softmax of the raw logits over the V real
// tokens, in float64; not the temperature/top-k/top-p distribution sampled from, as OpenAI reports
// them), and the k most likely tokens (ties by lowest id).
import { tokenBytes } from "../infer/text_stream.ts";
import { EOT_TOKEN } from "../model/config.ts";

export interface TokenLogprob {
  token: number;
  logprob: number;
  /** the most likely tokens, most likely first */
  top: Array<{ token: number; logprob: number }>;
}

/** log Σ exp(logits[0..V)), computed stably in float64. */
export function logSumExp(logits: Float32Array, V: number): number {
  let max = -Infinity;
  for (let i = 0; i < V; i++) if (logits[i] > max) max = logits[i];
  let sum = 0;
  for (let i = 0; i < V; i++) sum += Math.exp(logits[i] - max);
  return max + Math.log(sum);
}

export function tokenLogprob(logits: Float32Array, V: number, token: number, topCount: number): TokenLogprob {
  const lse = logSumExp(logits, V);
  const top: number[] = []; // ids, most likely first
  if (topCount > 0) {
    for (let i = 0; i < V; i++) {
      const x = logits[i];
      if (top.length === topCount && !(x > logits[top[topCount - 1]])) continue;
      let at = top.length;
      while (at > 0 && x > logits[top[at - 1]]) at--;
      top.splice(at, 0, i);
      if (top.length > topCount) top.pop();
    }
  }
  return { token, logprob: logits[token] - lse, top: top.map((id) => ({ token: id, logprob: logits[id] - lse })) };
}

/** A token as text for a logprobs listing: its bytes as UTF-8 (a partial character shows as U+FFFD). */
export function tokenString(token: number): string {
  if (token === EOT_TOKEN) return "<|endoftext|>";
  return new TextDecoder().decode(tokenBytes(token));
}
