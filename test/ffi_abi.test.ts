// The library's own side of the FFI contract, seen from outside src/ffi.ts:
//   - its C-ABI checks hold in the shipped (ReleaseFast) build: a child process calls a symbol
//     through its own dlopen with an impossible argument, and must end with exit status 70 and a
//     stderr line naming the symbol and the argument, not a segfault, not silently;
//   - the limits src/ffi.ts checks are the library's: a call at a limit passes both, one past it is
//     refused by ffi.ts with a KernelArgumentError and, when forced through, by the library;
//   - the CPU features and vector width it reports agree with the kernel's own view (/proc/cpuinfo).
import { describe, expect, test } from "bun:test";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import {
  bf16PeakGflops, cpuFeatures, decodeAttention, defaultThreadCount, KernelArgumentError, kernelLimits, LIBRARY_PATH, missingFeatures,
  parseThreadCount, setThreads, targetFeatures, threadCount, vectorLanes,
} from "../src/ffi.ts";
import type { RawArgument, RawCall } from "./helpers/raw_abi_call.ts";

const HELPER = join(import.meta.dir, "helpers", "raw_abi_call.ts");
const EXIT_BAD_KERNEL_ARGUMENT = 70; // kernels/check.zig

interface Outcome { exitCode: number | null; signal: string | null; stderr: string; stdout: string }

function rawCall(symbol: string, args: RawArgument[], returns: RawCall["returns"] = "void"): Outcome {
  const call: RawCall = { library: LIBRARY_PATH, symbol, args, returns };
  const proc = Bun.spawnSync([process.execPath, HELPER, JSON.stringify(call)], { stdout: "pipe", stderr: "pipe", env: { ...process.env, LLMTS_THREADS: "2" } });
  return { exitCode: proc.exitCode, signal: proc.signalCode === undefined || proc.signalCode === null ? null : String(proc.signalCode), stderr: proc.stderr.toString(), stdout: proc.stdout.toString() };
}

function expectRefusedByLibrary(outcome: Outcome, symbol: string, message: string): void {
  expect({ signal: outcome.signal, exitCode: outcome.exitCode }).toEqual({ signal: null, exitCode: EXIT_BAD_KERNEL_ARGUMENT });
  expect(outcome.stderr).toBe(`llm.ts kernel ${symbol}: ${message} (a call that bypassed src/ffi.ts)\n`);
  expect(outcome.stdout).toBe("");
}

const f32 = (n: number): RawArgument => ({ f32: n });
const int = (n: number): RawArgument => ({ int: n });
const I32_MAX = 2 ** 31 - 1;

describe("the C ABI checks its arguments in the shipped library", () => {
  test("a valid call through the raw dlopen returns normally (the harness itself works)", () => {
    const r = rawCall("llmts_matmul_forward", [f32(2 * 5), f32(2 * 3), f32(5 * 3), null, int(2), int(3), int(5)]);
    expect(r.stderr).toBe("");
    expect(r.exitCode).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({ result: null });
  });

  test("a negative size", () => {
    expectRefusedByLibrary(rawCall("llmts_matmul_forward", [f32(1), f32(1), f32(1), null, int(-3), int(1), int(1)]), "llmts_matmul_forward", "bt = -3, must be at least 1");
  });

  test("a product of sizes beyond 2^40 elements (C·OC would overflow no buffer, but no buffer is that big)", () => {
    expectRefusedByLibrary(rawCall("llmts_matmul_backward_input", [f32(1), f32(1), f32(1), int(1), int(I32_MAX), int(I32_MAX)]), "llmts_matmul_backward_input", `oc·c = ${I32_MAX}·${I32_MAX} elements, more than 2^40`);
    expectRefusedByLibrary(rawCall("llmts_attention_forward", [f32(1), f32(1), f32(1), int(I32_MAX), int(I32_MAX), int(I32_MAX), int(1)]), "llmts_attention_forward", `b·t·3·c = ${I32_MAX}·${I32_MAX}·3·${I32_MAX} elements, more than 2^40`);
  });

  test("a null required pointer", () => {
    expectRefusedByLibrary(rawCall("llmts_layernorm_forward", [null, f32(2), f32(2), f32(6), f32(3), f32(3), int(2), int(3)]), "llmts_layernorm_forward", "out is null");
  });

  test("shapes that do not fit: C not a multiple of NH, T past maxT, V past Vp", () => {
    expectRefusedByLibrary(rawCall("llmts_attention_backward", [f32(36), f32(12), f32(36), f32(12), f32(6), int(1), int(2), int(6), int(4)]), "llmts_attention_backward", "c = 6 is not a multiple of nh = 4");
    expectRefusedByLibrary(rawCall("llmts_encoder_forward", [f32(12), { i32: [0, 0, 0, 0] }, f32(12), f32(9), int(1), int(4), int(3), int(4), int(3)]), "llmts_encoder_forward", "t = 4 exceeds max_t = 3");
    expectRefusedByLibrary(rawCall("llmts_softmax_xent_backward", [f32(8), f32(8), { i32: [0, 0] }, { float: 1 }, int(2), int(5), int(4)]), "llmts_softmax_xent_backward", "v = 5 exceeds vp = 4");
  });

  test("token ids and targets outside their range", () => {
    expectRefusedByLibrary(rawCall("llmts_encoder_backward", [f32(12), f32(9), f32(6), { i32: [1, 4] }, int(1), int(2), int(3), int(4), int(3)]), "llmts_encoder_backward", "inp[1] = 4, outside [0, vp = 4)");
    expectRefusedByLibrary(rawCall("llmts_softmax_xent_forward", [f32(8), f32(2), f32(8), { i32: [-1, 0] }, int(2), int(3), int(4)]), "llmts_softmax_xent_forward", "targets[0] = -1, outside [0, v = 3)");
  });

  test("AdamW's count and coefficients, the grad norm's output pointer", () => {
    const coefficients = [1, 0.9, 0.1, 0.999, 0.001, 0.5, 1e-8, -1e-3, 1].map((value) => ({ float: value }));
    expectRefusedByLibrary(rawCall("llmts_adamw_update", [f32(1), f32(1), f32(1), f32(1), { long: 0 }, ...coefficients]), "llmts_adamw_update", "n = 0, must be from 1 to 2^40");
    const noEps = coefficients.map((c, i) => (i === 6 ? { float: 0 } : c));
    expectRefusedByLibrary(rawCall("llmts_adamw_update", [f32(1), f32(1), f32(1), f32(1), { long: 1 }, ...noEps]), "llmts_adamw_update", "eps = 0, must be positive");
    expectRefusedByLibrary(rawCall("llmts_grad_norm_squared", [f32(3), { long: 3 }, null]), "llmts_grad_norm_squared", "out is null");
  });

  test("decode attention: a negative pos0, rows past the cache", () => {
    expectRefusedByLibrary(rawCall("llmts_decode_attention", [f32(4), f32(12), f32(12), f32(12), int(-1), int(1), int(4), int(2), int(3)]), "llmts_decode_attention", "pos0 = -1, must be at least 0");
    expectRefusedByLibrary(rawCall("llmts_decode_attention", [f32(8), f32(24), f32(12), f32(12), int(2), int(2), int(4), int(2), int(3)]), "llmts_decode_attention", "rows pos0 = 2 .. pos0 + n = 4 do not fit max_t = 3");
    expectRefusedByLibrary(rawCall("llmts_decode_attention_rows", [f32(8), f32(24), f32(24), f32(24), { i32: [1, 1] }, { i32: [0, 2] }, int(2), int(2), int(4), int(2), int(3)]), "llmts_decode_attention_rows", "rows 0 and 1 both name cache 1");
    expectRefusedByLibrary(rawCall("llmts_decode_attention_rows", [f32(8), f32(24), f32(24), f32(24), { i32: [1, 0] }, { i32: [0, 3] }, int(2), int(2), int(4), int(2), int(3)]), "llmts_decode_attention_rows", "position[1] = 3, outside [0, max_t = 3)");
    expectRefusedByLibrary(rawCall("llmts_matmul_forward_prepacked", [f32(10), f32(6), f32(15), null, null, int(2), int(3), int(5)]), "llmts_matmul_forward_prepacked", "packed is null");
    expectRefusedByLibrary(rawCall("llmts_sum_segments", [null, int(2), int(0), { long: 0 }, { long: 1 }, int(0), null]), "llmts_sum_segments", "addresses is null");
    expectRefusedByLibrary(rawCall("llmts_sum_segments", [null, int(2), int(2), { long: 0 }, { long: 1 }, int(0), null]), "llmts_sum_segments", "self_index = 2, outside [0, count = 2)");
    expectRefusedByLibrary(rawCall("llmts_sampling_weights", [{ f64: 5 }, f32(5), int(5), { double: 0 }]), "llmts_sampling_weights", "scale = 0, must be finite and > 0");
  });
});

describe("limits come from the library, and ffi.ts enforces exactly them", () => {
  const limits = kernelLimits();

  test("the limits are the ones kernels/ states (spot values) and plain positive integers", () => {
    expect(limits.maxDim).toBe(I32_MAX);
    expect(limits.maxElements).toBe(2 ** 40);
    for (const value of [limits.maxThreads, ...Object.values(limits.decode)]) expect(Number.isSafeInteger(value) && value > 0).toBe(true);
    expect(Object.isFrozen(limits) && Object.isFrozen(limits.decode)).toBe(true);
  });

  test("threads: the maximum is accepted by ffi.ts and the pool, one more is refused by both", () => {
    const max = limits.maxThreads;
    expect(parseThreadCount(String(max), "--threads")).toBe(max);
    expect(() => parseThreadCount(String(max + 1), "--threads")).toThrow(`--threads must be an integer from 1 to ${max}, got "${max + 1}"`);
    const before = threadCount();
    try {
      expect(setThreads(max)).toBe(max);
      expect(() => setThreads(max + 1)).toThrow(KernelArgumentError);
      expect(threadCount()).toBe(max);
    } finally {
      setThreads(before);
    }
    expect(threadCount()).toBe(defaultThreadCount());
    expectRefusedByLibrary(rawCall("llmts_pool_init", [int(max + 1)], "i32"), "llmts_pool_init", `threads = ${max + 1}, must be from 1 to ${max}`);
  });

  describe("decode attention", () => {
    const { maxHeadSize, maxHeads, maxChannels, keyBlock, scratchFloats } = limits.decode;
    /** A call with arrays of the right size (one row at position 0, a one-row cache). */
    const call = (C: number, NH: number) => decodeAttention(new Float32Array(C), new Float32Array(3 * C), new Float32Array(C), new Float32Array(C), 0, 1, C, NH, 1);

    test("at each limit (C, NH, head size) a call passes ffi.ts and the kernel", () => {
      expect(() => call(maxChannels, maxChannels / maxHeadSize)).not.toThrow(); // largest C and head size
      expect(() => call(maxChannels, maxHeads)).not.toThrow(); // most heads
    });

    test("one past each limit is refused by ffi.ts, and by the kernel when forced through", () => {
      const cases: Array<[number, number, string]> = [
        [maxChannels + maxHeadSize, maxChannels / maxHeadSize + 1, `c = ${maxChannels + maxHeadSize} exceeds ${maxChannels}`],
        [maxHeads + 1, maxHeads + 1, `nh = ${maxHeads + 1} exceeds ${maxHeads}`],
        [maxHeadSize + 1, 1, `head size c/nh = ${maxHeadSize + 1} exceeds ${maxHeadSize}`],
      ];
      for (const [C, NH, message] of cases) {
        expect(() => call(C, NH)).toThrow(KernelArgumentError);
        expectRefusedByLibrary(rawCall("llmts_decode_attention", [f32(C), f32(3 * C), f32(C), f32(C), int(0), int(1), int(C), int(NH), int(1)]), "llmts_decode_attention", message);
      }
    });

    test("the scratch limit: the longest context passes ffi.ts's check, one more position does not", () => {
      const C = maxChannels, NH = 16;
      const longest = Math.floor(scratchFloats / (C + 2 * NH)) * keyBlock;
      // Arrays far too small: a call whose context fits is refused for its array sizes instead.
      const tiny = () => new Float32Array(1);
      expect(() => decodeAttention(tiny(), tiny(), tiny(), tiny(), longest - 1, 1, C, NH, longest)).toThrow(/has 1 elements, the shape needs/);
      expect(() => decodeAttention(tiny(), tiny(), tiny(), tiny(), longest, 1, C, NH, longest + 1)).toThrow(`decodeAttention: context ${longest + 1} is too long for C = ${C}`);
      expectRefusedByLibrary(rawCall("llmts_decode_attention", [f32(1), f32(1), f32(1), f32(1), int(longest), int(1), int(C), int(NH), int(longest + 1)]), "llmts_decode_attention", `context pos0 + n = ${longest + 1} is too long for c = ${C} (scratch of ${scratchFloats} floats)`);
    });
  });
});

describe("the machine as the library sees it", () => {
  const cpuinfo = existsSync("/proc/cpuinfo") ? readFileSync("/proc/cpuinfo", "utf8") : "";
  const flagsLine = cpuinfo.split("\n").find((line) => line.startsWith("flags"));

  test.skipIf(flagsLine === undefined)("CPU features agree with the kernel's /proc/cpuinfo flags", () => {
    const flags = new Set(flagsLine!.split(":")[1].trim().split(/\s+/));
    expect(cpuFeatures()).toEqual({ avx2: flags.has("avx2"), fma: flags.has("fma"), avx512f: flags.has("avx512f"), avx512bf16: flags.has("avx512_bf16"), amxBf16: flags.has("amx_bf16") });
  });

  test("the build's features are present on this CPU, and its vector width follows AVX-512F", () => {
    const target = targetFeatures(), cpu = cpuFeatures();
    for (const name of Object.keys(target) as Array<keyof typeof target>) if (target[name]) expect(cpu[name]).toBe(true);
    expect(vectorLanes()).toBe(target.avx512f ? 16 : 8);
  });

  test("missingFeatures names what a build needs and a CPU lacks", () => {
    expect(missingFeatures(0b0111, 0b0011)).toEqual(["AVX-512F"]);
    expect(missingFeatures(0b1111, 0b0000)).toEqual(["AVX2", "FMA", "AVX-512F", "AVX512_BF16"]);
    expect(missingFeatures(0b0011, 0b1111)).toEqual([]);
  });

  test("the bf16 peak runs exactly where the build and the CPU have AVX512_BF16", () => {
    const gflops = bf16PeakGflops(1, 5);
    if (targetFeatures().avx512bf16 && cpuFeatures().avx512bf16) expect(gflops).toBeGreaterThan(1);
    else expect(gflops).toBeNull();
  });
});
