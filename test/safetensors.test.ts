// The safetensors reader on hand-built files: valid F32/F16/BF16 data, and every kind of broken
// file rejected with a message naming the problem (and the tensor, when one is at fault).
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, truncateSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { f16ToF32, SafetensorsFile, writeSafetensors } from "../src/io/safetensors.ts";
import { rawSafetensors, safetensorsBytes } from "./helpers/hf_folder.ts";

const dir = mkdtempSync(join(tmpdir(), "llmts-st-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let counter = 0;
function file(bytes: Uint8Array): string {
  const path = join(dir, `f${counter++}.safetensors`);
  writeFileSync(path, bytes);
  return path;
}
function open(path: string): SafetensorsFile {
  const f = SafetensorsFile.open(path);
  f.close();
  return f;
}
const f32 = (...v: number[]) => new Uint8Array(Float32Array.from(v).buffer);

describe("safetensors reader", () => {
  test("reads F32, F16 and BF16 tensors (converted to F32) and the metadata", () => {
    const a = Float32Array.of(1.5, -2, 0.25, 3e-5, 65504, -0);
    const path = file(safetensorsBytes([
      { name: "a32", shape: [2, 3], values: a, dtype: "F32" },
      { name: "a16", shape: [6], values: Float32Array.of(1.5, -2, 0.25, 2 ** -14, 65504, -0), dtype: "F16" },
      { name: "abf", shape: [3, 2], values: Float32Array.of(1.5, -2, 0.25, 2 ** -100, 3.3895313892515355e38, -0), dtype: "BF16" },
      { name: "empty", shape: [0, 4], values: new Float32Array(0) },
    ]));
    const f = SafetensorsFile.open(path);
    try {
      expect(f.metadata).toEqual({ format: "pt" });
      expect(f.info("a32").shape).toEqual([2, 3]);
      expect(f.read("a32")).toEqual(a);
      expect(Array.from(f.read("a16"))).toEqual([1.5, -2, 0.25, 2 ** -14, 65504, -0]);
      expect(Array.from(f.read("abf"))).toEqual([1.5, -2, 0.25, 2 ** -100, 3.3895313892515355e38, -0]);
      expect(f.read("empty").length).toBe(0);
      const into = new Float32Array(8).fill(7);
      f.readInto("a32", into.subarray(1, 7));
      expect(Array.from(into)).toEqual([7, 1.5, -2, 0.25, Math.fround(3e-5), 65504, -0, 7]);
      expect(() => f.readInto("a32", new Float32Array(5))).toThrow(/"a32" has 6 elements, the destination 5/);
      expect(() => f.read("nope")).toThrow(/no tensor named "nope"/);
    } finally {
      f.close();
    }
  });

  test("F16 decoding covers subnormals, infinities and NaN", () => {
    expect(f16ToF32(0x0001)).toBe(2 ** -24);
    expect(f16ToF32(0x03ff)).toBe(1023 * 2 ** -24);
    expect(f16ToF32(0x3c00)).toBe(1);
    expect(f16ToF32(0xc000)).toBe(-2);
    expect(f16ToF32(0x7c00)).toBe(Infinity);
    expect(f16ToF32(0xfc00)).toBe(-Infinity);
    expect(f16ToF32(0x7e00)).toBeNaN();
    expect(Object.is(f16ToF32(0x8000), -0)).toBe(true);
  });

  test("the writer's files read back, with 8-byte aligned data", () => {
    const path = join(dir, "written.safetensors");
    const big = Float32Array.from({ length: 1000 }, (_, i) => i / 7);
    writeSafetensors(path, [{ name: "x", shape: [2, 2], data: Float32Array.of(1, 2, 3, 4) }, { name: "big", shape: [10, 100], data: () => big }]);
    const bytes = readFileSync(path);
    expect(Number(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(0, true)) % 8).toBe(0);
    const f = SafetensorsFile.open(path);
    try {
      expect(Array.from(f.read("x"))).toEqual([1, 2, 3, 4]);
      expect(f.read("big")).toEqual(big);
    } finally {
      f.close();
    }
    expect(() => writeSafetensors(join(dir, "bad.safetensors"), [{ name: "x", shape: [3], data: Float32Array.of(1, 2) }])).toThrow(/"x" has 2 values, shape \[3\] needs 3/);
  });

  const good = () => safetensorsBytes([{ name: "w", shape: [2, 2], values: Float32Array.of(1, 2, 3, 4) }, { name: "b", shape: [2], values: Float32Array.of(5, 6) }]);
  const header = (entries: Record<string, unknown>) => JSON.stringify(entries);
  const cases: Array<[string, () => Uint8Array, RegExp]> = [
    ["a file shorter than 8 bytes", () => new Uint8Array(5), /too short for the 8-byte header length/],
    ["a header length beyond the file", () => rawSafetensors(header({}), [], 1000n), /header length 1000 is impossible for a file of/],
    ["a header length of 2^64-1", () => rawSafetensors(header({}), [], 2n ** 64n - 1n), /header length 18446744073709551615 is impossible/],
    ["a header that is not JSON", () => rawSafetensors("{nope", []), /header is not valid UTF-8 JSON/],
    ["a header that is a JSON array", () => rawSafetensors("[1,2]", []), /header is not a JSON object/],
    ["an unknown dtype", () => rawSafetensors(header({ w: { dtype: "F33", shape: [1], data_offsets: [0, 4] } }), [f32(1)]), /tensor "w": unknown dtype "F33"/],
    ["an unsupported dtype", () => rawSafetensors(header({ w: { dtype: "I64", shape: [1], data_offsets: [0, 8] } }), [new Uint8Array(8)]), /tensor "w": dtype I64 is not supported/],
    ["a negative shape", () => rawSafetensors(header({ w: { dtype: "F32", shape: [-1], data_offsets: [0, 4] } }), [f32(1)]), /tensor "w": shape \[-1\] is not a list/],
    ["a size mismatch (wrong shape)", () => rawSafetensors(header({ w: { dtype: "F32", shape: [3], data_offsets: [0, 8] } }), [f32(1, 2)]), /tensor "w": data_offsets \[0, 8\] hold 8 bytes, shape \[3\] of F32 needs 12/],
    ["out-of-range offsets", () => rawSafetensors(header({ w: { dtype: "F32", shape: [4], data_offsets: [4, 20] } }), [f32(1, 2, 3, 4)]), /tensor "w": data_offsets \[4, 20\] extend past the end of the data \(16 bytes\)/],
    ["backwards offsets", () => rawSafetensors(header({ w: { dtype: "F32", shape: [0], data_offsets: [8, 4] } }), [f32(1, 2, 3)]), /tensor "w": data_offsets \[8, 4\] run backwards/],
    ["overlapping tensors", () => rawSafetensors(header({ a: { dtype: "F32", shape: [2], data_offsets: [0, 8] }, b: { dtype: "F32", shape: [2], data_offsets: [4, 12] } }), [f32(1, 2, 3)]), /tensor "b" overlaps tensor "a"/],
    ["missing data_offsets", () => rawSafetensors(header({ w: { dtype: "F32", shape: [1] } }), [f32(1)]), /tensor "w": data_offsets undefined is not a pair/],
    ["non-string metadata", () => rawSafetensors(header({ __metadata__: { n: 1 } }), []), /__metadata__ must map strings to strings/],
    // Found by the fuzzer: a repeated key was read as its last copy (JSON.parse); the reference
    // implementation refuses such headers, so two readers would see two different files.
    ["a tensor listed twice", () => rawSafetensors(`{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"w":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`, [f32(1, 2)]), /header lists the key "w" twice in one object/],
    ["a field repeated inside an entry", () => rawSafetensors(`{"w":{"dtype":"F16","shape":[1],"dtype":"F32","data_offsets":[0,4]}}`, [f32(1)]), /header lists the key "dtype" twice/],
    ["a repeated key spelled with an escape", () => rawSafetensors(`{"__metadata__":{"a":"x","\\u0061":"y"}}`, []), /header lists the key "a" twice/],
    // Found by the fuzzer: writing these errors recursed through the value and overflowed the stack.
    ["a shape nested 200 000 deep", () => rawSafetensors(`{"w":{"dtype":"F32","shape":${"[".repeat(200000)}${"]".repeat(200000)},"data_offsets":[0,4]}}`, [f32(1)]), /tensor "w": shape \[\[\[\[…\]\]\]\] is not a list/],
    ["data_offsets nested 200 000 deep", () => rawSafetensors(`{"w":{"dtype":"F32","shape":[1],"data_offsets":${"[".repeat(200000)}${"]".repeat(200000)}}}`, [f32(1)]), /tensor "w": data_offsets \[\[\[\[…\]\]\]\] is not a pair/],
  ];
  for (const [what, bytes, message] of cases) {
    test(`rejects ${what}`, () => {
      expect(() => open(file(bytes()))).toThrow(message);
    });
  }

  test("keys repeated in different objects are fine; strings that look like keys are not keys", () => {
    const path = file(rawSafetensors(`{"__metadata__":{"w":"b","x":"\\"w\\":"},"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`, [f32(1, 2)]));
    const f = SafetensorsFile.open(path);
    expect([...f.tensors.keys()]).toEqual(["w", "b"]);
    f.close();
  });

  test("rejects a truncated file, naming the tensor that no longer fits", () => {
    const bytes = good();
    for (const cut of [1, 8]) {
      const path = file(bytes);
      truncateSync(path, bytes.length - cut);
      expect(() => open(path)).toThrow(/tensor "b": data_offsets \[16, 24\] extend past the end of the data/);
    }
    const path = file(bytes);
    truncateSync(path, bytes.length - 9); // cuts into "w" too: the first bad tensor is named
    expect(() => open(path)).toThrow(/tensor "w": data_offsets \[0, 16\] extend past the end/);
    expect(() => open(join(dir, "absent.safetensors"))).toThrow(/cannot open \(ENOENT\)/);
  });
});
