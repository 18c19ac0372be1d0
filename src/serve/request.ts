// Validation of /v1/completions and /v1/chat/completions request bodies into one
// GenerationRequest. Strict, like OpenAI's own API: an unknown field is a 400 ("unrecognized
// request argument"), and every field is checked for type and range with a message that names it.
// Fields OpenAI defines but this server does not implement are accepted only at their neutral
// value (frequency_penalty 0, n 1, an empty logit_bias…), so a client sending defaults works and
// one asking for the feature learns it is missing. null means "not given" for every optional field.
import { encode } from "../data/tokenizer.ts";
import type { GPT2Config } from "../model/config.ts";
import { EOT_TOKEN } from "../model/config.ts";
import { MIN_TEMPERATURE, type SamplingOptions } from "../infer/sampling.ts";
import { invalidField } from "./api_error.ts";
import { CHAT_STOP_STRINGS, type ChatMessage, renderChat } from "./chat_template.ts";

export type Endpoint = "completion" | "chat";

export interface GenerationRequest {
  endpoint: Endpoint;
  /** the model name the client sent (any string is accepted and echoed back), or null */
  model: string | null;
  prompt: Int32Array;
  /** the prompt as text (echo), decoded from the ids when the prompt was given as ids */
  promptText: string | null;
  maxTokens: number;
  sampling: SamplingOptions;
  /** null: a fresh random seed */
  seed: number | null;
  stop: string[];
  stream: boolean;
  includeUsage: boolean;
  echo: boolean;
  /** null: no log-probabilities; k: the sampled token's and the k most likely tokens' */
  logprobs: number | null;
}

/** Limits on what a request may ask for (keep the work per request bounded). */
export const LIMITS = {
  stopStrings: 4,
  stopChars: 500,
  completionTopLogprobs: 5,
  chatTopLogprobs: 20,
  messages: 1000,
  maxTemperature: 2,
} as const;

const COMMON_FIELDS = ["model", "max_tokens", "temperature", "top_p", "top_k", "seed", "stop", "stream", "stream_options", "n", "frequency_penalty", "presence_penalty", "logit_bias", "user"];
const COMPLETION_FIELDS = new Set([...COMMON_FIELDS, "prompt", "echo", "logprobs", "best_of", "suffix"]);
const CHAT_FIELDS = new Set([...COMMON_FIELDS, "messages", "max_completion_tokens", "logprobs", "top_logprobs", "response_format", "tools", "tool_choice", "parallel_tool_calls"]);

type Body = Record<string, unknown>;

/** JSON-ish rendering of a value for an error message, cut short (and safe for any nesting depth). */
function shown(value: unknown): string {
  const render = (v: unknown, depth: number): string => {
    if (Array.isArray(v)) return depth > 2 ? "[…]" : `[${v.slice(0, 4).map((x) => render(x, depth + 1)).join(",")}${v.length > 4 ? ",…" : ""}]`;
    if (typeof v === "object" && v !== null) {
      const keys = Object.keys(v);
      return depth > 2 ? "{…}" : `{${keys.slice(0, 4).map((k) => `${JSON.stringify(k)}:${render((v as Body)[k], depth + 1)}`).join(",")}${keys.length > 4 ? ",…" : ""}}`;
    }
    return typeof v === "string" ? JSON.stringify(v.length > 60 ? `${v.slice(0, 60)}…` : v) : String(v);
  };
  const text = render(value, 0);
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}

function kind(value: unknown): string {
  return value === null ? "null" : Array.isArray(value) ? "an array" : typeof value === "object" ? "an object" : `a ${typeof value}`;
}

function given(body: Body, name: string): boolean {
  return body[name] !== undefined && body[name] !== null;
}

interface NumberRule {
  integer?: boolean;
  min: number;
  max: number;
  minExclusive?: boolean;
}

function numberField(body: Body, name: string, rule: NumberRule, fallback: number): number {
  if (!given(body, name)) return fallback;
  const value = body[name];
  const range = `${rule.minExclusive ? `> ${rule.min}` : `≥ ${rule.min}`}${rule.max === Number.MAX_SAFE_INTEGER ? "" : ` and ≤ ${rule.max}`}`;
  const want = `${rule.integer ? "an integer" : "a number"} ${range}`;
  if (typeof value !== "number") throw invalidField(name, `'${name}' must be ${want}, got ${kind(value)} ${shown(value)}`, "invalid_type");
  const inRange = Number.isFinite(value) && (rule.minExclusive ? value > rule.min : value >= rule.min) && value <= rule.max;
  if (!inRange || (rule.integer && !Number.isSafeInteger(value))) throw invalidField(name, `'${name}' must be ${want}, got ${shown(value)}`);
  return value;
}

function booleanField(body: Body, name: string, fallback: boolean): boolean {
  if (!given(body, name)) return fallback;
  const value = body[name];
  if (typeof value !== "boolean") throw invalidField(name, `'${name}' must be true or false, got ${kind(value)} ${shown(value)}`, "invalid_type");
  return value;
}

function stringField(body: Body, name: string): string | null {
  if (!given(body, name)) return null;
  const value = body[name];
  if (typeof value !== "string") throw invalidField(name, `'${name}' must be a string, got ${kind(value)} ${shown(value)}`, "invalid_type");
  return value;
}

/** Text the tokenizer can take: well-formed UTF-16 (no unpaired surrogate, which has no UTF-8 form). */
function checkUnicode(param: string, text: string): void {
  if (text.isWellFormed()) return;
  let at = 0;
  for (; at < text.length; at++) {
    const unit = text.charCodeAt(at);
    if (unit >= 0xd800 && unit <= 0xdbff && at + 1 < text.length && (text.charCodeAt(at + 1) & 0xfc00) === 0xdc00) at++;
    else if (unit >= 0xd800 && unit <= 0xdfff) break;
  }
  throw invalidField(param, `'${param}' contains an unpaired UTF-16 surrogate (\\u${text.charCodeAt(at).toString(16)}) at index ${at}: it is not valid Unicode`, "invalid_unicode");
}

/** Fields OpenAI defines that this server accepts only at their neutral value. */
function checkNeutral(body: Body, endpoint: Endpoint): void {
  const neutral = (name: string, ok: (v: unknown) => boolean, what: string) => {
    if (given(body, name) && !ok(body[name])) throw invalidField(name, `'${name}' is not supported by this server (${what}), got ${shown(body[name])}`, "unsupported_value");
  };
  neutral("n", (v) => v === 1, "only n = 1: one choice per request; send several requests instead");
  neutral("frequency_penalty", (v) => v === 0, "only 0");
  neutral("presence_penalty", (v) => v === 0, "only 0");
  neutral("logit_bias", (v) => typeof v === "object" && v !== null && !Array.isArray(v) && Object.keys(v).length === 0, "only an empty object");
  if (given(body, "user")) stringField(body, "user");
  if (endpoint === "completion") {
    neutral("best_of", (v) => v === 1, "only 1");
    neutral("suffix", (v) => v === "", "no insertion: only an empty suffix");
  } else {
    neutral("response_format", (v) => typeof v === "object" && v !== null && (v as Body).type === "text" && Object.keys(v).length === 1, 'only {"type": "text"}');
    neutral("tools", (v) => Array.isArray(v) && v.length === 0, "no tool calling: only an empty list");
    neutral("tool_choice", (v) => v === "none", 'only "none"');
    neutral("parallel_tool_calls", (v) => typeof v === "boolean", "a boolean, ignored");
  }
}

function stopField(body: Body): string[] {
  if (!given(body, "stop")) return [];
  const value = body.stop;
  const list = typeof value === "string" ? [value] : value;
  if (!Array.isArray(list)) throw invalidField("stop", `'stop' must be a string or a list of strings, got ${kind(value)} ${shown(value)}`, "invalid_type");
  if (list.length > LIMITS.stopStrings) throw invalidField("stop", `'stop' has ${list.length} strings; at most ${LIMITS.stopStrings} are allowed`);
  return list.map((s, i) => {
    const param = typeof value === "string" ? "stop" : `stop[${i}]`;
    if (typeof s !== "string") throw invalidField(param, `'${param}' must be a string, got ${kind(s)} ${shown(s)}`, "invalid_type");
    if (s.length === 0) throw invalidField(param, `'${param}' is empty: a stop string needs at least one character`);
    if (s.length > LIMITS.stopChars) throw invalidField(param, `'${param}' has ${s.length} characters; at most ${LIMITS.stopChars} are allowed`);
    checkUnicode(param, s);
    return s;
  });
}

function streamOptions(body: Body, stream: boolean): boolean {
  if (!given(body, "stream_options")) return false;
  const value = body.stream_options;
  if (!stream) throw invalidField("stream_options", "'stream_options' is only allowed when 'stream' is true");
  if (typeof value !== "object" || value === null || Array.isArray(value)) throw invalidField("stream_options", `'stream_options' must be an object, got ${kind(value)}`, "invalid_type");
  for (const key of Object.keys(value)) if (key !== "include_usage") throw invalidField(`stream_options.${key}`, `unrecognized field 'stream_options.${key}' (known: include_usage)`, "unknown_field");
  return booleanField(value as Body, "include_usage", false);
}

/** Token ids as given by the client, each checked against the vocabulary. */
function tokenIds(param: string, list: unknown[], config: GPT2Config): Int32Array {
  if (list.length === 0) throw invalidField(param, `'${param}' is an empty list of token ids: give at least one`);
  const ids = new Int32Array(list.length);
  list.forEach((t, i) => {
    if (typeof t !== "number" || !Number.isInteger(t) || t < 0 || t >= config.V) {
      throw invalidField(param, `'${param}' token ${i} is ${shown(t)}: token ids are integers in [0, ${config.V}), the model's vocabulary`, "invalid_token");
    }
    ids[i] = t;
  });
  return ids;
}

/** Text → ids; the empty prompt starts a fresh document (<|endoftext|>), as GPT-2 was trained. */
function textPrompt(param: string, text: string, config: GPT2Config): Int32Array {
  checkUnicode(param, text);
  const ids = text === "" ? Int32Array.of(EOT_TOKEN) : encode(text);
  for (let i = 0; i < ids.length; i++) {
    if (ids[i] >= config.V) throw invalidField(param, `'${param}' encodes to token ${ids[i]} (at ${i}), outside the model's vocabulary [0, ${config.V})`, "invalid_token");
  }
  return ids;
}

function completionPrompt(body: Body, config: GPT2Config, decodeText: (ids: Int32Array) => string): { prompt: Int32Array; text: string } {
  if (!given(body, "prompt")) throw invalidField("prompt", "'prompt' is required: a string or a list of token ids", "missing_field");
  let value = body.prompt;
  let param = "prompt";
  // A list of prompts (strings or id lists) asks for one choice each: only one is supported.
  if (Array.isArray(value) && value.length > 0 && (typeof value[0] === "string" || Array.isArray(value[0]))) {
    if (value.length > 1) throw invalidField("prompt", `'prompt' is a list of ${value.length} prompts; this server takes one prompt per request`, "unsupported_value");
    value = value[0];
    param = "prompt[0]";
  }
  if (typeof value === "string") return { prompt: textPrompt(param, value, config), text: value };
  if (Array.isArray(value)) {
    const prompt = tokenIds(param, value, config);
    return { prompt, text: decodeText(prompt) };
  }
  throw invalidField(param, `'${param}' must be a string or a list of token ids, got ${kind(value)} ${shown(value)}`, "invalid_type");
}

const CHAT_ROLES = new Set(["system", "developer", "user", "assistant"]);

function chatMessages(body: Body): ChatMessage[] {
  if (!given(body, "messages")) throw invalidField("messages", "'messages' is required: a list of {role, content}", "missing_field");
  const list = body.messages;
  if (!Array.isArray(list)) throw invalidField("messages", `'messages' must be a list, got ${kind(list)}`, "invalid_type");
  if (list.length === 0) throw invalidField("messages", "'messages' is empty: give at least one message");
  if (list.length > LIMITS.messages) throw invalidField("messages", `'messages' has ${list.length} entries; at most ${LIMITS.messages}`);
  return list.map((m, i) => {
    const at = `messages[${i}]`;
    if (typeof m !== "object" || m === null || Array.isArray(m)) throw invalidField(at, `'${at}' must be an object {role, content}, got ${kind(m)}`, "invalid_type");
    const message = m as Body;
    for (const key of Object.keys(message)) {
      // Fields of replayed assistant turns (tool_calls, refusal…) are harmless when empty.
      const empty = message[key] === null || (Array.isArray(message[key]) && (message[key] as unknown[]).length === 0);
      if (key !== "role" && key !== "content" && key !== "name" && !empty) throw invalidField(`${at}.${key}`, `unsupported field '${at}.${key}' (this server takes role, content and name)`, "unknown_field");
    }
    const role = message.role;
    if (typeof role !== "string" || !CHAT_ROLES.has(role)) throw invalidField(`${at}.role`, `'${at}.role' must be one of ${[...CHAT_ROLES].join(", ")}, got ${shown(role)}`);
    if (given(message, "name")) stringField(message, "name");
    return { role, content: messageContent(`${at}.content`, message.content) };
  });
}

function messageContent(param: string, content: unknown): string {
  if (typeof content === "string") {
    checkUnicode(param, content);
    return content;
  }
  if (!Array.isArray(content)) throw invalidField(param, `'${param}' must be a string or a list of text parts, got ${kind(content)} ${shown(content)}`, "invalid_type");
  return content.map((part, j) => {
    const p = part as Body;
    if (typeof part !== "object" || part === null || p.type !== "text" || typeof p.text !== "string") {
      throw invalidField(`${param}[${j}]`, `'${param}[${j}]' must be {"type": "text", "text": "..."}: this server reads text only`, "unsupported_value");
    }
    checkUnicode(`${param}[${j}]`, p.text);
    return p.text;
  }).join("");
}

function checkContext(prompt: Int32Array, maxTokens: number, maxTokensField: string, config: GPT2Config): void {
  const { maxT } = config;
  if (prompt.length >= maxT) {
    throw invalidField("prompt", `the prompt has ${prompt.length} tokens; the model's context is ${maxT} tokens, so a prompt may have at most ${maxT - 1} to leave room for one new token`, "context_length_exceeded");
  }
  if (prompt.length + maxTokens > maxT) {
    throw invalidField(maxTokensField, `the prompt (${prompt.length} tokens) + '${maxTokensField}' (${maxTokens}) = ${prompt.length + maxTokens} tokens exceeds the model's context of ${maxT} tokens: ask for at most ${maxT - prompt.length}`, "context_length_exceeded");
  }
}

function samplingFields(body: Body): SamplingOptions {
  const temperature = numberField(body, "temperature", { min: 0, max: LIMITS.maxTemperature }, 1);
  if (temperature > 0 && temperature < MIN_TEMPERATURE) throw invalidField("temperature", `'temperature' must be 0 (greedy) or at least ${MIN_TEMPERATURE}, got ${temperature}`);
  return {
    temperature,
    topK: numberField(body, "top_k", { integer: true, min: 0, max: Number.MAX_SAFE_INTEGER }, 0),
    topP: numberField(body, "top_p", { min: 0, max: 1, minExclusive: true }, 1),
  };
}

function checkKnown(body: Body, known: Set<string>, endpoint: Endpoint): void {
  for (const key of Object.keys(body)) {
    if (!known.has(key)) {
      const hint = endpoint === "chat" && key === "prompt" ? " (use 'messages' on /v1/chat/completions, or POST to /v1/completions)" : endpoint === "completion" && key === "messages" ? " (use 'prompt' on /v1/completions, or POST to /v1/chat/completions)" : "";
      throw invalidField(key, `unrecognized request argument '${key}'${hint}`, "unknown_field");
    }
  }
}

function common(body: Body, endpoint: Endpoint) {
  checkNeutral(body, endpoint);
  const stream = booleanField(body, "stream", false);
  return {
    model: stringField(body, "model"),
    sampling: samplingFields(body),
    seed: given(body, "seed") ? numberField(body, "seed", { integer: true, min: -Number.MAX_SAFE_INTEGER, max: Number.MAX_SAFE_INTEGER }, 0) : null,
    stop: stopField(body),
    stream,
    includeUsage: streamOptions(body, stream),
  };
}

export function parseCompletionRequest(body: Body, config: GPT2Config, decodeText: (ids: Int32Array) => string): GenerationRequest {
  checkKnown(body, COMPLETION_FIELDS, "completion");
  const fields = common(body, "completion");
  const { prompt, text } = completionPrompt(body, config, decodeText);
  const maxTokens = numberField(body, "max_tokens", { integer: true, min: 0, max: Number.MAX_SAFE_INTEGER }, Math.min(16, Math.max(0, config.maxT - prompt.length)));
  checkContext(prompt, maxTokens, "max_tokens", config);
  const logprobs = given(body, "logprobs") ? numberField(body, "logprobs", { integer: true, min: 0, max: LIMITS.completionTopLogprobs }, 0) : null;
  return { endpoint: "completion", ...fields, prompt, promptText: text, maxTokens, echo: booleanField(body, "echo", false), logprobs };
}

export function parseChatRequest(body: Body, config: GPT2Config): GenerationRequest {
  checkKnown(body, CHAT_FIELDS, "chat");
  const fields = common(body, "chat");
  const messages = chatMessages(body);
  const prompt = textPrompt("messages", renderChat(messages), config);
  if (given(body, "max_tokens") && given(body, "max_completion_tokens")) throw invalidField("max_completion_tokens", "give only one of 'max_tokens' and 'max_completion_tokens'");
  const maxTokensField = given(body, "max_completion_tokens") ? "max_completion_tokens" : "max_tokens";
  // Without a limit, a chat reply may run to the end of the context (OpenAI's default too).
  const maxTokens = numberField(body, maxTokensField, { integer: true, min: 1, max: Number.MAX_SAFE_INTEGER }, Math.max(1, config.maxT - prompt.length));
  checkContext(prompt, maxTokens, maxTokensField, config);
  const wantLogprobs = booleanField(body, "logprobs", false);
  if (given(body, "top_logprobs") && !wantLogprobs) throw invalidField("top_logprobs", "'top_logprobs' needs 'logprobs': true");
  const top = numberField(body, "top_logprobs", { integer: true, min: 0, max: LIMITS.chatTopLogprobs }, 0);
  return {
    endpoint: "chat", ...fields, prompt, promptText: null, maxTokens, echo: false,
    stop: [...CHAT_STOP_STRINGS, ...fields.stop],
    logprobs: wantLogprobs ? top : null,
  };
}
