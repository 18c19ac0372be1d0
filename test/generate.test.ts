// The inference engine (KV cache, batched prefill, matvec decode) against an independent float64
// GPT-2 forward (src/ref/gpt2.ts) and against itself; the generation loop; sampling semantics;
// streaming text; and the generate CLI's error handling.
//
// Tolerance for float32 engine vs float64 reference: with these tiny models every dot product has
// at most 4C = 128 terms, so each float32 matmul/attention/layernorm output carries a relative
// error below γ_128 ≈ 128·2^-24 ≈ 7.6e-6 of the sum of |terms| (Higham §3.1); about a dozen such
// operations are chained per layer (two layers here), and the weights (std 0.3) keep activations
// and logits O(1). That bounds the logit error near 1e-4·O(1); we allow 1e-4 + 1e-4·|logit| and
// measured ~2e-6. A wrong cache position, a missing residual, a dropped bias or a key past the
// causal limit moves logits by O(0.1–1): the test "positions differ" below checks that the
// reference logits of neighbouring positions are far apart, so such bugs cannot hide inside the
// tolerance.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { encode } from "../src/data/tokenizer.ts";
import { setThreads } from "../src/ffi.ts";
import { InferenceEngine, InferenceError } from "../src/infer/engine.ts";
import { generate } from "../src/infer/generate.ts";
import { argmax, Sampler, samplingDistribution, SamplingError } from "../src/infer/sampling.ts";
import { TokenTextStream } from "../src/infer/text_stream.ts";
import { writeLlmcCheckpoint } from "../src/io/llmc.ts";
import type { GPT2Config } from "../src/model/config.ts";
import { gpt2ForwardRef } from "../src/ref/gpt2.ts";
import { randomWeights } from "../src/model/init.ts";
import { randomF32, randomTokens, worstRatio } from "./helpers/random.ts";

const ATOL = 1e-4, RTOL = 1e-4;
const CONFIGS: GPT2Config[] = [
  { maxT: 32, V: 100, Vp: 128, L: 2, NH: 2, C: 16 }, // "tiny"
  { maxT: 70, V: 77, Vp: 128, L: 2, NH: 3, C: 30 }, // head size 10 (not a multiple of 8), >64 keys
];

function rowsOf(all: Float32Array, T: number, V: number, Vp: number): Float32Array {
  const out = new Float32Array(T * V);
  for (let t = 0; t < T; t++) out.set(all.subarray(t * Vp, t * Vp + V), t * V);
  return out;
}

describe("InferenceEngine vs the float64 reference", () => {
  for (const config of CONFIGS) {
    const label = `L${config.L} NH${config.NH} C${config.C} maxT${config.maxT}`;
    const weights = randomWeights(config, 17, { std: 0.3 });
    const T = config.maxT;
    const tokens = randomTokens(T, config.V, 23);
    const reference = gpt2ForwardRef(weights, tokens);

    test(`${label}: positions differ (so the tolerance cannot hide a position bug)`, () => {
      const { V } = config;
      for (const t of [1, 5, T - 1]) {
        expect(worstRatio(reference.subarray(t * V, (t + 1) * V), reference.subarray((t - 1) * V, t * V), ATOL, RTOL)).toBeGreaterThan(100);
      }
    });

    for (const threads of [1, 2]) {
      test(`${label}, ${threads} threads: prefill of the whole sequence matches at every position`, () => {
        setThreads(threads);
        const engine = new InferenceEngine(weights);
        const all = engine.prefill(tokens, { allLogits: true });
        expect(engine.position).toBe(T);
        expect(worstRatio(rowsOf(all, T, config.V, config.Vp), reference, ATOL, RTOL)).toBeLessThanOrEqual(1);
      });
    }

    test(`${label}: KV-cache decode matches the reference and the full prefill at every position`, () => {
      const engine = new InferenceEngine(weights);
      const full = rowsOf(engine.prefill(tokens, { allLogits: true }), T, config.V, config.Vp);
      for (const split of [1, 7]) {
        engine.reset();
        const decoded = new Float32Array(T * config.V);
        const first = engine.prefill(tokens.subarray(0, split), { allLogits: true });
        decoded.set(rowsOf(first, split, config.V, config.Vp));
        for (let t = split; t < T; t++) decoded.set(engine.decode(tokens[t]).subarray(0, config.V), t * config.V);
        expect(worstRatio(decoded, reference, ATOL, RTOL)).toBeLessThanOrEqual(1);
        // Same engine, same float32 arithmetic apart from summation order: tighter.
        expect(worstRatio(decoded, full, 1e-5, 1e-5)).toBeLessThanOrEqual(1);
      }
    });

    test(`${label}: chunked prefill and last-row logits agree with one pass`, () => {
      const chunked = new InferenceEngine(weights, { prefillChunk: 5 });
      const all = chunked.prefill(tokens, { allLogits: true });
      expect(worstRatio(rowsOf(all, T, config.V, config.Vp), reference, ATOL, RTOL)).toBeLessThanOrEqual(1);
      chunked.reset();
      const last = chunked.prefill(tokens.subarray(0, 13)).subarray(0, config.V);
      expect(worstRatio(last, reference.subarray(12 * config.V, 13 * config.V), ATOL, RTOL)).toBeLessThanOrEqual(1);
    });
  }

  test("rejects bad tokens and a full cache with clear errors", () => {
    const config = CONFIGS[0];
    const engine = new InferenceEngine(randomWeights(config, 1, { std: 0.02 }));
    expect(() => engine.prefill([])).toThrow(InferenceError);
    expect(() => engine.prefill([1, 100])).toThrow(/token 1 is 100, outside the vocabulary \[0, 100\)/);
    expect(() => engine.decode(-1)).toThrow(/outside the vocabulary/);
    engine.prefill(randomTokens(config.maxT, config.V, 1));
    expect(() => engine.decode(0)).toThrow(/32 cached \+ 1 new tokens exceed the model's context of 32/);
  });
});

describe("generate", () => {
  const config = CONFIGS[0];
  const weights = randomWeights(config, 5, { std: 0.3 });
  const prompt = Int32Array.of(3, 14, 15, 92);

  test("greedy decoding is reproducible and follows the reference argmax", () => {
    const engine = new InferenceEngine(weights);
    const options = { maxNewTokens: 12, sampling: { temperature: 0, topK: 0, topP: 1 }, seed: 1, stopToken: null };
    const a = generate(engine, prompt, options);
    const b = generate(engine, prompt, { ...options, seed: 99 });
    expect(a.tokens.length).toBe(12);
    expect(a.stopReason).toBe("max_new_tokens");
    expect(b.tokens).toEqual(a.tokens);
    const sequence = [...prompt, ...a.tokens];
    const reference = gpt2ForwardRef(weights, sequence.slice(0, -1));
    for (let i = 0; i < a.tokens.length; i++) {
      const row = reference.subarray((prompt.length - 1 + i) * config.V, (prompt.length + i) * config.V);
      expect(a.tokens[i]).toBe(argmax(Float32Array.from(row), config.V));
    }
  });

  test("seeded sampling is reproducible; another seed gives another sequence", () => {
    const engine = new InferenceEngine(weights);
    const options = { maxNewTokens: 20, sampling: { temperature: 1, topK: 40, topP: 0.95 }, seed: 7, stopToken: null };
    const a = generate(engine, prompt, options).tokens;
    expect(generate(engine, prompt, options).tokens).toEqual(a);
    expect(generate(engine, prompt, { ...options, seed: 8 }).tokens).not.toEqual(a);
  });

  test("stops after the stop token, and when the context is full", () => {
    const engine = new InferenceEngine(weights);
    const options = { maxNewTokens: 100, sampling: { temperature: 1, topK: 0, topP: 1 }, seed: 3, stopToken: null };
    const free = generate(engine, prompt, options);
    expect(free.stopReason).toBe("context_full");
    expect(prompt.length + free.tokens.length).toBe(config.maxT);
    const stop = free.tokens[5];
    const stopped = generate(engine, prompt, { ...options, stopToken: stop });
    expect(stopped.stopReason).toBe("eot");
    expect(stopped.tokens).toEqual(free.tokens.slice(0, free.tokens.indexOf(stop) + 1));
  });

  test("rejects an empty prompt, a prompt that fills the context, and bad ids", () => {
    const engine = new InferenceEngine(weights);
    const options = { maxNewTokens: 5, sampling: { temperature: 0, topK: 0, topP: 1 }, seed: 1, stopToken: null };
    expect(() => generate(engine, [], options)).toThrow(/prompt is empty/);
    expect(() => generate(engine, new Array(32).fill(1), options)).toThrow(/prompt has 32 tokens; the model's context is 32, so at most 31/);
    expect(() => generate(engine, [1, 2, 100], options)).toThrow(/prompt token 2 is 100, outside the model's vocabulary \[0, 100\)/);
  });
});

describe("sampling", () => {
  const V = 6, Vp = 8;
  // Probabilities (temperature 1): 0.4, 0.25, 0.15, 0.1, 0.06, 0.04; padded logits are huge.
  const probs = [0.4, 0.25, 0.15, 0.1, 0.06, 0.04];
  const logits = Float32Array.from([...probs.map(Math.log), 50, 50]);
  const ids = (d: { ids: Int32Array }) => Array.from(d.ids);

  test("temperature 0 is the argmax over the first V logits only", () => {
    expect(new Sampler({ temperature: 0, topK: 0, topP: 1 }, 1).sample(logits, V)).toBe(0);
    expect(argmax(Float32Array.of(1, 3, 3, 2), 4)).toBe(1); // ties → lowest id
    expect(ids(samplingDistribution(logits, V, { temperature: 0, topK: 3, topP: 0.5 }))).toEqual([0]);
  });

  test("no cut keeps all V tokens with softmax probabilities (none of the padded ones)", () => {
    const d = samplingDistribution(logits, V, { temperature: 1, topK: 0, topP: 1 });
    expect(ids(d)).toEqual([0, 1, 2, 3, 4, 5]);
    for (let i = 0; i < V; i++) expect(d.probs[i]).toBeCloseTo(probs[i], 6);
    const hot = samplingDistribution(logits, V, { temperature: 2, topK: 0, topP: 1 });
    const z = probs.reduce((a, p) => a + Math.sqrt(p), 0);
    for (let i = 0; i < V; i++) expect(hot.probs[i]).toBeCloseTo(Math.sqrt(probs[i]) / z, 6);
  });

  test("top-k keeps the k most probable, renormalised", () => {
    const d = samplingDistribution(logits, V, { temperature: 1, topK: 3, topP: 1 });
    expect(ids(d)).toEqual([0, 1, 2]);
    for (let i = 0; i < 3; i++) expect(d.probs[i]).toBeCloseTo(probs[i] / 0.8, 6);
    expect(ids(samplingDistribution(logits, V, { temperature: 1, topK: 100, topP: 1 })).length).toBe(V);
  });

  test("top-p keeps the smallest prefix reaching the mass (after top-k)", () => {
    expect(ids(samplingDistribution(logits, V, { temperature: 1, topK: 0, topP: 0.6 }))).toEqual([0, 1]);
    expect(ids(samplingDistribution(logits, V, { temperature: 1, topK: 0, topP: 0.66 }))).toEqual([0, 1, 2]);
    expect(ids(samplingDistribution(logits, V, { temperature: 1, topK: 0, topP: 0.1 }))).toEqual([0]);
    // top-k 3 leaves mass 0.8; p = 0.75 of it is 0.6 → still {0, 1}; p = 0.9 → 0.72 → {0, 1, 2}
    expect(ids(samplingDistribution(logits, V, { temperature: 1, topK: 3, topP: 0.75 }))).toEqual([0, 1]);
    expect(ids(samplingDistribution(logits, V, { temperature: 1, topK: 3, topP: 0.9 }))).toEqual([0, 1, 2]);
  });

  test("the cut found on sorted probabilities equals a comparator sort over a 50k vocabulary", () => {
    const big = randomF32(50304, 4, 6); // logits in [-6, 6): thousands of tokens carry mass
    for (const options of [{ temperature: 1, topK: 0, topP: 0.9 }, { temperature: 0.7, topK: 500, topP: 0.5 }, { temperature: 3, topK: 0, topP: 0.999 }, { temperature: 1, topK: 20000, topP: 1 }]) {
      const got = samplingDistribution(big, 50257, options);
      const weights = Array.from(big.subarray(0, 50257), (l) => Math.exp(l / options.temperature));
      let order = weights.map((_, i) => i).sort((a, b) => weights[b] - weights[a] || a - b);
      if (options.topK > 0) order = order.slice(0, options.topK);
      const mass = order.reduce((a, i) => a + weights[i], 0);
      let cumulative = 0, count = 0;
      while (count < order.length && cumulative < options.topP * mass) cumulative += weights[order[count++]];
      expect(ids(got)).toEqual(order.slice(0, count).sort((a, b) => a - b));
      let sum = 0;
      for (const p of got.probs) sum += p;
      expect(sum).toBeCloseTo(1, 12);
    }
  });

  test("ties at the cut are broken by lowest id", () => {
    const flat = Float32Array.of(1, 2, 2, 2, 0);
    expect(ids(samplingDistribution(flat, 5, { temperature: 1, topK: 2, topP: 1 }))).toEqual([1, 2]);
    expect(ids(samplingDistribution(flat, 5, { temperature: 1, topK: 0, topP: 0.5 }))).toEqual([1, 2]);
  });

  test("draws follow the distribution, and are reproducible per seed", () => {
    const sampler = new Sampler({ temperature: 1, topK: 0, topP: 1 }, 42);
    const n = 20000;
    const counts = new Array(Vp).fill(0);
    for (let i = 0; i < n; i++) counts[sampler.sample(logits, V)]++;
    expect(counts[6] + counts[7]).toBe(0);
    // 5 standard deviations of a binomial count: fails by chance with probability < 1e-5.
    for (let i = 0; i < V; i++) expect(Math.abs(counts[i] / n - probs[i])).toBeLessThan(5 * Math.sqrt((probs[i] * (1 - probs[i])) / n));
    const draw = (seed: number) => { const s = new Sampler({ temperature: 1, topK: 4, topP: 0.9 }, seed); return Array.from({ length: 50 }, () => s.sample(logits, V)); };
    expect(draw(5)).toEqual(draw(5));
    expect(draw(5)).not.toEqual(draw(6));
  });

  test("bad options are rejected", () => {
    expect(() => new Sampler({ temperature: -1, topK: 0, topP: 1 }, 1)).toThrow(SamplingError);
    expect(() => new Sampler({ temperature: 1, topK: 1.5, topP: 1 }, 1)).toThrow(/top-k/);
    expect(() => new Sampler({ temperature: 1, topK: 0, topP: 0 }, 1)).toThrow(/top-p/);
    expect(() => new Sampler({ temperature: 1, topK: 0, topP: 1.1 }, 1)).toThrow(/top-p/);
    expect(() => argmax(logits, 9)).toThrow(SamplingError);
  });
});

describe("TokenTextStream", () => {
  test("prints only whole characters when tokens split them", () => {
    const text = "naïve 🙂 日本語 — ok";
    const tokens = encode(text);
    const stream = new TokenTextStream();
    const pieces = Array.from(tokens, (t) => stream.push(t));
    pieces.push(stream.flush());
    expect(pieces.join("")).toBe(text);
    expect(pieces.some((p) => p.includes("\ufffd"))).toBe(false);
    expect(pieces.filter((p) => p === "").length).toBeGreaterThan(0); // some token ended mid-character
  });
});

describe("bun run generate", () => {
  const root = resolve(import.meta.dir, "..");
  const config: GPT2Config = { maxT: 32, V: 50257, Vp: 50304, L: 2, NH: 2, C: 16 };
  let dir = "";
  let ckpt = "";
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "llmts-gen-"));
    ckpt = join(dir, "model.bin");
    writeLlmcCheckpoint(ckpt, randomWeights(config, 9, { std: 0.3 }));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const run = (...args: string[]) => {
    const p = Bun.spawnSync(["bun", "src/cli/generate.ts", "--ckpt", ckpt, "--threads", "1", ...args], { cwd: root, env: { ...process.env, NO_COLOR: "1" } });
    return { code: p.exitCode, stdout: p.stdout.toString(), stderr: p.stderr.toString() };
  };

  test("errors exit 2 with a clear message", () => {
    const cases: Array<[string[], RegExp]> = [
      [["--prompt", ""], /the prompt is empty/],
      [["--prompt-tokens", new Array(32).fill(11).join(",")], /the prompt has 32 tokens; the model's context is 32/],
      [["--prompt-tokens", "1,50257"], /prompt token 1 is 50257, outside the model's vocabulary \[0, 50257\)/],
      [["--prompt-tokens", "1,x"], /--prompt-tokens: expected integers .* \("x" is not one\)/],
      [["--prompt", "hi", "--top-p", "0"], /--top-p: expected a number > 0 and ≤ 1, got "0"/],
      [["--prompt", "hi", "--temperature=-1"], /--temperature: expected a number ≥ 0/],
      [["--prompt", "hi", "--max-new-tokens", "0"], /--max-new-tokens: expected an integer ≥ 1/],
      [["--prompt", "hi", "--prompt-tokens", "1"], /exactly one of --prompt/],
      [["--prompt", "hi", "--wat"], /Unknown option '--wat'/],
    ];
    for (const [args, message] of cases) {
      const r = run(...args);
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(message);
      expect(r.stdout).toBe("");
    }
    const missing = Bun.spawnSync(["bun", "src/cli/generate.ts", "--ckpt", join(dir, "none.bin"), "--prompt", "a"], { cwd: root });
    expect(missing.exitCode).toBe(2);
    expect(missing.stderr.toString()).toMatch(/no such file/);
  });

  // Found by the fuzzer: finite weights whose forward pass overflows float32 gave NaN logits, and
  // greedy sampling printed tokens from them (argmax picks an infinite logit) with exit 0.
  test("weights that overflow float32 stop generation with exit 2 naming the checkpoint", () => {
    const weights = randomWeights(config, 9, { std: 0.3 });
    weights.tensors.lnfb.fill(3e38); // finite, but the logits (≈ Σ wte·3e38) overflow
    const overflowing = join(dir, "overflowing.bin");
    writeLlmcCheckpoint(overflowing, weights);
    for (const temperature of ["0", "1"]) {
      const p = Bun.spawnSync(["bun", "src/cli/generate.ts", "--ckpt", overflowing, "--threads", "1", "--prompt-tokens", "1,2", "--temperature", temperature], { cwd: root });
      expect(p.exitCode).toBe(2);
      expect(p.stderr.toString()).toContain(`generate: ${overflowing}: the model's logits are not finite`);
      expect(p.stdout.toString()).toBe("");
    }
  });

  test("--json is reproducible per seed, its text matches the streamed text, and a full context stops early", () => {
    const args = ["--prompt", "Hello, world", "--max-new-tokens", "40", "--temperature", "1", "--seed", "5"];
    const a = run(...args, "--json");
    expect(a.code).toBe(0);
    const json = JSON.parse(a.stdout) as { prompt_tokens: number[]; tokens: number[]; text: string };
    expect(json.prompt_tokens).toEqual(Array.from(encode("Hello, world")));
    expect(json.prompt_tokens.length + json.tokens.length).toBeLessThanOrEqual(config.maxT);
    expect(a.stderr).toMatch(/stopped: (context_full|eot)/);
    expect(run(...args, "--json").stdout).toBe(a.stdout);
    const streamed = run(...args);
    expect(streamed.code).toBe(0);
    expect(streamed.stdout).toBe(`${json.text}\n`);
    expect(streamed.stderr).toMatch(/ms\/token, [\d.]+ tokens\/s/);
  });

  test("--help prints usage", () => {
    const r = run("--help");
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/usage: bun run generate/);
  });
});
