// llm.c model checkpoints: the round trip through a GPT2 model, the byte layout, and the refusal of
// every kind of damaged file with a CheckpointError that names the file and the field.
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CheckpointError } from "../src/io/checks.ts";
import { readLlmcCheckpoint, writeLlmcCheckpoint } from "../src/io/llmc.ts";
import { loadWeights } from "../src/io/load_weights.ts";
import type { GPT2Config } from "../src/model/config.ts";
import { GPT2 } from "../src/model/gpt2.ts";
import { parameterLayout } from "../src/model/weights.ts";

const dir = mkdtempSync(join(tmpdir(), "llmts-ckpt-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const config: GPT2Config = { maxT: 24, V: 101, Vp: 128, L: 3, NH: 2, C: 10 };
const model = GPT2.init(config, 17);
const good = join(dir, "good.bin");
writeLlmcCheckpoint(good, model.weights);
const goodBytes = readFileSync(good);

/** Writes a damaged copy of the good file and returns its path. */
function damaged(name: string, edit: (bytes: Buffer) => Buffer): string {
  const path = join(dir, name);
  writeFileSync(path, edit(Buffer.from(goodBytes)));
  return path;
}
const withHeaderWord = (index: number, value: number) => (b: Buffer) => {
  b.writeInt32LE(value, index * 4);
  return b;
};

function expectCheckpointError(path: string, pattern: RegExp): void {
  let caught: unknown = null;
  try {
    readLlmcCheckpoint(path);
  } catch (error) {
    caught = error;
  }
  expect(caught).toBeInstanceOf(CheckpointError);
  const message = (caught as Error).message;
  expect(message).toContain(path);
  expect(message).toMatch(pattern);
}

describe("llm.c checkpoint round trip", () => {
  test("byte layout: 256 int32 header words, then the parameters; total size exact", () => {
    const total = parameterLayout(config).total;
    expect(statSync(good).size).toBe(1024 + 4 * total);
    const header = new Int32Array(goodBytes.buffer.slice(goodBytes.byteOffset, goodBytes.byteOffset + 1024));
    expect(Array.from(header.subarray(0, 8))).toEqual([20240326, 3, 24, 101, 3, 2, 10, 128]);
    expect(header.subarray(8).every((x) => x === 0)).toBe(true);
    const body = goodBytes.subarray(1024);
    expect(body.equals(Buffer.from(model.params.buffer))).toBe(true);
  });

  test("write → read → the same config and bit-identical parameters, usable by GPT2 without a copy", () => {
    const weights = readLlmcCheckpoint(good);
    expect(weights.config).toEqual(config);
    expect(Buffer.from(weights.params.buffer).equals(Buffer.from(model.params.buffer))).toBe(true);
    const loaded = new GPT2(weights);
    expect(loaded.params).toBe(weights.params);
    const tokens = new Int32Array([1, 5, 100, 7, 0, 3]);
    expect(loaded.forward(tokens, tokens, 2, 3)).toBe(model.forward(tokens, tokens, 2, 3));
    expect(loadWeights(good).config).toEqual(config);
    const fromFile = new GPT2(loadWeights(good));
    expect(Buffer.from(fromFile.params.buffer).equals(Buffer.from(model.params.buffer))).toBe(true);
    expect(fromFile.params.byteLength).toBe(fromFile.params.buffer.byteLength); // its own buffer, nothing more
  });
});

describe("damaged llm.c checkpoints are refused", () => {
  test("wrong magic", () => expectCheckpointError(damaged("magic.bin", withHeaderWord(0, 20240325)), /magic is 20240325/));
  test("wrong version", () => expectCheckpointError(damaged("version.bin", withHeaderWord(1, 4)), /version is 4, expected 3/));
  test("bf16 version", () => expectCheckpointError(damaged("bf16.bin", withHeaderWord(1, 5)), /version 5 \(bf16/));
  test("truncated body", () => expectCheckpointError(damaged("short.bin", (b) => b.subarray(0, b.length - 4)), /truncated/));
  test("truncated header", () => expectCheckpointError(damaged("header.bin", (b) => b.subarray(0, 1000)), /shorter than the 1024-byte/));
  test("empty file", () => expectCheckpointError(damaged("empty.bin", () => Buffer.alloc(0)), /0 bytes/));
  test("extra bytes", () => expectCheckpointError(damaged("long.bin", (b) => Buffer.concat([b, Buffer.alloc(8)])), /8 extra/));
  test("zero layers", () => expectCheckpointError(damaged("L0.bin", withHeaderWord(4, 0)), /L must be an integer from 1 to \d+, got 0/));
  test("negative heads", () => expectCheckpointError(damaged("NH.bin", withHeaderWord(5, -2)), /NH must be .* got -2/));
  test("absurd channels", () => expectCheckpointError(damaged("C.bin", withHeaderWord(6, 1e9)), /C must be .* got 1000000000/));
  test("absurd maxT", () => expectCheckpointError(damaged("maxT.bin", withHeaderWord(2, 2 ** 31 - 1)), /maxT must be/));
  test("Vp < V", () => expectCheckpointError(damaged("Vp.bin", withHeaderWord(7, 100)), /Vp \(100\) is smaller than V \(101\)/));
  test("C not a multiple of NH", () => expectCheckpointError(damaged("heads.bin", withHeaderWord(5, 3)), /C \(10\) is not a multiple of NH \(3\)/));
  test("valid header whose shapes do not match the size", () => expectCheckpointError(damaged("shape.bin", withHeaderWord(4, 4)), /truncated/));
  test("NaN weight names the tensor and element", () => {
    const at = parameterLayout(config).offsets.qkvw + 5;
    expectCheckpointError(damaged("nan.bin", (b) => { b.writeFloatLE(NaN, 1024 + 4 * at); return b; }), /tensor qkvw has a non-finite value \(NaN\) at element 5/);
  });
  test("Inf weight names the tensor", () => {
    const at = parameterLayout(config).offsets.lnfb;
    expectCheckpointError(damaged("inf.bin", (b) => { b.writeFloatLE(-Infinity, 1024 + 4 * at); return b; }), /tensor lnfb has a non-finite value \(-Infinity\) at element 0/);
  });
  test("missing file", () => expectCheckpointError(join(dir, "nope.bin"), /cannot open \(ENOENT\)/));
});
