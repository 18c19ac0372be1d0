// The llm.ts training checkpoint: exact round trips, layout rules, and a clear error for every way
// a file can be wrong.
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { namedConfig } from "../src/model/config.ts";
import { GPT2Weights, parameterCount } from "../src/model/weights.ts";
import { readLlmtsCheckpoint, writeLlmtsCheckpoint } from "../src/io/llmts_checkpoint.ts";
import { loadWeights, resolveWeightsPath } from "../src/io/load_weights.ts";
import { randomF32 } from "./helpers/random.ts";

const dir = mkdtempSync(join(tmpdir(), "llmts-ckpt-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const config = namedConfig("tiny");
const count = parameterCount(config);
const params = randomF32(count, 1);
const weights = new GPT2Weights(config, params);
const m = randomF32(count, 2, 0.01);
const v = randomF32(count, 3, 0.001).map(Math.abs);
const state = { hyper: { lr: 3e-4, beta1: 0.9 }, loader: { position: 12345, rng: [1, 2, 3, 4] }, note: "é ✓" };

function written(name: string, withMoments = true): string {
  const path = join(dir, name);
  writeLlmtsCheckpoint(path, { weights, ...(withMoments ? { m, v } : {}), step: 77, state });
  return path;
}

function corrupt(name: string, edit: (bytes: Uint8Array) => Uint8Array): string {
  const path = join(dir, name);
  writeFileSync(path, edit(new Uint8Array(readFileSync(written(`${name}.src`)))));
  return path;
}

function headerOf(path: string): Record<string, any> {
  const bytes = new Uint8Array(readFileSync(path));
  const J = new DataView(bytes.buffer).getUint32(12, true);
  return JSON.parse(new TextDecoder().decode(bytes.subarray(16, 16 + J)));
}

/** Rewrites the JSON header in place (padding with spaces so offsets stay valid). */
function withHeader(name: string, edit: (h: Record<string, any>) => void): string {
  return corrupt(name, (bytes) => {
    const J = new DataView(bytes.buffer).getUint32(12, true);
    const h = JSON.parse(new TextDecoder().decode(bytes.subarray(16, 16 + J)));
    edit(h);
    const json = new TextEncoder().encode(JSON.stringify(h));
    if (json.length > J) throw new Error("edited header grew");
    const out = bytes.slice();
    out.fill(0x20, 16, 16 + J);
    out.set(json, 16);
    return out;
  });
}

describe("llm.ts checkpoint", () => {
  test("round trip is bit-exact for params, moments, step and state", () => {
    const got = readLlmtsCheckpoint(written("a.ckpt"));
    expect(got.weights.config).toEqual(config);
    expect(Buffer.from(got.weights.params.buffer).equals(Buffer.from(params.buffer))).toBe(true);
    expect(Buffer.from(got.m!.buffer).equals(Buffer.from(m.buffer))).toBe(true);
    expect(Buffer.from(got.v!.buffer).equals(Buffer.from(v.buffer))).toBe(true);
    expect(got.step).toBe(77);
    expect(got.state).toEqual({ ...state, step: 77 });
  });

  test("layout: magic, version, 64-byte aligned tensors, file ends at the last tensor", () => {
    const path = written("layout.ckpt");
    const bytes = new Uint8Array(readFileSync(path));
    expect(new TextDecoder().decode(bytes.subarray(0, 8))).toBe("LLMTSCKP");
    expect(new DataView(bytes.buffer).getUint32(8, true)).toBe(1);
    const h = headerOf(path);
    const J = new DataView(bytes.buffer).getUint32(12, true);
    for (const name of ["params", "adam_m", "adam_v"]) {
      expect(h.tensors[name].offset % 64).toBe(0);
      expect(h.tensors[name].offset).toBeGreaterThanOrEqual(16 + J);
      expect(h.tensors[name].count).toBe(count);
    }
    expect(bytes.length).toBe(h.tensors.adam_v.offset + count * 4);
    const first = new Float32Array(bytes.buffer.slice(h.tensors.params.offset, h.tensors.params.offset + 8));
    expect(Array.from(first)).toEqual([params[0], params[1]]);
  });

  test("optimizer option: false skips moments, true requires them", () => {
    const full = written("opt.ckpt");
    expect(readLlmtsCheckpoint(full, { optimizer: false }).m).toBeUndefined();
    const weightsOnly = written("weights.ckpt", false);
    expect(readLlmtsCheckpoint(weightsOnly).m).toBeUndefined();
    expect(() => readLlmtsCheckpoint(weightsOnly, { optimizer: true })).toThrow(/no AdamW moments/);
  });

  test("loadWeights detects and reads it", () => {
    const path = written("lw.ckpt");
    expect(resolveWeightsPath(path)).toEqual({ path, format: "llmts" });
    const got = loadWeights(path);
    expect(got.config).toEqual(config);
    expect(got.params).toEqual(params);
  });

  test("writer rejects unpaired or short moments, a bad step and reserved state keys", () => {
    const path = join(dir, "bad.ckpt");
    expect(() => writeLlmtsCheckpoint(path, { weights, m, step: 0 })).toThrow(/both AdamW moments/);
    expect(() => writeLlmtsCheckpoint(path, { weights, m, v: v.subarray(1), step: 0 })).toThrow(/AdamW v has/);
    expect(() => writeLlmtsCheckpoint(path, { weights, step: 0, state: { tensors: 1 } })).toThrow(/reserved key/);
    expect(() => writeLlmtsCheckpoint(path, { weights, step: -1 })).toThrow(/step/);
  });

  test("reader errors name the file and the problem", () => {
    const cases: Array<[string, RegExp]> = [
      [corrupt("magic", (b) => (b.set([0x58], 0), b)), /starts with "XLMTSCKP"/],
      [corrupt("version", (b) => (new DataView(b.buffer).setUint32(8, 2, true), b)), /format version 2/],
      [corrupt("jsonlen", (b) => (new DataView(b.buffer).setUint32(12, 0x7fffffff, true), b)), /header length/],
      [corrupt("truncated", (b) => b.subarray(0, b.length - 4)), /truncated|extra/],
      [corrupt("extra", (b) => { const o = new Uint8Array(b.length + 4); o.set(b); return o; }), /4 extra/],
      [corrupt("short", (b) => b.subarray(0, 10)), /shorter than the 16-byte/],
      [corrupt("json", (b) => (b.set([0x7b, 0x7b], 16), b)), /does not parse/],
      [withHeader("cfg", (h) => { h.config.C = 15; }), /C \(15\) is not a multiple of NH/],
      [withHeader("count", (h) => { h.tensors.params.count = 3; }), /params has 3 values/],
      [withHeader("align", (h) => { h.tensors.params.offset += 4; }), /multiple of 64/],
      [withHeader("overlap", (h) => { h.tensors.adam_m.offset = h.tensors.params.offset; }), /overlap/],
      [withHeader("onlym", (h) => { delete h.tensors.adam_v; }), /only one of adam_m and adam_v/],
      [withHeader("unknown", (h) => { h.tensors.foo = h.tensors.adam_v; delete h.tensors.adam_v; }), /unknown tensor "foo"/],
      [withHeader("step", (h) => { h.step = -3; }), /"step" must be/],
      [join(dir, "missing.ckpt"), /cannot open/],
    ];
    for (const [path, message] of cases) {
      expect(() => readLlmtsCheckpoint(path)).toThrow(message);
      expect(() => readLlmtsCheckpoint(path)).toThrow(path);
    }
  });

  // Found by the fuzzer: an error about a value nested deep enough overflowed the stack while its
  // message was written (JSON.stringify and template strings recurse; JSON.parse does not).
  test("values nested 200 000 deep are refused with a short description", () => {
    const deep = "[".repeat(200000) + "]".repeat(200000);
    const withRawHeader = (name: string, edit: (text: string) => string): string =>
      corrupt(name, (bytes) => {
        const J = new DataView(bytes.buffer).getUint32(12, true);
        const json = new TextEncoder().encode(edit(new TextDecoder().decode(bytes.subarray(16, 16 + J))));
        const out = new Uint8Array(16 + json.length + bytes.length - 16 - J);
        out.set(bytes.subarray(0, 16));
        new DataView(out.buffer).setUint32(12, json.length, true);
        out.set(json, 16);
        out.set(bytes.subarray(16 + J), 16 + json.length);
        return out;
      });
    const cases: Array<[string, RegExp]> = [
      [withRawHeader("deep-step", (t) => t.replace(/"step":\d+/, `"step":${deep}`)), /header "step" must be a non-negative integer, got \[\[\[\[…\]\]\]\]/],
      [withRawHeader("deep-config", (t) => t.replace(/"C":\d+/, `"C":${deep}`)), /header config C must be an integer, got \[\[\[\[…\]\]\]\]/],
      [withRawHeader("deep-offset", (t) => t.replace(/"offset":\d+/, `"offset":${deep}`)), /tensor params offset \[\[\[\[…\]\]\]\] must be a multiple of 64/],
    ];
    for (const [path, message] of cases) {
      expect(() => readLlmtsCheckpoint(path)).toThrow(message);
      expect(() => readLlmtsCheckpoint(path)).toThrow(path);
    }
  });

  test("non-finite parameters are rejected, naming the tensor", () => {
    const bad = params.slice();
    bad[count - 1] = NaN; // the last element belongs to lnfb
    const path = join(dir, "nan.ckpt");
    writeLlmtsCheckpoint(path, { weights: new GPT2Weights(config, bad), step: 1 });
    expect(() => readLlmtsCheckpoint(path)).toThrow(/lnfb has a non-finite value/);
  });

  // Found by the fuzzer: a NaN or a negative value in a moment was resumed, the first update made
  // every parameter NaN, and the run saved a checkpoint that no longer read.
  test("non-finite or negative AdamW moments are rejected when the moments are read", () => {
    const cases: Array<[string, Float32Array, Float32Array, RegExp]> = [
      ["m-nan", m.map((x, i) => (i === 5 ? NaN : x)), v, /adam_m has a non-finite value \(NaN\) at element 5/],
      ["v-inf", m, v.map((x, i) => (i === 9 ? Infinity : x)), /adam_v has a non-finite value \(Infinity\) at element 9/],
      ["v-negative", m, v.map((x, i) => (i === 0 ? -1e-3 : x)), /adam_v has a negative value .* at element 0/],
    ];
    for (const [name, mm, vv, message] of cases) {
      const path = join(dir, `${name}.ckpt`);
      writeLlmtsCheckpoint(path, { weights, m: mm, v: vv, step: 1 });
      expect(() => readLlmtsCheckpoint(path, { optimizer: true })).toThrow(message);
      expect(() => readLlmtsCheckpoint(path, { optimizer: true })).toThrow(path);
      expect(readLlmtsCheckpoint(path, { optimizer: false }).weights.params).toEqual(params); // inference needs only the weights
    }
  });
});
