// The FFI boundary: the only file that imports bun:ffi. It loads libllmts.so, owns the symbol
// table, and exposes typed functions that check every array against the shape it is called with
// before a pointer reaches Zig. Typed arrays are passed directly as `ptr` arguments (never through
// `ptr()`, whose result can go stale once a caller is JIT-compiled), so nothing here keeps a raw
// pointer. Kernels are synchronous: an array only has to stay alive for the call.
//
// Conventions shared with kernels/root.zig (the C ABI):
//   - A bad argument is refused here with a KernelArgumentError naming the wrapper and the
//     argument. The library checks again in every build (kernels/check.zig): a call that bypasses
//     these wrappers with an impossible argument ends the process with a line on stderr naming the
//     exported symbol and the argument, exit status 70, never undefined behaviour.
//   - The limits checked here (thread count, element counts, decode attention's buffers) are read
//     from the library once at load (llmts_limits_json), never restated.
//   - At load, the library's build target is compared with the running CPU (cpuid), so a library
//     built for AVX-512 on another machine is refused with a message instead of SIGILL.
import { dlopen, FFIType } from "bun:ffi";
import { existsSync, readdirSync, statSync } from "node:fs";
import { availableParallelism } from "node:os";
import { join, resolve } from "node:path";

const REPO_ROOT = resolve(import.meta.dir, "..");
export const LIBRARY_PATH = join(REPO_ROOT, "zig-out", "lib", "libllmts.so");
const KERNEL_SOURCES = [join(REPO_ROOT, "build.zig"), ...zigSources(join(REPO_ROOT, "kernels"))];
const { ptr, i32, i64, u32, f32, f64, cstring, void: VOID } = FFIType;

function zigSources(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir).filter((f) => f.endsWith(".zig")).map((f) => join(dir, f));
}

const symbols = {
  // ---- pool ----
  llmts_pool_init: { args: [i32], returns: i32 },
  llmts_pool_threads: { args: [], returns: i32 },
  // ---- matmul ----
  llmts_matmul_forward: { args: [ptr, ptr, ptr, ptr, i32, i32, i32], returns: VOID },
  llmts_matmul_pack: { args: [ptr, ptr, i32, i32], returns: VOID },
  llmts_matmul_forward_prepacked: { args: [ptr, ptr, ptr, ptr, ptr, i32, i32, i32], returns: VOID },
  llmts_matmul_backward_input: { args: [ptr, ptr, ptr, i32, i32, i32], returns: VOID },
  llmts_matmul_backward_weight: { args: [ptr, ptr, ptr, ptr, i32, i32, i32], returns: VOID },
  // ---- attention ----
  llmts_attention_forward: { args: [ptr, ptr, ptr, i32, i32, i32, i32], returns: VOID },
  llmts_attention_backward: { args: [ptr, ptr, ptr, ptr, ptr, i32, i32, i32, i32], returns: VOID },
  // ---- layers ----
  llmts_encoder_forward: { args: [ptr, ptr, ptr, ptr, i32, i32, i32, i32, i32], returns: VOID },
  llmts_encoder_backward: { args: [ptr, ptr, ptr, ptr, i32, i32, i32, i32, i32], returns: VOID },
  llmts_layernorm_forward: { args: [ptr, ptr, ptr, ptr, ptr, ptr, i32, i32], returns: VOID },
  llmts_layernorm_backward: { args: [ptr, ptr, ptr, ptr, ptr, ptr, ptr, ptr, i32, i32], returns: VOID },
  llmts_residual_forward: { args: [ptr, ptr, ptr, i32], returns: VOID },
  llmts_zero: { args: [ptr, i64], returns: VOID },
  llmts_gelu_forward: { args: [ptr, ptr, i32], returns: VOID },
  llmts_gelu_backward: { args: [ptr, ptr, ptr, i32], returns: VOID },
  llmts_softmax_xent_forward: { args: [ptr, ptr, ptr, ptr, i32, i32, i32], returns: VOID },
  llmts_softmax_xent_backward: { args: [ptr, ptr, ptr, f32, i32, i32, i32], returns: VOID },
  llmts_adamw_update: { args: [ptr, ptr, ptr, ptr, i64, f32, f32, f32, f32, f32, f32, f32, f32, f32], returns: VOID },
  llmts_grad_norm_squared: { args: [ptr, i64, ptr], returns: VOID },
  // ---- machine and limits ----
  llmts_vector_lanes: { args: [], returns: i32 },
  llmts_cpu_features: { args: [], returns: u32 },
  llmts_target_features: { args: [], returns: u32 },
  llmts_limits_json: { args: [], returns: cstring },
  // ---- peak ----
  llmts_fma_peak_gflops: { args: [i32, i32, i32], returns: f64 },
  llmts_bf16_peak_gflops: { args: [i32, i32], returns: f64 },
  // ---- matmul precision ----
  llmts_set_matmul_precision: { args: [i32], returns: i32 },
  llmts_matmul_precision: { args: [], returns: i32 },
  llmts_bf16_matmul_available: { args: [], returns: i32 },
  // ---- decode ----
  llmts_decode_attention: { args: [ptr, ptr, ptr, ptr, i32, i32, i32, i32, i32], returns: VOID },
  llmts_decode_attention_rows: { args: [ptr, ptr, ptr, ptr, ptr, ptr, i32, i32, i32, i32, i32], returns: VOID },
  llmts_sampling_weights: { args: [ptr, ptr, i32, f64], returns: VOID },
  llmts_sum_segments: { args: [ptr, i32, i32, i64, i64, i32, ptr], returns: VOID },
  llmts_copy: { args: [ptr, ptr, i64], returns: VOID },
} as const;

export class KernelArgumentError extends Error {
  override name = "KernelArgumentError";
}

/** Throws unless the library exists and is newer than every Zig source it is built from. */
function checkLibrary(): void {
  if (!existsSync(LIBRARY_PATH)) {
    throw new Error(`llm.ts kernel library not found at ${LIBRARY_PATH}: run \`bun run build\` (or \`npm install\`, which builds it)`);
  }
  const libraryTime = statSync(LIBRARY_PATH).mtimeMs;
  const newer = KERNEL_SOURCES.filter((f) => existsSync(f) && statSync(f).mtimeMs > libraryTime);
  if (newer.length > 0) {
    throw new Error(`llm.ts kernel library ${LIBRARY_PATH} is older than ${newer.map((f) => f.slice(REPO_ROOT.length + 1)).join(", ")}: run \`bun run build\``);
  }
}

type Library = ReturnType<typeof dlopen<typeof symbols>>["symbols"];

/** Limits of the kernels, as kernels/root.zig reports them (llmts_limits_json). */
export interface KernelLimits {
  /** largest size argument (the C ABI passes sizes as i32) */
  maxDim: number;
  /** most elements of any one array argument */
  maxElements: number;
  /** most kernel threads (kernels/pool.zig) */
  maxThreads: number;
  /** decodeAttention's stack buffers and partial-results scratch (kernels/decode.zig); decodeAttentionRows' most rows */
  decode: { maxRows: number; maxHeadSize: number; maxHeads: number; maxChannels: number; keyBlock: number; scratchFloats: number };
  /** forward matmuls with at most this many rows stream the weights (one reduction order per element) */
  matmulSmallRowsMax: number;
  /** Output columns per panel of a packed weight (kernels/panel_matmul.zig). */
  matmulPanelWidth: number;
}

/** The features the kernels care about (bits of llmts_cpu_features / llmts_target_features). */
export interface CpuFeatures { avx2: boolean; fma: boolean; avx512f: boolean; avx512bf16: boolean; amxBf16: boolean }
const FEATURE_BITS: Array<[keyof CpuFeatures, string]> = [["avx2", "AVX2"], ["fma", "FMA"], ["avx512f", "AVX-512F"], ["avx512bf16", "AVX512_BF16"], ["amxBf16", "AMX-BF16"]];

function featuresOf(bits: number): CpuFeatures {
  const entries = FEATURE_BITS.map(([name], i) => [name, ((bits >>> i) & 1) === 1]);
  return Object.fromEntries(entries) as CpuFeatures;
}

/** Names of the features in `required` that `present` lacks (bitmasks as the library reports them). */
export function missingFeatures(required: number, present: number): string[] {
  return FEATURE_BITS.filter((_, i) => ((required >>> i) & 1) === 1 && ((present >>> i) & 1) === 0).map(([, label]) => label);
}

function parseLimits(text: string): KernelLimits {
  const raw = JSON.parse(text) as Record<string, unknown>;
  const get = (key: string): number => {
    const value = raw[key];
    if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 1) throw new Error(`llm.ts kernel library ${LIBRARY_PATH} reports no valid limit ${key} (got ${String(value)}): run \`bun run build\``);
    return value;
  };
  return Object.freeze({
    maxDim: get("max_dim"), maxElements: get("max_elements"), maxThreads: get("max_threads"),
    decode: Object.freeze({ maxRows: get("decode_max_rows"), maxHeadSize: get("decode_max_head_size"), maxHeads: get("decode_max_heads"), maxChannels: get("decode_max_channels"), keyBlock: get("decode_key_block"), scratchFloats: get("decode_scratch_floats") }),
    matmulSmallRowsMax: get("matmul_small_rows_max"), matmulPanelWidth: get("matmul_panel_width"),
  });
}

interface Loaded { symbols: Library; limits: KernelLimits }
let loaded: Loaded | null = null;
let poolStarted = false;

/** dlopens the library once, reads its limits and checks that this CPU can run its build. */
function load(): Loaded {
  if (loaded === null) {
    checkLibrary();
    let bound: Library;
    try {
      bound = dlopen(LIBRARY_PATH, symbols).symbols;
    } catch (error) {
      // A library from another build of the sources (a missing symbol) or a damaged file.
      throw new Error(`llm.ts kernel library ${LIBRARY_PATH} could not be loaded (${(error as Error).message}): run \`bun run build\``);
    }
    const missing = missingFeatures(bound.llmts_target_features(), bound.llmts_cpu_features());
    if (missing.length > 0) {
      throw new Error(`llm.ts kernel library ${LIBRARY_PATH} was built for a CPU with ${missing.join(", ")}, which this CPU (or its OS) lacks: run \`bun run build\` on this machine, or \`bun run build:portable\``);
    }
    loaded = { symbols: bound, limits: parseLimits(String(bound.llmts_limits_json())) };
  }
  return loaded;
}

/** The library, with the kernel thread pool started (the first call sizes it from defaultThreadCount). */
function lib(): Library {
  const { symbols } = load();
  if (!poolStarted) {
    // Validated before anything runs, so a bad LLMTS_THREADS fails every call, not just the first.
    const threads = defaultThreadCount();
    if (symbols.llmts_pool_init(threads) !== threads) throw new Error(`could not start ${threads} kernel threads`);
    poolStarted = true;
  }
  return symbols;
}

/** The kernels' limits (read from the library once). */
export function kernelLimits(): KernelLimits {
  return load().limits;
}

/** The most threads the kernel pool takes (kernels/pool.zig, through the limits). */
export function maxThreads(): number {
  return kernelLimits().maxThreads;
}

/** LLMTS_THREADS when set, else the number of cores this process may use. */
export function defaultThreadCount(): number {
  const env = process.env.LLMTS_THREADS;
  if (env !== undefined && env !== "") return parseThreadCount(env, "LLMTS_THREADS");
  return Math.max(1, Math.min(kernelLimits().maxThreads, availableParallelism()));
}

export function parseThreadCount(text: string, source: string): number {
  const max = kernelLimits().maxThreads;
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1 || n > max) throw new KernelArgumentError(`${source} must be an integer from 1 to ${max}, got "${text}"`);
  return n;
}

/** Restarts the kernel thread pool with `count` threads (the calling thread included). */
export function setThreads(count: number): number {
  const max = kernelLimits().maxThreads;
  if (!Number.isInteger(count) || count < 1 || count > max) throw new KernelArgumentError(`thread count must be an integer from 1 to ${max}, got ${count}`);
  const got = lib().llmts_pool_init(count);
  if (got !== count) throw new Error(`could not start ${count} kernel threads`);
  return got;
}

export function threadCount(): number {
  return lib().llmts_pool_threads();
}

// ---- argument checks ----
export function checkDim(fn: string, name: string, value: number): void {
  if (!Number.isInteger(value) || value < 1 || value > kernelLimits().maxDim) {
    throw new KernelArgumentError(`${fn}: ${name} must be a positive integer below 2^31, got ${value}`);
  }
}

export function checkF32(fn: string, name: string, array: Float32Array, expected: number): void {
  if (!(array instanceof Float32Array)) throw new KernelArgumentError(`${fn}: ${name} must be a Float32Array`);
  if (array.length !== expected) {
    throw new KernelArgumentError(`${fn}: ${name} has ${array.length} elements, the shape needs ${expected}`);
  }
}

export function checkI32(fn: string, name: string, array: Int32Array, expected: number): void {
  if (!(array instanceof Int32Array)) throw new KernelArgumentError(`${fn}: ${name} must be an Int32Array`);
  if (array.length !== expected) {
    throw new KernelArgumentError(`${fn}: ${name} has ${array.length} elements, the shape needs ${expected}`);
  }
}

/** A product of sizes the kernel will address as one array: at most kernelLimits().maxElements. */
function checkElementCount(fn: string, total: number): void {
  const max = kernelLimits().maxElements;
  if (!(total <= max)) throw new KernelArgumentError(`${fn}: shape has ${total} elements, more than ${max}`);
}

// ---- matmul ----
/** out(BT,OC) = inp(BT,C) · weight(OC,C)ᵀ + bias(OC); bias may be null. */
export function matmulForward(out: Float32Array, inp: Float32Array, weight: Float32Array, bias: Float32Array | null, BT: number, C: number, OC: number): void {
  const fn = "matmulForward";
  checkDim(fn, "BT", BT); checkDim(fn, "C", C); checkDim(fn, "OC", OC);
  checkElementCount(fn, BT * Math.max(C, OC)); checkElementCount(fn, OC * C);
  checkF32(fn, "out", out, BT * OC); checkF32(fn, "inp", inp, BT * C); checkF32(fn, "weight", weight, OC * C);
  if (bias !== null) checkF32(fn, "bias", bias, OC);
  lib().llmts_matmul_forward(out, inp, weight, bias, BT, C, OC);
}

/** Floats of a (OC,C) weight packed for matmulForwardPacked: OC rounded up to whole panels, times C. */
export function packedWeightFloats(C: number, OC: number): number {
  const width = kernelLimits().matmulPanelWidth;
  return Math.ceil(OC / width) * width * C;
}

/** packed (packedWeightFloats(C,OC)) = weight (OC,C) in the panel layout of kernels/panel_matmul.zig. */
export function matmulPack(packed: Float32Array, weight: Float32Array, C: number, OC: number): void {
  const fn = "matmulPack";
  checkDim(fn, "C", C); checkDim(fn, "OC", OC);
  checkElementCount(fn, OC * C); checkElementCount(fn, packedWeightFloats(C, OC));
  checkF32(fn, "weight", weight, OC * C); checkF32(fn, "packed", packed, packedWeightFloats(C, OC));
  lib().llmts_matmul_pack(packed, weight, C, OC);
}

/**
 * matmulForward for a weight also packed by matmulPack (bias may be null): up to
 * kernelLimits().matmulSmallRowsMax rows run on `packed`, each output one in-order FMA chain
 * whatever BT, so a row's result does not depend on the other rows; more rows on `weight`.
 */
export function matmulForwardPrepacked(out: Float32Array, inp: Float32Array, weight: Float32Array, packed: Float32Array, bias: Float32Array | null, BT: number, C: number, OC: number): void {
  const fn = "matmulForwardPrepacked";
  checkDim(fn, "BT", BT); checkDim(fn, "C", C); checkDim(fn, "OC", OC);
  checkElementCount(fn, BT * Math.max(C, OC)); checkElementCount(fn, OC * C); checkElementCount(fn, packedWeightFloats(C, OC));
  checkF32(fn, "out", out, BT * OC); checkF32(fn, "inp", inp, BT * C); checkF32(fn, "weight", weight, OC * C);
  checkF32(fn, "packed", packed, packedWeightFloats(C, OC));
  if (bias !== null) checkF32(fn, "bias", bias, OC);
  lib().llmts_matmul_forward_prepacked(out, inp, weight, packed, bias, BT, C, OC);
}

/** dinp(BT,C) += dout(BT,OC) · weight(OC,C). */
export function matmulBackwardInput(dinp: Float32Array, dout: Float32Array, weight: Float32Array, BT: number, C: number, OC: number): void {
  const fn = "matmulBackwardInput";
  checkDim(fn, "BT", BT); checkDim(fn, "C", C); checkDim(fn, "OC", OC);
  checkElementCount(fn, BT * Math.max(C, OC)); checkElementCount(fn, OC * C);
  checkF32(fn, "dinp", dinp, BT * C); checkF32(fn, "dout", dout, BT * OC); checkF32(fn, "weight", weight, OC * C);
  lib().llmts_matmul_backward_input(dinp, dout, weight, BT, C, OC);
}

/** dweight(OC,C) += dout(BT,OC)ᵀ · inp(BT,C); dbias(OC) += column sums of dout (dbias may be null). */
export function matmulBackwardWeight(dweight: Float32Array, dbias: Float32Array | null, dout: Float32Array, inp: Float32Array, BT: number, C: number, OC: number): void {
  const fn = "matmulBackwardWeight";
  checkDim(fn, "BT", BT); checkDim(fn, "C", C); checkDim(fn, "OC", OC);
  checkElementCount(fn, BT * Math.max(C, OC)); checkElementCount(fn, OC * C);
  checkF32(fn, "dweight", dweight, OC * C); checkF32(fn, "dout", dout, BT * OC); checkF32(fn, "inp", inp, BT * C);
  if (dbias !== null) checkF32(fn, "dbias", dbias, OC);
  lib().llmts_matmul_backward_weight(dweight, dbias, dout, inp, BT, C, OC);
}

/** f32 lanes per vector register the kernels were compiled for (8 = AVX2, 16 = AVX-512). */
export function vectorLanes(): number {
  return load().symbols.llmts_vector_lanes();
}

/** The running CPU's features, each counted only if the OS has enabled its registers. */
export function cpuFeatures(): CpuFeatures {
  return featuresOf(load().symbols.llmts_cpu_features());
}

/** The features the library was compiled to require (all present on this CPU, checked at load). */
export function targetFeatures(): CpuFeatures {
  return featuresOf(load().symbols.llmts_target_features());
}

// ---- attention ----
function checkAttentionShape(fn: string, B: number, T: number, C: number, NH: number): void {
  checkDim(fn, "B", B); checkDim(fn, "T", T); checkDim(fn, "C", C); checkDim(fn, "NH", NH);
  if (C % NH !== 0) throw new KernelArgumentError(`${fn}: C (${C}) must be a multiple of NH (${NH})`);
  checkElementCount(fn, B * T * 3 * C);
  checkElementCount(fn, B * NH * T);
}

/**
 * Causal multi-head attention. qkv (B,T,3C) holds per (b,t) the row [q | k | v], head h using
 * channels [h·hs, (h+1)·hs) of each, hs = C/NH. Writes out (B,T,C) = softmax(q·kᵀ/√hs, causal)·v
 * and lse (B,NH,T), the natural-log logsumexp of each row of scaled scores.
 */
export function attentionForward(out: Float32Array, lse: Float32Array, qkv: Float32Array, B: number, T: number, C: number, NH: number): void {
  const fn = "attentionForward";
  checkAttentionShape(fn, B, T, C, NH);
  checkF32(fn, "out", out, B * T * C); checkF32(fn, "lse", lse, B * NH * T); checkF32(fn, "qkv", qkv, B * T * 3 * C);
  lib().llmts_attention_forward(out, lse, qkv, B, T, C, NH);
}

/** dqkv (B,T,3C) = (overwritten with) the gradient w.r.t. qkv, given dout and the forward's out and lse. */
export function attentionBackward(dqkv: Float32Array, dout: Float32Array, qkv: Float32Array, out: Float32Array, lse: Float32Array, B: number, T: number, C: number, NH: number): void {
  const fn = "attentionBackward";
  checkAttentionShape(fn, B, T, C, NH);
  checkF32(fn, "dqkv", dqkv, B * T * 3 * C); checkF32(fn, "dout", dout, B * T * C); checkF32(fn, "qkv", qkv, B * T * 3 * C);
  checkF32(fn, "out", out, B * T * C); checkF32(fn, "lse", lse, B * NH * T);
  lib().llmts_attention_backward(dqkv, dout, qkv, out, lse, B, T, C, NH);
}

// ---- layers ----
function checkIds(fn: string, name: string, ids: Int32Array, limit: number, limitName: string): void {
  for (let i = 0; i < ids.length; i++) {
    const id = ids[i];
    if (id < 0 || id >= limit) throw new KernelArgumentError(`${fn}: ${name}[${i}] = ${id} is outside [0, ${limitName}=${limit})`);
  }
}

function checkEncoder(fn: string, B: number, T: number, C: number, Vp: number, maxT: number): void {
  checkDim(fn, "B", B); checkDim(fn, "T", T); checkDim(fn, "C", C); checkDim(fn, "Vp", Vp); checkDim(fn, "maxT", maxT);
  if (T > maxT) throw new KernelArgumentError(`${fn}: T (${T}) exceeds maxT (${maxT})`);
  checkElementCount(fn, Math.max(B * T, Vp, maxT) * C);
}

/** out(B,T,C) = wte[inp[b,t]] + wpe[t]; wte is (Vp,C), wpe is (maxT,C). Every id must be in [0,Vp). */
export function encoderForward(out: Float32Array, inp: Int32Array, wte: Float32Array, wpe: Float32Array, B: number, T: number, C: number, Vp: number, maxT: number): void {
  const fn = "encoderForward";
  checkEncoder(fn, B, T, C, Vp, maxT);
  checkF32(fn, "out", out, B * T * C); checkI32(fn, "inp", inp, B * T);
  checkF32(fn, "wte", wte, Vp * C); checkF32(fn, "wpe", wpe, maxT * C);
  checkIds(fn, "inp", inp, Vp, "Vp");
  lib().llmts_encoder_forward(out, inp, wte, wpe, B, T, C, Vp, maxT);
}

/** dwte[inp[b,t]] += dout[b,t], dwpe[t] += dout[b,t]; deterministic (additions in token order). */
export function encoderBackward(dwte: Float32Array, dwpe: Float32Array, dout: Float32Array, inp: Int32Array, B: number, T: number, C: number, Vp: number, maxT: number): void {
  const fn = "encoderBackward";
  checkEncoder(fn, B, T, C, Vp, maxT);
  checkF32(fn, "dwte", dwte, Vp * C); checkF32(fn, "dwpe", dwpe, maxT * C);
  checkF32(fn, "dout", dout, B * T * C); checkI32(fn, "inp", inp, B * T);
  checkIds(fn, "inp", inp, Vp, "Vp");
  lib().llmts_encoder_backward(dwte, dwpe, dout, inp, B, T, C, Vp, maxT);
}

function checkRows(fn: string, N: number, C: number): void {
  checkDim(fn, "N", N); checkDim(fn, "C", C);
  checkElementCount(fn, N * C);
}

/** LayerNorm over the last dim (eps 1e-5, biased variance); saves mean(N) and rstd(N). */
export function layernormForward(out: Float32Array, mean: Float32Array, rstd: Float32Array, inp: Float32Array, weight: Float32Array, bias: Float32Array, N: number, C: number): void {
  const fn = "layernormForward";
  checkRows(fn, N, C);
  checkF32(fn, "out", out, N * C); checkF32(fn, "mean", mean, N); checkF32(fn, "rstd", rstd, N);
  checkF32(fn, "inp", inp, N * C); checkF32(fn, "weight", weight, C); checkF32(fn, "bias", bias, C);
  lib().llmts_layernorm_forward(out, mean, rstd, inp, weight, bias, N, C);
}

/** dinp += …, dweight += Σ dout·norm, dbias += Σ dout (row sums in a fixed order). */
export function layernormBackward(dinp: Float32Array, dweight: Float32Array, dbias: Float32Array, dout: Float32Array, inp: Float32Array, weight: Float32Array, mean: Float32Array, rstd: Float32Array, N: number, C: number): void {
  const fn = "layernormBackward";
  checkRows(fn, N, C);
  checkF32(fn, "dinp", dinp, N * C); checkF32(fn, "dweight", dweight, C); checkF32(fn, "dbias", dbias, C);
  checkF32(fn, "dout", dout, N * C); checkF32(fn, "inp", inp, N * C); checkF32(fn, "weight", weight, C);
  checkF32(fn, "mean", mean, N); checkF32(fn, "rstd", rstd, N);
  lib().llmts_layernorm_backward(dinp, dweight, dbias, dout, inp, weight, mean, rstd, N, C);
}

/** out = a + b. */
export function residualForward(out: Float32Array, a: Float32Array, b: Float32Array, n: number): void {
  const fn = "residualForward";
  checkDim(fn, "n", n);
  checkF32(fn, "out", out, n); checkF32(fn, "a", a, n); checkF32(fn, "b", b, n);
  lib().llmts_residual_forward(out, a, b, n);
}

/** out.fill(0) on every pool thread. */
export function zeroFill(out: Float32Array): void {
  const fn = "zeroFill";
  checkF32(fn, "out", out, out.length);
  checkDim(fn, "n", out.length);
  lib().llmts_zero(out, out.length);
}

/** out = GELU(inp), tanh approximation (GPT-2's gelu_new). */
export function geluForward(out: Float32Array, inp: Float32Array, n: number): void {
  const fn = "geluForward";
  checkDim(fn, "n", n);
  checkF32(fn, "out", out, n); checkF32(fn, "inp", inp, n);
  lib().llmts_gelu_forward(out, inp, n);
}

/** dinp += GELU'(inp)·dout; finite for any finite inp. */
export function geluBackward(dinp: Float32Array, inp: Float32Array, dout: Float32Array, n: number): void {
  const fn = "geluBackward";
  checkDim(fn, "n", n);
  checkF32(fn, "dinp", dinp, n); checkF32(fn, "inp", inp, n); checkF32(fn, "dout", dout, n);
  lib().llmts_gelu_backward(dinp, inp, dout, n);
}

function checkVocab(fn: string, BT: number, V: number, Vp: number): void {
  checkDim(fn, "BT", BT); checkDim(fn, "V", V); checkDim(fn, "Vp", Vp);
  if (V > Vp) throw new KernelArgumentError(`${fn}: V (${V}) exceeds Vp (${Vp})`);
  checkElementCount(fn, BT * Vp);
}

/** probs = softmax over the first V columns (padded columns get 0), losses[i] = -log probs[i, targets[i]]. */
export function softmaxCrossEntropyForward(probs: Float32Array, losses: Float32Array, logits: Float32Array, targets: Int32Array, BT: number, V: number, Vp: number): void {
  const fn = "softmaxCrossEntropyForward";
  checkVocab(fn, BT, V, Vp);
  checkF32(fn, "probs", probs, BT * Vp); checkF32(fn, "losses", losses, BT);
  checkF32(fn, "logits", logits, BT * Vp); checkI32(fn, "targets", targets, BT);
  checkIds(fn, "targets", targets, V, "V");
  lib().llmts_softmax_xent_forward(probs, losses, logits, targets, BT, V, Vp);
}

/** dlogits = (probs - onehot(targets))·dlossScale on [0,V), 0 on [V,Vp). dlogits may be probs itself. */
export function softmaxCrossEntropyBackward(dlogits: Float32Array, probs: Float32Array, targets: Int32Array, dlossScale: number, BT: number, V: number, Vp: number): void {
  const fn = "softmaxCrossEntropyBackward";
  checkVocab(fn, BT, V, Vp);
  checkF32(fn, "dlogits", dlogits, BT * Vp); checkF32(fn, "probs", probs, BT * Vp); checkI32(fn, "targets", targets, BT);
  if (!Number.isFinite(dlossScale)) throw new KernelArgumentError(`${fn}: dlossScale must be finite, got ${dlossScale}`);
  checkIds(fn, "targets", targets, V, "V");
  lib().llmts_softmax_xent_backward(dlogits, probs, targets, dlossScale, BT, V, Vp);
}

function checkAdamHyper(fn: string, name: string, value: number, ok: boolean, rule: string): void {
  if (typeof value !== "number" || !Number.isFinite(value) || !ok) throw new KernelArgumentError(`${fn}: ${name} must be ${rule}, got ${value}`);
}

/**
 * One AdamW step with torch.optim.AdamW's semantics and operation order; step is 1-based. The
 * scalar coefficients are computed here in float64, as Python computes them, and rounded to float32
 * at the boundary, as PyTorch rounds them when applying them to float32 tensors.
 */
export function adamwUpdate(params: Float32Array, grads: Float32Array, m: Float32Array, v: Float32Array, lr: number, beta1: number, beta2: number, eps: number, weightDecay: number, step: number, gradScale: number): void {
  const fn = "adamwUpdate";
  const n = params.length;
  if (n < 1) throw new KernelArgumentError(`${fn}: params is empty`);
  checkF32(fn, "params", params, n); checkF32(fn, "grads", grads, n); checkF32(fn, "m", m, n); checkF32(fn, "v", v, n);
  checkAdamHyper(fn, "lr", lr, lr >= 0, "finite and ≥ 0");
  checkAdamHyper(fn, "beta1", beta1, beta1 >= 0 && beta1 < 1, "in [0, 1)");
  checkAdamHyper(fn, "beta2", beta2, beta2 >= 0 && beta2 < 1, "in [0, 1)");
  checkAdamHyper(fn, "eps", eps, Math.fround(eps) > 0, "finite and > 0 in float32");
  checkAdamHyper(fn, "weightDecay", weightDecay, weightDecay >= 0, "finite and ≥ 0");
  checkAdamHyper(fn, "step", step, Number.isInteger(step) && step >= 1, "an integer ≥ 1");
  checkAdamHyper(fn, "gradScale", gradScale, Number.isFinite(Math.fround(gradScale)), "finite in float32");
  const c = adamwCoefficients(lr, beta1, beta2, weightDecay, step);
  if (!(Math.fround(c.bc2Sqrt) > 0 && Number.isFinite(Math.fround(c.negStepSize)))) throw new KernelArgumentError(`${fn}: bias corrections vanish (beta1=${beta1}, beta2=${beta2}, step=${step})`);
  lib().llmts_adamw_update(params, grads, m, v, n, c.decay, beta1, 1 - beta1, beta2, 1 - beta2, c.bc2Sqrt, eps, c.negStepSize, gradScale);
}

/** The float64 scalars of one AdamW step, as torch.optim.AdamW computes them in Python. */
function adamwCoefficients(lr: number, beta1: number, beta2: number, weightDecay: number, step: number): { decay: number; bc2Sqrt: number; negStepSize: number } {
  const bc1 = 1 - beta1 ** step;
  const bc2 = 1 - beta2 ** step;
  return { decay: 1 - lr * weightDecay, bc2Sqrt: Math.sqrt(bc2), negStepSize: -(lr / bc1) };
}

const normOut = new Float64Array(1);

/** Σ grads², accumulated in float64 over a fixed partition (same result for any thread count). */
export function gradNormSquared(grads: Float32Array): number {
  const fn = "gradNormSquared";
  if (!(grads instanceof Float32Array)) throw new KernelArgumentError(`${fn}: grads must be a Float32Array`);
  if (grads.length < 1) throw new KernelArgumentError(`${fn}: grads is empty`);
  lib().llmts_grad_norm_squared(grads, grads.length, normOut);
  return normOut[0];
}

// ---- peak ----
/**
 * Measured FMA throughput in GFLOP/s of `threads` threads, each running 12 independent chains of
 * `width`-lane FMAs for about `ms` milliseconds (the pool is restored afterwards). `width` is 8
 * (AVX2) or, where the kernels were built with AVX-512, 16.
 */
export function fmaPeakGflops(threads: number, ms: number, width = 8): number {
  const fn = "fmaPeakGflops";
  checkPeakArguments(fn, threads, ms);
  if (width !== 8 && width !== 16) throw new KernelArgumentError(`${fn}: width must be 8 or 16, got ${width}`);
  const gflops = lib().llmts_fma_peak_gflops(threads, ms, width);
  if (gflops < 0) throw new KernelArgumentError(`${fn}: width ${width} is not supported by this build`);
  return gflops;
}

function checkPeakArguments(fn: string, threads: number, ms: number): void {
  checkDim(fn, "threads", threads); checkDim(fn, "ms", ms);
  const max = kernelLimits().maxThreads;
  if (threads > max) throw new KernelArgumentError(`${fn}: threads must be at most ${max}, got ${threads}`);
}

/**
 * Measured bf16 dot-product throughput in GFLOP/s of `threads` threads, each running 12
 * independent chains of vdpbf16ps on zmm registers (64 FLOP each: 32 products, 32 additions) for
 * about `ms` milliseconds; null unless both this build and this CPU have AVX512_BF16.
 */
export function bf16PeakGflops(threads: number, ms: number): number | null {
  checkPeakArguments("bf16PeakGflops", threads, ms);
  const gflops = lib().llmts_bf16_peak_gflops(threads, ms);
  return gflops < 0 ? null : gflops;
}

// ---- matmul precision ----
export const MATMUL_PRECISIONS = ["fp32", "bf16"] as const;
export type MatmulPrecision = (typeof MATMUL_PRECISIONS)[number];

/**
 * Why bf16 matmuls cannot run here, or null when they can: they need AVX512_BF16 in the CPU and in
 * the build (`bun run build` targets this CPU; `build:portable` targets AVX2 machines).
 */
export function bf16Unavailable(): string | null {
  if (lib().llmts_bf16_matmul_available() === 1) return null;
  if (!cpuFeatures().avx512bf16) return "this CPU lacks AVX512_BF16 (vdpbf16ps)";
  return "the kernel library was built without AVX512_BF16 (bun run build:portable targets AVX2): run `bun run build` on this machine";
}

/**
 * The precision of every packed matmul, forward and both gradients (like PyTorch's
 * torch.set_float32_matmul_precision): "fp32", or "bf16" — operands rounded to bf16 when packed,
 * products summed in f32. Parameters, gradients and activations stay f32 either way.
 */
export function setMatmulPrecision(precision: MatmulPrecision): void {
  const code = MATMUL_PRECISIONS.indexOf(precision);
  if (code < 0) throw new KernelArgumentError(`setMatmulPrecision: precision must be one of ${MATMUL_PRECISIONS.join(", ")}, got ${String(precision)}`);
  if (code === 1) {
    const reason = bf16Unavailable();
    if (reason !== null) throw new KernelArgumentError(`setMatmulPrecision: bf16 matmuls cannot run: ${reason}`);
  }
  if (lib().llmts_set_matmul_precision(code) !== 0) throw new Error(`setMatmulPrecision: the kernel library refused ${precision}`);
}

export function matmulPrecision(): MatmulPrecision {
  return MATMUL_PRECISIONS[lib().llmts_matmul_precision()];
}

// ---- decode ----
/**
 * Stores the keys and values of n new rows (qkv(n,3C), row = [q|k|v]) at cache positions
 * pos0..pos0+n-1 of kCache/vCache (maxT,C), then out(n,C) = causal attention of each row's query
 * over cache positions 0..pos0+i, all NH heads.
 */
export function decodeAttention(out: Float32Array, qkv: Float32Array, kCache: Float32Array, vCache: Float32Array, pos0: number, n: number, C: number, NH: number, maxT: number): void {
  const fn = "decodeAttention";
  checkDim(fn, "n", n); checkDim(fn, "C", C); checkDim(fn, "NH", NH); checkDim(fn, "maxT", maxT);
  if (!Number.isInteger(pos0) || pos0 < 0 || pos0 + n > maxT) throw new KernelArgumentError(`${fn}: rows ${pos0}..${pos0 + n - 1} do not fit a cache of ${maxT} positions`);
  checkCacheAttention(fn, pos0 + n, C, NH, maxT);
  checkF32(fn, "out", out, n * C); checkF32(fn, "qkv", qkv, n * 3 * C);
  checkF32(fn, "kCache", kCache, maxT * C); checkF32(fn, "vCache", vCache, maxT * C);
  lib().llmts_decode_attention(out, qkv, kCache, vCache, pos0, n, C, NH, maxT);
}

/** decodeAttention's limits on C, NH and the context (pos0 + n rows) of a cache. */
function checkCacheAttention(fn: string, contextRows: number, C: number, NH: number, maxT: number): void {
  const limits = kernelLimits().decode;
  if (C % NH !== 0 || C / NH > limits.maxHeadSize || NH > limits.maxHeads || C > limits.maxChannels) {
    throw new KernelArgumentError(`${fn}: C (${C}) must split into NH (${NH} ≤ ${limits.maxHeads}) heads of at most ${limits.maxHeadSize}, C ≤ ${limits.maxChannels}`);
  }
  if (Math.ceil(contextRows / limits.keyBlock) * (C + 2 * NH) > limits.scratchFloats) throw new KernelArgumentError(`${fn}: context ${contextRows} is too long for C = ${C}`);
  checkElementCount(fn, maxT * C);
}

/**
 * decodeAttention for n rows of n sequences: row i is at position[i] of cache cacheIndex[i] of
 * the caches of (maxT, C) floats laid one after another in kCaches / vCaches. It stores its key
 * and value there and attends over that cache's positions 0..position[i]; the indices must be
 * distinct. A row's result is bit-identical to decodeAttention on its own cache.
 */
export function decodeAttentionRows(out: Float32Array, qkv: Float32Array, kCaches: Float32Array, vCaches: Float32Array, cacheIndex: Int32Array, position: Int32Array, n: number, C: number, NH: number, maxT: number): void {
  const fn = "decodeAttentionRows";
  checkDim(fn, "n", n); checkDim(fn, "C", C); checkDim(fn, "NH", NH); checkDim(fn, "maxT", maxT);
  const maxRows = kernelLimits().decode.maxRows;
  if (n > maxRows) throw new KernelArgumentError(`${fn}: n = ${n} rows, more than ${maxRows}`);
  const cacheFloats = maxT * C;
  if (!(kCaches instanceof Float32Array) || !(vCaches instanceof Float32Array)) throw new KernelArgumentError(`${fn}: kCaches and vCaches must be Float32Arrays`);
  checkElementCount(fn, kCaches.length);
  if (kCaches.length === 0 || kCaches.length % cacheFloats !== 0 || vCaches.length !== kCaches.length) {
    throw new KernelArgumentError(`${fn}: kCaches and vCaches must hold the same whole number of caches of maxT·C = ${cacheFloats} floats (got ${kCaches.length} and ${vCaches.length})`);
  }
  const cacheCount = kCaches.length / cacheFloats;
  checkDim(fn, "cache count", cacheCount);
  checkI32(fn, "cacheIndex", cacheIndex, n); checkI32(fn, "position", position, n);
  let last = 0;
  for (let i = 0; i < n; i++) {
    const cache = cacheIndex[i], pos = position[i];
    if (!(cache >= 0 && cache < cacheCount)) throw new KernelArgumentError(`${fn}: row ${i}: cache ${cache} does not exist (0..${cacheCount - 1})`);
    // n ≤ maxRows (256): a quadratic check allocates nothing on the decode path (once per layer and step).
    for (let j = 0; j < i; j++) if (cacheIndex[j] === cache) throw new KernelArgumentError(`${fn}: row ${i}: cache ${cache} is named by an earlier row too`);
    if (!(pos >= 0 && pos < maxT)) throw new KernelArgumentError(`${fn}: row ${i}: position ${pos} is outside a cache of ${maxT} positions`);
    last = Math.max(last, pos);
  }
  checkCacheAttention(fn, last + 1, C, NH, maxT);
  checkF32(fn, "out", out, n * C); checkF32(fn, "qkv", qkv, n * 3 * C);
  lib().llmts_decode_attention_rows(out, qkv, kCaches, vCaches, cacheIndex, position, n, cacheCount, C, NH, maxT);
}

/**
 * out (n) = e^((logits[i] − max)/temperature) over the first n logits, in double precision (the
 * sampler's unnormalised probabilities; kernels/sampling.zig). The logits must be finite (checked
 * by the caller, src/infer/sampling.ts) and temperature > 0.
 */
export function samplingWeights(out: Float64Array, logits: Float32Array, n: number, temperature: number): void {
  const fn = "samplingWeights";
  checkDim(fn, "n", n);
  if (!(out instanceof Float64Array) || out.length !== n) throw new KernelArgumentError(`${fn}: out must be a Float64Array of ${n} elements`);
  if (!(logits instanceof Float32Array) || logits.length < n) throw new KernelArgumentError(`${fn}: logits must be a Float32Array of at least ${n} elements`);
  const scale = 1 / temperature;
  if (!(temperature > 0) || !Number.isFinite(scale)) throw new KernelArgumentError(`${fn}: temperature must be > 0 with a finite inverse, got ${temperature}`);
  lib().llmts_sampling_weights(out, logits, n, scale);
}

/**
 * segment[self][offset, offset+n) = Σ_r segment[r][offset, offset+n) in rank order, over segments
 * of `segmentFloats` floats at `addresses` (the ranks' gradients in one shared-memory window,
 * src/dist/node_reducer.ts); `release` then unmaps the other segments' pages of the range from
 * this process — only for shared mappings (on private memory it would discard their data).
 * Returns Σ over the range of the sums squared (float64: the range's part of a gradient norm).
 */
export function sumSegments(addresses: BigUint64Array, self: number, offset: number, n: number, segmentFloats: number, release: boolean): number {
  const fn = "sumSegments";
  if (!(addresses instanceof BigUint64Array) || addresses.length < 1) throw new KernelArgumentError(`${fn}: addresses must be a non-empty BigUint64Array`);
  if (!Number.isInteger(self) || self < 0 || self >= addresses.length) throw new KernelArgumentError(`${fn}: self must be a segment index from 0 to ${addresses.length - 1}, got ${self}`);
  checkDim(fn, "n", n); checkDim(fn, "segmentFloats", segmentFloats);
  if (!Number.isInteger(offset) || offset < 0 || offset + n > segmentFloats) throw new KernelArgumentError(`${fn}: the range ${offset}..${offset + n} is outside segments of ${segmentFloats} floats`);
  const seen = new Set<bigint>();
  for (const address of addresses) {
    if (address === 0n || address % 4n !== 0n || seen.has(address)) throw new KernelArgumentError(`${fn}: segment addresses must be distinct, non-null and 4-byte aligned`);
    seen.add(address);
  }
  const squares = new Float64Array(1);
  lib().llmts_sum_segments(addresses, addresses.length, self, offset, n, release ? 1 : 0, squares);
  return squares[0];
}

/** dst = src with all threads (the bandwidth yardstick of bench/generate.ts). */
export function parallelCopy(dst: Float32Array, src: Float32Array): void {
  const fn = "parallelCopy";
  checkF32(fn, "src", src, src.length);
  checkDim(fn, "n", src.length);
  checkF32(fn, "dst", dst, src.length);
  lib().llmts_copy(dst, src, src.length);
}
