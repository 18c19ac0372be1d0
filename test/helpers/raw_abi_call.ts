// Calls one symbol of libllmts.so through its own dlopen, bypassing src/ffi.ts and all its checks,
// so that a test can see what the library itself does with an impossible argument. Run as a child
// process: bun test/helpers/raw_abi_call.ts '<json Call>'; prints {"result": …} if the call returns.
import { dlopen, FFIType } from "bun:ffi";

/** One argument: a typed array (Float32Array of `f32` elements, Int32Array of `i32` values), null, or a scalar. */
export type RawArgument = { f32: number } | { i32: number[] } | { f64: number } | null | { int: number } | { long: number } | { float: number } | { double: number };
export interface RawCall { library: string; symbol: string; args: RawArgument[]; returns: "void" | "i32" | "f64" }

function argumentType(arg: RawArgument): FFIType {
  if (arg === null || "f32" in arg || "i32" in arg || "f64" in arg) return FFIType.ptr;
  if ("int" in arg) return FFIType.i32;
  if ("long" in arg) return FFIType.i64;
  if ("double" in arg) return FFIType.f64;
  return FFIType.f32;
}

function argumentValue(arg: RawArgument): unknown {
  if (arg === null) return null;
  if ("f32" in arg) return new Float32Array(arg.f32);
  if ("i32" in arg) return Int32Array.from(arg.i32);
  if ("f64" in arg) return new Float64Array(arg.f64);
  if ("int" in arg) return arg.int;
  if ("long" in arg) return arg.long;
  if ("double" in arg) return arg.double;
  return arg.float;
}

if (import.meta.main) {
  const call = JSON.parse(process.argv[2]) as RawCall;
  const returns = { void: FFIType.void, i32: FFIType.i32, f64: FFIType.f64 }[call.returns];
  const { symbols } = dlopen(call.library, { [call.symbol]: { args: call.args.map(argumentType), returns } });
  const result = (symbols[call.symbol] as (...a: unknown[]) => unknown)(...call.args.map(argumentValue));
  console.log(JSON.stringify({ result: result ?? null }));
}
