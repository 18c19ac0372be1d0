// The FFI boundary: the only file that imports bun:ffi. It loads libllmts.so, owns the symbol
// table, and exposes typed functions that check every array against the shape it is called with
// before a pointer reaches Zig. Typed arrays are passed directly as `ptr` arguments (never through
// `ptr()`, whose result can go stale once a caller is JIT-compiled), so nothing here keeps a raw
// pointer. Kernels are synchronous: an array only has to stay alive for the call.
import { dlopen, FFIType } from "bun:ffi";
import { existsSync, readdirSync, statSync } from "node:fs";
import { availableParallelism } from "node:os";
import { join, resolve } from "node:path";

const REPO_ROOT = resolve(import.meta.dir, "..");
export const LIBRARY_PATH = join(REPO_ROOT, "zig-out", "lib", "libllmts.so");
const KERNEL_SOURCES = [join(REPO_ROOT, "build.zig"), ...zigSources(join(REPO_ROOT, "kernels"))];
const MAX_DIM = 2 ** 31 - 1;
const { ptr, i32, i64, f32, void: VOID } = FFIType;

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
  llmts_matmul_backward_input: { args: [ptr, ptr, ptr, i32, i32, i32], returns: VOID },
  llmts_matmul_backward_weight: { args: [ptr, ptr, ptr, ptr, i32, i32, i32], returns: VOID },
  // ---- decode ----
  llmts_decode_matvec: { args: [ptr, ptr, ptr, ptr, i32, i32], returns: VOID },
  llmts_decode_attention: { args: [ptr, ptr, ptr, ptr, i32, i32, i32, i32, i32], returns: VOID },
  llmts_copy: { args: [ptr, ptr, i64], returns: VOID },
} as const;
void i64;
void f32;

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
let library: Library | null = null;

function lib(): Library {
  if (library === null) {
    checkLibrary();
    library = dlopen(LIBRARY_PATH, symbols).symbols;
    const threads = defaultThreadCount();
    if (library.llmts_pool_init(threads) !== threads) throw new Error(`could not start ${threads} kernel threads`);
  }
  return library;
}

/** LLMTS_THREADS when set, else the number of cores this process may use. */
export function defaultThreadCount(): number {
  const env = process.env.LLMTS_THREADS;
  if (env !== undefined && env !== "") return parseThreadCount(env, "LLMTS_THREADS");
  return Math.max(1, Math.min(64, availableParallelism()));
}

export function parseThreadCount(text: string, source: string): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1 || n > 64) throw new KernelArgumentError(`${source} must be an integer from 1 to 64, got "${text}"`);
  return n;
}

/** Restarts the kernel thread pool with `count` threads (the calling thread included). */
export function setThreads(count: number): number {
  if (!Number.isInteger(count) || count < 1 || count > 64) throw new KernelArgumentError(`thread count must be an integer from 1 to 64, got ${count}`);
  const got = lib().llmts_pool_init(count);
  if (got !== count) throw new Error(`could not start ${count} kernel threads`);
  return got;
}

export function threadCount(): number {
  return lib().llmts_pool_threads();
}

// ---- argument checks ----
export function checkDim(fn: string, name: string, value: number): void {
  if (!Number.isInteger(value) || value < 1 || value > MAX_DIM) {
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

function checkElementCount(fn: string, total: number): void {
  if (total > Number.MAX_SAFE_INTEGER || total > 2 ** 40) throw new KernelArgumentError(`${fn}: shape has ${total} elements, too many`);
}

// ---- matmul ----
/** out(BT,OC) = inp(BT,C) · weight(OC,C)ᵀ + bias(OC); bias may be null. */
export function matmulForward(out: Float32Array, inp: Float32Array, weight: Float32Array, bias: Float32Array | null, BT: number, C: number, OC: number): void {
  const fn = "matmulForward";
  checkDim(fn, "BT", BT); checkDim(fn, "C", C); checkDim(fn, "OC", OC);
  checkElementCount(fn, BT * Math.max(C, OC));
  checkF32(fn, "out", out, BT * OC); checkF32(fn, "inp", inp, BT * C); checkF32(fn, "weight", weight, OC * C);
  if (bias !== null) checkF32(fn, "bias", bias, OC);
  lib().llmts_matmul_forward(out, inp, weight, bias, BT, C, OC);
}

/** dinp(BT,C) += dout(BT,OC) · weight(OC,C). */
export function matmulBackwardInput(dinp: Float32Array, dout: Float32Array, weight: Float32Array, BT: number, C: number, OC: number): void {
  const fn = "matmulBackwardInput";
  checkDim(fn, "BT", BT); checkDim(fn, "C", C); checkDim(fn, "OC", OC);
  checkElementCount(fn, BT * Math.max(C, OC));
  checkF32(fn, "dinp", dinp, BT * C); checkF32(fn, "dout", dout, BT * OC); checkF32(fn, "weight", weight, OC * C);
  lib().llmts_matmul_backward_input(dinp, dout, weight, BT, C, OC);
}

/** dweight(OC,C) += dout(BT,OC)ᵀ · inp(BT,C); dbias(OC) += column sums of dout (dbias may be null). */
export function matmulBackwardWeight(dweight: Float32Array, dbias: Float32Array | null, dout: Float32Array, inp: Float32Array, BT: number, C: number, OC: number): void {
  const fn = "matmulBackwardWeight";
  checkDim(fn, "BT", BT); checkDim(fn, "C", C); checkDim(fn, "OC", OC);
  checkElementCount(fn, BT * Math.max(C, OC));
  checkF32(fn, "dweight", dweight, OC * C); checkF32(fn, "dout", dout, BT * OC); checkF32(fn, "inp", inp, BT * C);
  if (dbias !== null) checkF32(fn, "dbias", dbias, OC);
  lib().llmts_matmul_backward_weight(dweight, dbias, dout, inp, BT, C, OC);
}

// ---- decode ----
/** out(OC) = weight(OC,C) · inp(C) + bias(OC): one row's linear layer, streaming the weight once. */
export function decodeMatvec(out: Float32Array, inp: Float32Array, weight: Float32Array, bias: Float32Array | null, C: number, OC: number): void {
  const fn = "decodeMatvec";
  checkDim(fn, "C", C); checkDim(fn, "OC", OC);
  checkElementCount(fn, C * OC);
  checkF32(fn, "out", out, OC); checkF32(fn, "inp", inp, C); checkF32(fn, "weight", weight, OC * C);
  if (bias !== null) checkF32(fn, "bias", bias, OC);
  lib().llmts_decode_matvec(out, inp, weight, bias, C, OC);
}

/** Head sizes the decode attention kernel accepts (its per-task accumulator lives on the stack). */
export const DECODE_MAX_HEAD_SIZE = 256;

/**
 * Stores the keys and values of n new rows (qkv(n,3C), row = [q|k|v]) at cache positions
 * pos0..pos0+n-1 of kCache/vCache (maxT,C), then out(n,C) = causal attention of each row's query
 * over cache positions 0..pos0+i, all NH heads.
 */
export function decodeAttention(out: Float32Array, qkv: Float32Array, kCache: Float32Array, vCache: Float32Array, pos0: number, n: number, C: number, NH: number, maxT: number): void {
  const fn = "decodeAttention";
  checkDim(fn, "n", n); checkDim(fn, "C", C); checkDim(fn, "NH", NH); checkDim(fn, "maxT", maxT);
  if (!Number.isInteger(pos0) || pos0 < 0 || pos0 + n > maxT) throw new KernelArgumentError(`${fn}: rows ${pos0}..${pos0 + n - 1} do not fit a cache of ${maxT} positions`);
  if (C % NH !== 0 || C / NH > DECODE_MAX_HEAD_SIZE) throw new KernelArgumentError(`${fn}: C (${C}) must split into NH (${NH}) heads of at most ${DECODE_MAX_HEAD_SIZE}`);
  checkElementCount(fn, maxT * C);
  checkF32(fn, "out", out, n * C); checkF32(fn, "qkv", qkv, n * 3 * C);
  checkF32(fn, "kCache", kCache, maxT * C); checkF32(fn, "vCache", vCache, maxT * C);
  lib().llmts_decode_attention(out, qkv, kCache, vCache, pos0, n, C, NH, maxT);
}

/** dst = src with all threads (the bandwidth yardstick of bench/generate.ts). */
export function parallelCopy(dst: Float32Array, src: Float32Array): void {
  const fn = "parallelCopy";
  checkDim(fn, "n", src.length);
  checkF32(fn, "dst", dst, src.length);
  lib().llmts_copy(dst, src, src.length);
}
