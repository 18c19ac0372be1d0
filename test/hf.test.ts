// The Hugging Face GPT-2 loader against the llm.c-format loader on the same weights: the folders
// come from an independent test writer (test/helpers/hf_folder.ts) in HF's layout (Conv1D weights
// transposed, with or without the "transformer." prefix, causal-mask buffers, F16/BF16 variants).
// Parameters must match exactly (every layout step is a permutation; F16/BF16 weights are chosen
// exactly representable), so logits through the engine match bit for bit.
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { InferenceEngine } from "../src/infer/engine.ts";
import { readHuggingFaceFolder, writeHuggingFaceFolder } from "../src/io/hf.ts";
import { readLlmcCheckpoint, writeLlmcCheckpoint } from "../src/io/llmc.ts";
import { loadWeights, resolveWeightsPath } from "../src/io/load_weights.ts";
import { randomWeights } from "../src/model/init.ts";
import { GPT2Weights, parameterLayout } from "../src/model/weights.ts";
import type { GPT2Config } from "../src/model/config.ts";
import { type Dtype, hfConfigJson, quantize, type RawTensor, writeHfFolder } from "./helpers/hf_folder.ts";
import { randomTokens } from "./helpers/random.ts";

// Odd sizes: V not a multiple of 128 (padding rows), C/NH = 10 (not a multiple of 8).
const CONFIG: GPT2Config = { maxT: 24, V: 97, Vp: 128, L: 2, NH: 3, C: 30 };
const dir = mkdtempSync(join(tmpdir(), "llmts-hf-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let counter = 0;
const folder = () => join(dir, `m${counter++}`);

function weights(dtype: Dtype): Float32Array {
  const params = quantize(randomWeights(CONFIG, 3, { std: 0.2 }).params, dtype);
  const { offsets } = parameterLayout(CONFIG);
  params.fill(0, offsets.wte + CONFIG.V * CONFIG.C, offsets.wte + CONFIG.Vp * CONFIG.C);
  return params;
}

function logitsOf(params: Float32Array, tokens: Int32Array): Float32Array {
  return new InferenceEngine(new GPT2Weights(CONFIG, params)).prefill(tokens, { allLogits: true });
}

describe("readHuggingFaceFolder", () => {
  const tokens = randomTokens(CONFIG.maxT, CONFIG.V, 5);
  for (const variant of [
    { dtype: "F32" as Dtype, prefix: false, maskBuffers: true, lmHead: false },
    { dtype: "F32" as Dtype, prefix: true, maskBuffers: true, lmHead: true },
    { dtype: "F16" as Dtype, prefix: true, maskBuffers: false, lmHead: false },
    { dtype: "BF16" as Dtype, prefix: false, maskBuffers: true, lmHead: false },
  ]) {
    test(`HF folder (${JSON.stringify(variant)}) loads the same weights and logits as the llm.c file`, () => {
      const params = weights(variant.dtype);
      const hf = folder();
      writeHfFolder(hf, CONFIG, params, variant);
      const llmc = join(dir, `m${counter++}.bin`);
      writeLlmcCheckpoint(llmc, new GPT2Weights(CONFIG, params));
      expect(resolveWeightsPath(hf).format).toBe("hf");
      const fromHf = loadWeights(hf);
      const fromLlmc = readLlmcCheckpoint(llmc);
      expect(fromHf.config).toEqual(CONFIG);
      expect(fromHf.params.length).toBe(fromLlmc.params.length);
      let mismatches = 0;
      for (let i = 0; i < params.length; i++) if (fromHf.params[i] !== fromLlmc.params[i]) mismatches++;
      expect(mismatches).toBe(0);
      expect(logitsOf(fromHf.params, tokens)).toEqual(logitsOf(fromLlmc.params, tokens));
    });
  }

  test("the test writer really transposes: a non-transposing reader would differ", () => {
    // Guards the test above: if Conv1D weights were square-symmetric or stored untransposed by the
    // helper, equality would prove nothing.
    const params = weights("F32");
    const hf = folder();
    writeHfFolder(hf, CONFIG, params);
    const loaded = readHuggingFaceFolder(hf).params;
    const { offsets, sizes } = parameterLayout(CONFIG);
    const qkv = params.subarray(offsets.qkvw, offsets.qkvw + sizes.qkvw);
    expect(loaded.subarray(offsets.qkvw, offsets.qkvw + sizes.qkvw)).toEqual(qkv);
    expect(qkv[1]).not.toBe(qkv[3 * CONFIG.C]); // (0,1) vs (1,0) of the (3C, C) matrix
  });

  test("writeHuggingFaceFolder round-trips through the reader, and its files load in the test layout", () => {
    const params = weights("F32");
    const out = folder();
    writeHuggingFaceFolder(out, new GPT2Weights(CONFIG, params));
    const back = readHuggingFaceFolder(out);
    expect(back.config).toEqual(CONFIG);
    expect(back.params).toEqual(params);
  });

  const broken: Array<[string, (t: RawTensor[]) => RawTensor[], RegExp]> = [
    ["a missing tensor", (t) => t.filter((x) => x.name !== "h.1.mlp.c_fc.bias"), /missing tensor "h\.1\.mlp\.c_fc\.bias"/],
    ["a wrong shape", (t) => t.map((x) => (x.name === "h.0.attn.c_attn.weight" ? { ...x, shape: [3 * CONFIG.C, CONFIG.C] } : x)), /"h\.0\.attn\.c_attn\.weight" has shape \[90, 30\], config\.json implies \[30, 90\]/],
    ["an untied lm_head", (t) => [...t, { name: "lm_head.weight", shape: [CONFIG.V, CONFIG.C], values: new Float32Array(CONFIG.V * CONFIG.C).fill(0.5) }], /lm_head\.weight" differs from wte/],
    ["an unknown tensor", (t) => [...t, { name: "h.0.attn.extra", shape: [2], values: new Float32Array(2) }], /unexpected tensors.*"h\.0\.attn\.extra"/],
    ["both name styles", (t) => [...t, { ...t[0], name: `transformer.${t[0].name}` }], /both "wte\.weight" and "transformer\.wte\.weight"/],
    ["a NaN weight", (t) => t.map((x) => (x.name === "ln_f.bias" ? { ...x, values: Float32Array.of(...x.values.slice(1), NaN) } : x)), /tensor lnfb has a non-finite value/],
  ];
  for (const [what, edit, message] of broken) {
    test(`rejects ${what}, naming the tensor`, () => {
      const hf = folder();
      writeHfFolder(hf, CONFIG, weights("F32"), { edit });
      expect(() => readHuggingFaceFolder(hf)).toThrow(message);
    });
  }

  test("rejects bad config.json fields and unsupported variants", () => {
    const cases: Array<[(j: Record<string, unknown>) => void, RegExp]> = [
      [(j) => delete j.n_head, /missing n_head/],
      [(j) => { delete j.n_positions; delete j.n_ctx; }, /missing n_positions or n_ctx/],
      [(j) => (j.n_embd = 31), /C \(31\) is not a multiple of NH|has shape/],
      [(j) => (j.activation_function = "relu"), /activation_function "relu"/],
      [(j) => (j.layer_norm_epsilon = 1e-6), /layer_norm_epsilon/],
      [(j) => (j.vocab_size = "97"), /vocab_size must be a positive integer/],
    ];
    for (const [editConfig, message] of cases) {
      const hf = folder();
      writeHfFolder(hf, CONFIG, weights("F32"), { editConfig });
      expect(() => readHuggingFaceFolder(hf)).toThrow(message);
    }
    // Found by the fuzzer: these messages recursed through a deeply nested value and overflowed
    // the stack (JSON.parse reads it; JSON.stringify and template strings recurse).
    const deep = "[".repeat(100000) + "]".repeat(100000);
    for (const [key, message] of [
      ["layer_norm_epsilon", /layer_norm_epsilon \[\[\[\[…\]\]\]\] is not supported/],
      ["activation_function", /activation_function \[\[\[\[…\]\]\]\] is not supported/],
      ["n_embd", /n_embd must be a positive integer, got \[\[\[\[…\]\]\]\]/],
    ] as const) {
      const hf = folder();
      writeHfFolder(hf, CONFIG, weights("F32"));
      const text = readFileSync(join(hf, "config.json"), "utf8");
      writeFileSync(join(hf, "config.json"), text.replace(new RegExp(`"${key}":("[^"]*"|[^,}]*)`), `"${key}":${deep}`));
      expect(() => readHuggingFaceFolder(hf)).toThrow(message);
    }
    const noWeights = folder();
    writeHfFolder(noWeights, CONFIG, weights("F32"));
    writeFileSync(join(noWeights, "config.json"), "{not json");
    expect(() => readHuggingFaceFolder(noWeights)).toThrow(/config\.json: not valid UTF-8 JSON/);
    // Found by the fuzzer: invalid UTF-8 inside a string value was decoded to U+FFFD and accepted.
    const json = Buffer.from(JSON.stringify({ ...hfConfigJson(CONFIG), model_type: "gpt2" }));
    const at = json.indexOf("gpt2");
    json[at + 1] = 0xff;
    writeFileSync(join(noWeights, "config.json"), json);
    expect(() => readHuggingFaceFolder(noWeights)).toThrow(/config\.json: not valid UTF-8 JSON/);
    // Found by the fuzzer: a JSON root other than an object was read as one (TypeError on null).
    for (const [text, what] of [["null", "null"], ["[1, 2]", "an array"], ["12", "number"], ['"gpt2"', "string"]]) {
      writeFileSync(join(noWeights, "config.json"), text);
      expect(() => readHuggingFaceFolder(noWeights)).toThrow(new RegExp(`config\\.json: not a JSON object \\(${what}\\)`));
    }
  });

  // Found by the fuzzer: the parameter buffer was allocated from config.json's shapes before the
  // file was checked to hold them, so a config.json claiming a huge model threw "RangeError: Out of memory".
  test("a config.json far larger than the safetensors file is refused before anything is allocated", () => {
    const hf = folder();
    writeHfFolder(hf, CONFIG, weights("F32"), { editConfig: (j) => { j.n_layer = 1024; j.n_embd = 65535; j.n_head = 5; } });
    expect(() => readHuggingFaceFolder(hf)).toThrow(/model\.safetensors: tensor "wte\.weight" has shape \[97, 30\], config\.json implies \[97, 65535\]/);
    const deeper = folder();
    writeHfFolder(deeper, CONFIG, weights("F32"), { editConfig: (j) => { j.n_layer = 1000; } });
    expect(() => readHuggingFaceFolder(deeper)).toThrow(/missing tensor "h\.2\.ln_1\.weight"/);
  });

  test("n_ctx is accepted when n_positions is absent", () => {
    const hf = folder();
    writeHfFolder(hf, CONFIG, weights("F32"), { editConfig: (j) => delete j.n_positions });
    expect(readHuggingFaceFolder(hf).config.maxT).toBe(CONFIG.maxT);
  });
});

describe("bun run convert", () => {
  const root = resolve(import.meta.dir, "..");
  const convert = (...args: string[]) => {
    const p = Bun.spawnSync(["bun", "src/cli/convert.ts", ...args], { cwd: root });
    return { code: p.exitCode, stderr: p.stderr.toString() };
  };

  test("HF folder → llm.c file → HF folder keeps every weight; the llm.c bytes are stable", () => {
    const params = weights("F16");
    const hf = folder();
    writeHfFolder(hf, CONFIG, params, { dtype: "F16", prefix: true, maskBuffers: true });
    const bin = join(dir, "converted.bin");
    expect(convert("--from", hf, "--to", bin).code).toBe(0);
    expect(readLlmcCheckpoint(bin).params).toEqual(params);
    const back = folder();
    const r = convert("--from", bin, "--to", back, "--format", "hf");
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/llmc .* → hf/);
    expect(readHuggingFaceFolder(back).params).toEqual(params);
    const again = join(dir, "again.bin");
    expect(convert("--from", back, "--to", again).code).toBe(0);
    expect(readFileSync(again)).toEqual(readFileSync(bin));
  });

  test("bad arguments and unreadable sources exit 2", () => {
    expect(convert("--from", join(dir, "absent"), "--to", join(dir, "x.bin"))).toMatchObject({ code: 2, stderr: expect.stringMatching(/no such file or folder/) });
    expect(convert("--to", join(dir, "x.bin"))).toMatchObject({ code: 2, stderr: expect.stringMatching(/--from PATH and --to PATH are required/) });
    const hf = folder();
    writeHfFolder(hf, CONFIG, weights("F32"));
    expect(convert("--from", hf, "--to", join(dir, "y"), "--format", "onnx")).toMatchObject({ code: 2, stderr: expect.stringMatching(/--format: expected one of llmc, hf, got "onnx"/) });
  });
});
