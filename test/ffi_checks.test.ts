// Every wrapper in src/ffi.ts refuses bad arguments before a pointer reaches Zig: an array of the
// wrong length or type, a zero, negative, fractional, NaN or ≥ 2^31 size. Each refusal must be a
// KernelArgumentError and must leave every array untouched (a kernel that ran would have written
// its outputs or accumulators). The list of wrappers is checked against src/ffi.ts itself, so a new
// wrapper without an entry here fails this file.
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { ptr } from "bun:ffi";
import * as ffi from "../src/ffi.ts";

type TypedArray = Float32Array | Int32Array | Float64Array | BigUint64Array;
const f32 = (n: number) => new Float32Array(n).fill(0.5);
const i32 = (n: number) => new Int32Array(n); // token ids 0: valid for every vocabulary

interface Spec {
  /** the argument list of a valid call */
  args: () => unknown[];
  /** positions of size arguments (positive integers below 2^31) */
  dims: number[];
  /** positions of arrays whose length is not fixed by the sizes (only their type is checked) */
  anyLength?: number[];
  /** extra argument lists that must be refused */
  bad?: () => unknown[][];
}

/** Two live segments for sumSegments (module-level, so that they outlive every call). */
const SEGMENTS = [new Float32Array(10), new Float32Array(10)];
const segmentAddresses = () => BigUint64Array.from(SEGMENTS, (s) => BigInt(ptr(s)));

const SPECS: Record<string, Spec> = {
  matmulForward: { args: () => [f32(2 * 5), f32(2 * 3), f32(5 * 3), f32(5), 2, 3, 5], dims: [4, 5, 6] },
  matmulPack: { args: () => [f32(ffi.packedWeightFloats(3, 5)), f32(5 * 3), 3, 5], dims: [2, 3] },
  matmulForwardPrepacked: { args: () => [f32(2 * 5), f32(2 * 3), f32(5 * 3), f32(ffi.packedWeightFloats(3, 5)), f32(5), 2, 3, 5], dims: [5, 6, 7] },
  matmulBackwardInput: { args: () => [f32(2 * 3), f32(2 * 5), f32(5 * 3), 2, 3, 5], dims: [3, 4, 5] },
  matmulBackwardWeight: { args: () => [f32(5 * 3), f32(5), f32(2 * 5), f32(2 * 3), 2, 3, 5], dims: [4, 5, 6] },
  attentionForward: {
    args: () => [f32(2 * 4), f32(2 * 2), f32(2 * 12), 1, 2, 4, 2], dims: [3, 4, 5, 6],
    bad: () => [[f32(2 * 4), f32(2 * 3), f32(2 * 12), 1, 2, 4, 3]], // C not a multiple of NH
  },
  attentionBackward: { args: () => [f32(2 * 12), f32(2 * 4), f32(2 * 12), f32(2 * 4), f32(2 * 2), 1, 2, 4, 2], dims: [5, 6, 7, 8] },
  encoderForward: {
    args: () => [f32(2 * 3), i32(2), f32(4 * 3), f32(3 * 3), 1, 2, 3, 4, 3], dims: [4, 5, 6, 7, 8],
    bad: () => [[f32(2 * 3), Int32Array.of(0, 4), f32(4 * 3), f32(3 * 3), 1, 2, 3, 4, 3], [f32(4 * 3), i32(4), f32(4 * 3), f32(3 * 3), 1, 4, 3, 4, 3]],
  },
  encoderBackward: {
    args: () => [f32(4 * 3), f32(3 * 3), f32(2 * 3), i32(2), 1, 2, 3, 4, 3], dims: [4, 5, 6, 7, 8],
    bad: () => [[f32(4 * 3), f32(3 * 3), f32(2 * 3), Int32Array.of(-1, 0), 1, 2, 3, 4, 3]],
  },
  layernormForward: { args: () => [f32(6), f32(2), f32(2), f32(6), f32(3), f32(3), 2, 3], dims: [6, 7] },
  layernormBackward: { args: () => [f32(6), f32(3), f32(3), f32(6), f32(6), f32(3), f32(2), f32(2), 2, 3], dims: [8, 9] },
  residualForward: { args: () => [f32(5), f32(5), f32(5), 5], dims: [3] },
  geluForward: { args: () => [f32(5), f32(5), 5], dims: [2] },
  geluBackward: { args: () => [f32(5), f32(5), f32(5), 5], dims: [3] },
  softmaxCrossEntropyForward: {
    args: () => [f32(2 * 4), f32(2), f32(2 * 4), i32(2), 2, 3, 4], dims: [4, 5, 6],
    bad: () => [[f32(2 * 4), f32(2), f32(2 * 4), Int32Array.of(0, 3), 2, 3, 4], [f32(2 * 4), f32(2), f32(2 * 4), i32(2), 2, 5, 4]],
  },
  softmaxCrossEntropyBackward: {
    args: () => [f32(2 * 4), f32(2 * 4), i32(2), 0.5, 2, 3, 4], dims: [4, 5, 6],
    bad: () => [[f32(2 * 4), f32(2 * 4), i32(2), Infinity, 2, 3, 4], [f32(2 * 4), f32(2 * 4), Int32Array.of(3, 0), 0.5, 2, 3, 4]],
  },
  adamwUpdate: {
    args: () => [f32(7), f32(7), f32(7), f32(7), 1e-3, 0.9, 0.999, 1e-8, 0, 1, 1], dims: [],
    bad: () => [[f32(0), f32(0), f32(0), f32(0), 1e-3, 0.9, 0.999, 1e-8, 0, 1, 1], [f32(7), f32(7), f32(7), f32(7), 1e-3, 0.9, 0.999, 1e-8, 0, 0, 1]],
  },
  gradNormSquared: { args: () => [f32(7)], dims: [], anyLength: [0], bad: () => [[f32(0)]] },
  fmaPeakGflops: { args: () => [1, 1, 8], dims: [0, 1], bad: () => [[65, 1, 8], [1, 1, 4]] },
  bf16PeakGflops: { args: () => [1, 1], dims: [0, 1], bad: () => [[65, 1]] },
  // ---- decode (src/infer) ----
  decodeAttention: {
    args: () => [f32(2 * 4), f32(2 * 12), f32(3 * 4), f32(3 * 4), 0, 2, 4, 2, 3], dims: [5, 6, 7, 8],
    bad: () => [
      [f32(2 * 4), f32(2 * 12), f32(3 * 4), f32(3 * 4), -1, 2, 4, 2, 3],
      [f32(2 * 4), f32(2 * 12), f32(3 * 4), f32(3 * 4), 0.5, 2, 4, 2, 3],
      [f32(2 * 4), f32(2 * 12), f32(3 * 4), f32(3 * 4), 2, 2, 4, 2, 3], // rows 2..3 past maxT = 3
    ],
  },
  decodeAttentionRows: {
    // Two rows in caches 1 and 0 of two (maxT = 3, C = 4), at positions 2 and 0.
    args: () => [f32(2 * 4), f32(2 * 12), f32(2 * 3 * 4), f32(2 * 3 * 4), Int32Array.of(1, 0), Int32Array.of(2, 0), 2, 4, 2, 3], dims: [6, 7, 8, 9],
    bad: () => [
      [f32(2 * 4), f32(2 * 12), f32(2 * 3 * 4), f32(2 * 3 * 4), Int32Array.of(1, 1), Int32Array.of(2, 0), 2, 4, 2, 3], // one cache twice
      [f32(2 * 4), f32(2 * 12), f32(2 * 3 * 4), f32(2 * 3 * 4), Int32Array.of(2, 0), Int32Array.of(2, 0), 2, 4, 2, 3], // cache 2 of 2
      [f32(2 * 4), f32(2 * 12), f32(2 * 3 * 4), f32(2 * 3 * 4), Int32Array.of(1, 0), Int32Array.of(3, 0), 2, 4, 2, 3], // position maxT
      [f32(2 * 4), f32(2 * 12), f32(2 * 3 * 4), f32(3 * 3 * 4), Int32Array.of(1, 0), Int32Array.of(2, 0), 2, 4, 2, 3], // k and v differ
    ],
  },
  samplingWeights: {
    // out exactly n weights; logits at least n (the sampler passes its padded row).
    args: () => [new Float64Array(5), f32(8), 5, 0.8], dims: [2], anyLength: [1],
    bad: () => [[new Float64Array(5), f32(4), 5, 0.8], [new Float64Array(5), f32(5), 5, 0], [new Float64Array(5), f32(5), 5, -1], [new Float64Array(5), f32(5), 5, 1e-320]],
  },
  sumSegments: {
    // Private memory: release stays false (on private pages MADV_DONTNEED would drop the data).
    args: () => [segmentAddresses(), 1, 2, 5, 10, false], dims: [3, 4], anyLength: [0],
    bad: () => [
      [segmentAddresses(), 2, 2, 5, 10, false], // self past the segments
      [segmentAddresses(), 0, 6, 5, 10, false], // the range past the segment
      [segmentAddresses(), 0, -1, 5, 10, false],
      [BigUint64Array.of(BigInt(ptr(SEGMENTS[0])), BigInt(ptr(SEGMENTS[0]))), 0, 0, 5, 10, false], // the same segment twice
      [BigUint64Array.of(BigInt(ptr(SEGMENTS[0])), 0n), 0, 0, 5, 10, false], // null
      [new BigUint64Array(0), 0, 0, 5, 10, false],
    ],
  },
  parallelCopy: { args: () => [f32(5), f32(5)], dims: [], bad: () => [[f32(0), f32(0)]] },
  zeroFill: { args: () => [f32(5)], dims: [], anyLength: [0], bad: () => [[f32(0)]] },
};

/** Wrappers that take no arrays or sizes (tested in ffi_library.test.ts or by their users). */
const NO_ARRAY_ARGUMENTS = new Set(["setThreads", "threadCount", "bf16Unavailable", "setMatmulPrecision", "matmulPrecision"]);

const BAD_SIZES = [0, -1, 1.5, NaN, 2 ** 31];

const wrappers = ffi as unknown as Record<string, (...args: unknown[]) => unknown>;

function snapshot(args: unknown[]): Buffer[] {
  return args.filter((a): a is TypedArray => ArrayBuffer.isView(a)).map((a) => Buffer.from(a.buffer.slice(a.byteOffset, a.byteOffset + a.byteLength)));
}

/** The call must throw a KernelArgumentError and leave every array as it was. */
function expectRefused(name: string, args: unknown[], what: string): void {
  const before = snapshot(args);
  let caught: unknown = null;
  try {
    wrappers[name](...args);
  } catch (error) {
    caught = error;
  }
  if (!(caught instanceof ffi.KernelArgumentError)) throw new Error(`${name} with ${what}: expected a KernelArgumentError, got ${caught === null ? "no error" : String(caught)}`);
  const after = snapshot(args);
  for (let i = 0; i < before.length; i++) if (!before[i].equals(after[i])) throw new Error(`${name} with ${what}: an array was written before the arguments were refused`);
}

test("every exported wrapper that calls into the library has an entry here", () => {
  const source = readFileSync(join(import.meta.dir, "..", "src", "ffi.ts"), "utf8");
  const callers = source.split(/^export function /m).slice(1).filter((body) => body.includes("lib().")).map((body) => body.slice(0, body.indexOf("(")));
  expect(callers.length).toBeGreaterThan(15);
  const missing = callers.filter((n) => !(n in SPECS) && !NO_ARRAY_ARGUMENTS.has(n));
  expect(missing).toEqual([]);
  for (const name of Object.keys(SPECS)) expect(typeof wrappers[name]).toBe("function");
});

for (const [name, spec] of Object.entries(SPECS)) {
  describe(name, () => {
    test("a valid call goes through", () => {
      expect(() => wrappers[name](...spec.args())).not.toThrow();
    });

    test("an array of the wrong length or type is refused, nothing written", () => {
      const template = spec.args();
      let arrays = 0;
      template.forEach((arg, i) => {
        if (!ArrayBuffer.isView(arg)) return;
        arrays++;
        const a = arg as TypedArray;
        const Same = a.constructor as new (n: number) => TypedArray;
        const variants: Array<[string, unknown]> = [
          [`a ${a.constructor.name} of the wrong type`, a instanceof Float32Array ? new Float64Array(a.length) : new Float32Array(a.length)],
          ["a plain array", Array.from(a as ArrayLike<number | bigint>)],
        ];
        if (!(spec.anyLength ?? []).includes(i)) variants.push([`length ${a.length + 1}`, new Same(a.length + 1)], [`length ${a.length - 1}`, new Same(a.length - 1)]);
        for (const [what, replacement] of variants) {
          const args = spec.args();
          args[i] = replacement;
          expectRefused(name, args, `argument ${i} ${what}`);
        }
      });
      expect(arrays).toBe(spec.args().filter((a) => ArrayBuffer.isView(a)).length);
    });

    test("zero, negative, fractional, NaN and ≥ 2^31 sizes are refused, nothing written", () => {
      for (const i of spec.dims) {
        for (const bad of BAD_SIZES) {
          const args = spec.args();
          args[i] = bad;
          expectRefused(name, args, `argument ${i} = ${bad}`);
        }
      }
      for (const [k, args] of (spec.bad?.() ?? []).entries()) expectRefused(name, args, `bad case ${k}`);
      expect(spec.dims.length + (spec.bad?.() ?? []).length).toBeGreaterThan(0);
    });
  });
}

describe("setMatmulPrecision", () => {
  test("refuses an unknown precision; bf16 is set where it can run and refused, saying why, where it cannot", () => {
    expect(() => ffi.setMatmulPrecision("fp16" as ffi.MatmulPrecision)).toThrow(/must be one of fp32, bf16, got fp16/);
    expect(ffi.matmulPrecision()).toBe("fp32");
    const reason = ffi.bf16Unavailable();
    try {
      if (reason === null) {
        ffi.setMatmulPrecision("bf16");
        expect(ffi.matmulPrecision()).toBe("bf16");
      } else {
        console.warn(`bf16 matmuls unavailable here: ${reason}`);
        expect(() => ffi.setMatmulPrecision("bf16")).toThrow(/AVX512_BF16/);
        expect(ffi.matmulPrecision()).toBe("fp32");
      }
    } finally {
      ffi.setMatmulPrecision("fp32");
    }
    expect(ffi.matmulPrecision()).toBe("fp32");
  });
});
