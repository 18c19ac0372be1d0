// The server's pure parts, against references written here: stop strings over streamed text
// (against "cut the whole text at the first occurrence"), log-probabilities (against a sorted
// float64 log-softmax), the chat transcript, and request validation details that the HTTP corpus
// (serve_bad_requests.test.ts) does not pin down.
import { describe, expect, test } from "bun:test";
import { Rng } from "../src/base/rng.ts";
import { encode } from "../src/data/tokenizer.ts";
import { renderChat } from "../src/serve/chat_template.ts";
import { logSumExp, tokenLogprob, tokenString } from "../src/serve/logprobs.ts";
import { parseChatRequest, parseCompletionRequest } from "../src/serve/request.ts";
import { StopMatcher } from "../src/serve/stop_strings.ts";
import { ApiError } from "../src/serve/api_error.ts";
import { SERVE_TEST_CONFIG } from "./helpers/serve.ts";

/** What the stop-string rule means: the text up to the first occurrence of any stop string. */
function cutAtStop(text: string, stops: string[]): { text: string; stopped: boolean } {
  let first = -1;
  for (const s of stops) {
    const at = text.indexOf(s);
    if (at >= 0 && (first < 0 || at < first)) first = at;
  }
  return first < 0 ? { text, stopped: false } : { text: text.slice(0, first), stopped: true };
}

function feed(pieces: string[], stops: string[]): { sent: string[]; stopped: boolean } {
  const matcher = new StopMatcher(stops);
  const sent: string[] = [];
  for (const piece of pieces) {
    const r = matcher.push(piece);
    sent.push(r.text);
    if (r.stopped) return { sent, stopped: true };
  }
  sent.push(matcher.flush());
  return { sent, stopped: false };
}

describe("StopMatcher", () => {
  test("examples: across pieces, held back, earliest of several, emoji, flush", () => {
    expect(feed(["Hel", "lo wo", "rld"], ["o w"])).toEqual({ sent: ["Hel", "l"], stopped: true });
    expect(feed(["abc X", "Q"], ["XYZ"])).toEqual({ sent: ["abc ", "XQ", ""], stopped: false });
    expect(feed(["a", "a", "b"], ["ab"])).toEqual({ sent: ["", "a", ""], stopped: true });
    expect(feed(["x😀", "y"], ["😀y", "x"])).toEqual({ sent: [""], stopped: true });
    expect(feed(["tea ", "🍵", " time"], ["🍵"])).toEqual({ sent: ["tea ", ""], stopped: true });
    expect(feed(["ab"], ["abc"])).toEqual({ sent: ["", "ab"], stopped: false });
  });

  test("random pieces and stop strings: the sent text is always the rule's text, and never runs ahead of it", () => {
    const rng = new Rng(11);
    const alphabet = ["a", "b", "c", "\n", "é", "😀", "語"];
    const word = (max: number) => Array.from({ length: 1 + rng.below(max) }, () => alphabet[rng.below(alphabet.length)]).join("");
    for (let trial = 0; trial < 2000; trial++) {
      const pieces = Array.from({ length: 1 + rng.below(12) }, () => (rng.below(5) === 0 ? "" : word(3)));
      const stops = Array.from({ length: rng.below(4) }, () => word(4));
      const want = cutAtStop(pieces.join(""), stops);
      const { sent, stopped } = feed(pieces, stops);
      expect({ text: sent.join(""), stopped }).toEqual(want);
      // Every prefix sent so far is a prefix of the final answer (nothing sent is later retracted).
      let soFar = "";
      for (const s of sent) {
        soFar += s;
        expect(want.text.startsWith(soFar)).toBe(true);
      }
    }
  });
});

describe("log-probabilities", () => {
  test("match a float64 log-softmax, top-k sorted with ties by lowest id", () => {
    const V = 1000;
    const logits = new Float32Array(V + 24).fill(1e30); // the padding past V must be ignored
    const rng = new Rng(3);
    for (let i = 0; i < V; i++) logits[i] = Math.round(rng.normal() * 40) / 10; // many ties
    let max = -Infinity;
    for (let i = 0; i < V; i++) max = Math.max(max, logits[i]);
    let sum = 0;
    for (let i = 0; i < V; i++) sum += Math.exp(logits[i] - max);
    const lse = max + Math.log(sum);
    expect(Math.abs(logSumExp(logits, V) - lse)).toBeLessThan(1e-12);
    const order = [...Array(V).keys()].sort((a, b) => logits[b] - logits[a] || a - b);
    for (const k of [0, 1, 5, 20]) {
      const got = tokenLogprob(logits, V, 17, k);
      expect(got.token).toBe(17);
      expect(Math.abs(got.logprob - (logits[17] - lse))).toBeLessThan(1e-12);
      expect(got.top.map((t) => t.token)).toEqual(order.slice(0, k));
      for (const t of got.top) expect(Math.abs(t.logprob - (logits[t.token] - lse))).toBeLessThan(1e-12);
    }
    expect(tokenString(50256)).toBe("<|endoftext|>");
    expect(tokenString(encode(" hello")[0])).toBe(" hello");
  });
});

describe("requests", () => {
  const config = SERVE_TEST_CONFIG;
  const decodeText = () => "";
  const failure = (f: () => unknown): ApiError => {
    try {
      f();
    } catch (error) {
      expect(error).toBeInstanceOf(ApiError);
      return error as ApiError;
    }
    throw new Error("expected an ApiError");
  };

  test("chat messages render as `role: content` lines, then `assistant:`", () => {
    expect(renderChat([{ role: "system", content: "Be brief." }, { role: "user", content: "Hi\nthere" }])).toBe("system: Be brief.\nuser: Hi\nthere\nassistant:");
    const request = parseChatRequest({ messages: [{ role: "user", content: [{ type: "text", text: "a" }, { type: "text", text: "b" }] }] }, config);
    expect(Array.from(request.prompt)).toEqual(Array.from(encode("user: ab\nassistant:")));
    // Without max_tokens a reply may fill the context; the transcript stops at a new turn.
    expect(request.maxTokens).toBe(config.maxT - request.prompt.length);
    expect(request.stop).toEqual(["\nuser:", "\nassistant:", "\nsystem:"]);
  });

  test("defaults, the empty prompt, and null as 'not given'", () => {
    const r = parseCompletionRequest({ prompt: "", max_tokens: null, temperature: null, stop: null, seed: null }, config, decodeText);
    expect(Array.from(r.prompt)).toEqual([50256]);
    expect(r).toMatchObject({ maxTokens: 16, sampling: { temperature: 1, topK: 0, topP: 1 }, stop: [], seed: null, stream: false, logprobs: null, echo: false });
  });

  test("the context limit names the field and the numbers", () => {
    const e = failure(() => parseCompletionRequest({ prompt: Array(1000).fill(1), max_tokens: 25 }, config, decodeText));
    expect(e.param).toBe("max_tokens");
    expect(e.code).toBe("context_length_exceeded");
    expect(e.message).toContain("1000 tokens");
    expect(e.message).toContain("1024");
    expect(e.message).toContain("at most 24");
    expect(parseCompletionRequest({ prompt: Array(1000).fill(1), max_tokens: 24 }, config, decodeText).maxTokens).toBe(24);
    const chat = failure(() => parseChatRequest({ messages: [{ role: "user", content: "x" }], max_completion_tokens: 2000 }, config));
    expect(chat.param).toBe("max_completion_tokens");
  });
});
