//! The C ABI of libllmts.so: every symbol src/ffi.ts binds. Arguments were validated in
//! TypeScript; here they are asserted again (cheaply) and turned into slices.
const std = @import("std");
const pool = @import("pool.zig");
const matmul = @import("matmul.zig");
const decode = @import("decode.zig");

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

// ---- decode ----
export fn llmts_decode_matvec(out: [*]f32, inp: [*]const f32, weight: [*]const f32, bias: ?[*]const f32, c: i32, oc: i32) callconv(.c) void {
    const C, const OC = .{ dim(c), dim(oc) };
    decode.matvec(slice(out, OC), constSlice(inp, C), constSlice(weight, OC * C), if (bias) |b| constSlice(b, OC) else null, C, OC);
}
/// pos0 may be 0 (the first row of a prompt), so it is checked separately from the dimensions.
export fn llmts_decode_attention(out: [*]f32, qkv: [*]const f32, k_cache: [*]f32, v_cache: [*]f32, pos0: i32, n: i32, c: i32, nh: i32, max_t: i32) callconv(.c) void {
    std.debug.assert(pos0 >= 0);
    const shape = decode.AttentionShape{ .pos0 = @intCast(pos0), .n = dim(n), .c = dim(c), .nh = dim(nh), .max_t = dim(max_t) };
    const N, const C, const MT = .{ shape.n, shape.c, shape.max_t };
    decode.attention(slice(out, N * C), constSlice(qkv, N * 3 * C), slice(k_cache, MT * C), slice(v_cache, MT * C), shape);
}
export fn llmts_copy(dst: [*]f32, src: [*]const f32, n: i64) callconv(.c) void {
    std.debug.assert(n > 0);
    const len: usize = @intCast(n);
    decode.copy(slice(dst, len), constSlice(src, len));
}

test {
    std.testing.refAllDecls(@This());
    _ = pool;
    _ = matmul;
    _ = decode;
}
