// The server's pure parts, against references written here: stop strings over streamed text
// (against "cut the whole text at the first occurrence"), log-probabilities (against a sorted
// float64 log-softmax), the chat transcript, and request validation details that the HTTP corpus
// (serve_bad_requests.test.ts) does not pin down, and the scheduler in process (against generate()).
import { describe, expect, test } from "bun:test";
import { Rng } from "../src/base/rng.ts";
import { encode } from "../src/data/tokenizer.ts";
import { renderChat } from "../src/serve/chat_template.ts";
import { logSumExp, tokenLogprob, tokenString } from "../src/serve/logprobs.ts";
import { parseChatRequest, parseCompletionRequest } from "../src/serve/request.ts";
import { StopMatcher } from "../src/serve/stop_strings.ts";
import { ApiError } from "../src/serve/api_error.ts";
import { BatchEngine } from "../src/infer/batch.ts";
import { PackedMatmuls } from "../src/infer/packed_matmuls.ts";
import { InferenceEngine } from "../src/infer/engine.ts";
import { generate } from "../src/infer/generate.ts";
import { Sampler } from "../src/infer/sampling.ts";
import type { GPT2Config } from "../src/model/config.ts";
import { randomWeights } from "../src/model/init.ts";
import { type FinishReason, type Job, QueueFullError, Scheduler } from "../src/serve/scheduler.ts";
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

describe("Scheduler", () => {
  const config: GPT2Config = { maxT: 64, V: 100, Vp: 128, L: 2, NH: 4, C: 64 };
  const weights = randomWeights(config, 9, { std: 0.4 });
  const greedy = { temperature: 0, topK: 0, topP: 1 };

  function job(prompt: number[], maxTokens: number, events: string[], extra: Partial<Job> = {}): Job & { tokens: number[]; done: Promise<FinishReason> } {
    let finish!: (r: FinishReason) => void;
    const done = new Promise<FinishReason>((resolve) => (finish = resolve));
    const tokens: number[] = [];
    return {
      prompt: Int32Array.from(prompt), maxTokens, sampler: new Sampler(greedy, 1), stopToken: null, scorePrompt: false,
      onToken: (t) => { tokens.push(t); return false; },
      onFinish: (reason) => { events.push(reason); finish(reason); },
      tokens, done, ...extra,
    };
  }

  test("concurrent jobs get generate()'s tokens; the queue limit, cancel from a callback and shutdown behave", async () => {
    const batch = new BatchEngine(weights, 2);
    const scheduler = new Scheduler(batch, 1);
    const events: string[] = [];
    const a = job([1, 2, 3], 20, events), b = job([4], 7, events), c = job([5, 6], 12, events);
    scheduler.submit(a);
    scheduler.submit(b);
    scheduler.submit(c); // waits in the queue (2 slots)
    expect(() => scheduler.submit(job([7], 3, events))).toThrow(QueueFullError);
    await Promise.all([a.done, b.done, c.done]);
    for (const j of [a, b, c]) {
      const want = generate(new InferenceEngine(weights, { packed: batch.packed }), j.prompt, { maxNewTokens: j.maxTokens, sampling: greedy, seed: 1, stopToken: null });
      expect(j.tokens).toEqual(want.tokens);
    }
    expect(events).toEqual(["max_tokens", "max_tokens", "max_tokens"]);

    // A job cancelled from inside its own callback (its client went away) gets nothing more.
    let cancel: () => void = () => {};
    const d = job([1], 30, events, { onToken: () => { d.tokens.push(0); if (d.tokens.length === 3) cancel(); return false; } });
    cancel = scheduler.submit(d);
    expect(await d.done).toBe("cancelled");
    await Bun.sleep(20);
    expect(d.tokens.length).toBe(3);
    expect(scheduler.stats()).toMatchObject({ busy: 0, queued: 0 });

    const e = job([1], 60, events), f = job([2], 60, events), g = job([3], 60, events);
    for (const j of [e, f, g]) scheduler.submit(j);
    await scheduler.shutdown();
    expect(await Promise.all([e.done, f.done, g.done])).toEqual(["shutdown", "shutdown", "shutdown"]);
    expect(() => scheduler.submit(job([1], 1, events))).toThrow(QueueFullError);
  });
});
