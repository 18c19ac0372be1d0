//! The C ABI of libllmts.so: every symbol src/ffi.ts binds. Arguments were validated in
//! TypeScript; here they are asserted again (cheaply) and turned into slices.
const std = @import("std");
const pool = @import("pool.zig");
const matmul = @import("matmul.zig");
const gemm = @import("gemm.zig");
const peak = @import("peak.zig");

fn slice(ptr: [*]f32, len: usize) []f32 {
    return ptr[0..len];
}
fn constSlice(ptr: [*]const f32, len: usize) []const f32 {
    return ptr[0..len];
}
fn dim(value: i32) usize {
    std.debug.assert(value > 0);
    return @intCast(value);
}

// ---- pool ----
/// Returns the thread count in use, or -1 when threads could not be spawned.
export fn llmts_pool_init(thread_count: i32) callconv(.c) i32 {
    if (thread_count < 1 or thread_count > pool.max_threads) return -1;
    pool.init(@intCast(thread_count)) catch return -1;
    return @intCast(pool.threads());
}
export fn llmts_pool_threads() callconv(.c) i32 {
    return @intCast(pool.threads());
}

// ---- matmul ----
export fn llmts_matmul_forward(out: [*]f32, inp: [*]const f32, weight: [*]const f32, bias: ?[*]const f32, bt: i32, c: i32, oc: i32) callconv(.c) void {
    const BT, const C, const OC = .{ dim(bt), dim(c), dim(oc) };
    matmul.forward(slice(out, BT * OC), constSlice(inp, BT * C), constSlice(weight, OC * C), if (bias) |b| constSlice(b, OC) else null, BT, C, OC);
}
export fn llmts_matmul_backward_input(dinp: [*]f32, dout: [*]const f32, weight: [*]const f32, bt: i32, c: i32, oc: i32) callconv(.c) void {
    const BT, const C, const OC = .{ dim(bt), dim(c), dim(oc) };
    matmul.backwardInput(slice(dinp, BT * C), constSlice(dout, BT * OC), constSlice(weight, OC * C), BT, C, OC);
}
export fn llmts_matmul_backward_weight(dweight: [*]f32, dbias: ?[*]f32, dout: [*]const f32, inp: [*]const f32, bt: i32, c: i32, oc: i32) callconv(.c) void {
    const BT, const C, const OC = .{ dim(bt), dim(c), dim(oc) };
    matmul.backwardWeight(slice(dweight, OC * C), if (dbias) |b| slice(b, OC) else null, constSlice(dout, BT * OC), constSlice(inp, BT * C), BT, C, OC);
}

// ---- peak ----
/// FMA GFLOP/s of `threads` threads running `width`-lane FMA chains (8, or 16 where AVX-512
/// exists) for about `ms` milliseconds; -1 for an unsupported width or thread count. The pool is
/// restored to its previous size afterwards.
export fn llmts_fma_peak_gflops(threads: i32, ms: i32, width: i32) callconv(.c) f64 {
    if (threads < 1 or threads > pool.max_threads or ms < 1) return -1;
    if (width != 8 and width != peak.max_width) return -1;
    const previous = pool.threads();
    if (previous != threads) pool.init(@intCast(threads)) catch return -1;
    defer if (previous != threads) pool.init(previous) catch {};
    return if (width == 16) peak.measure(16, @intCast(ms)) else peak.measure(8, @intCast(ms));
}
/// f32 lanes per vector register the matmul kernels were built for (8 = AVX2, 16 = AVX-512).
export fn llmts_matmul_lanes() callconv(.c) i32 {
    return gemm.lanes;
}

test {
    std.testing.refAllDecls(@This());
    _ = peak;
    _ = pool;
    _ = matmul;
}
