// The JSON shapes of OpenAI's completion and chat completion responses and stream chunks, built
// from what a generation produced. Field order follows OpenAI's documentation.
import { tokenBytes } from "../infer/text_stream.ts";
import type { Endpoint } from "./request.ts";
import { type TokenLogprob, tokenString } from "./logprobs.ts";

export type OpenAiFinishReason = "stop" | "length";

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
}

export function usage(promptTokens: number, completionTokens: number): Usage {
  return { prompt_tokens: promptTokens, completion_tokens: completionTokens, total_tokens: promptTokens + completionTokens };
}

/** /v1/completions logprobs: parallel lists; the first prompt token (echo) has no log-probability. */
export interface CompletionLogprobs {
  tokens: string[];
  token_logprobs: Array<number | null>;
  top_logprobs: Array<Record<string, number> | null>;
  text_offset: number[];
}

/** An entry of a completion's logprobs: a token, its log-probability (null for the first prompt token) and its text offset. */
export interface LoggedToken {
  logprob: TokenLogprob | null;
  token: number;
  offset: number;
}

export function completionLogprobs(entries: readonly LoggedToken[]): CompletionLogprobs {
  const out: CompletionLogprobs = { tokens: [], token_logprobs: [], top_logprobs: [], text_offset: [] };
  for (const { token, logprob, offset } of entries) {
    out.tokens.push(tokenString(token));
    out.token_logprobs.push(logprob === null ? null : logprob.logprob);
    if (logprob === null) out.top_logprobs.push(null);
    else {
      // The k most likely tokens, and the sampled one (OpenAI: "up to logprobs + 1 elements").
      const top: Record<string, number> = {};
      for (const t of logprob.top) top[tokenString(t.token)] = t.logprob;
      top[tokenString(token)] ??= logprob.logprob;
      out.top_logprobs.push(top);
    }
    out.text_offset.push(offset);
  }
  return out;
}

/** /v1/chat/completions logprobs: {content: [{token, logprob, bytes, top_logprobs}]}. */
export function chatLogprobs(entries: readonly LoggedToken[]) {
  const item = (token: number, logprob: number) => ({ token: tokenString(token), logprob, bytes: Array.from(tokenBytes(token)) });
  return {
    content: entries.map(({ token, logprob }) => ({
      ...item(token, logprob!.logprob),
      top_logprobs: logprob!.top.map((t) => item(t.token, t.logprob)),
    })),
    refusal: null,
  };
}

export interface ResponseMeta {
  id: string;
  created: number;
  model: string;
  endpoint: Endpoint;
}

export function completionResponse(meta: ResponseMeta, text: string, logprobs: unknown, finish: OpenAiFinishReason, u: Usage) {
  if (meta.endpoint === "chat") {
    return {
      id: meta.id, object: "chat.completion", created: meta.created, model: meta.model,
      choices: [{ index: 0, message: { role: "assistant", content: text, refusal: null }, logprobs, finish_reason: finish }],
      usage: u,
    };
  }
  return {
    id: meta.id, object: "text_completion", created: meta.created, model: meta.model,
    choices: [{ index: 0, text, logprobs, finish_reason: finish }],
    usage: u,
  };
}

/** One stream chunk: new text (possibly ""), its logprobs, and the finish reason on the last one. */
export function streamChunk(meta: ResponseMeta, text: string | null, logprobs: unknown, finish: OpenAiFinishReason | null, first = false) {
  if (meta.endpoint === "chat") {
    const delta: Record<string, string> = {};
    if (first) delta.role = "assistant";
    if (text !== null) delta.content = text;
    return {
      id: meta.id, object: "chat.completion.chunk", created: meta.created, model: meta.model,
      choices: [{ index: 0, delta, logprobs, finish_reason: finish }],
    };
  }
  return {
    id: meta.id, object: "text_completion", created: meta.created, model: meta.model,
    choices: [{ index: 0, text: text ?? "", logprobs, finish_reason: finish }],
  };
}

/** The last chunk with stream_options.include_usage: no choices, the usage. */
export function usageChunk(meta: ResponseMeta, u: Usage) {
  const object = meta.endpoint === "chat" ? "chat.completion.chunk" : "text_completion";
  return { id: meta.id, object, created: meta.created, model: meta.model, choices: [], usage: u };
}
