//! The C ABI of libllmts.so: every symbol src/ffi.ts binds. Arguments were validated in
//! TypeScript; here they are asserted again (cheaply) and turned into slices.
const std = @import("std");
const pool = @import("pool.zig");
const matmul = @import("matmul.zig");
const attention = @import("attention.zig");

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

// ---- attention ----
export fn llmts_attention_forward(out: [*]f32, lse: [*]f32, qkv: [*]const f32, b: i32, t: i32, c: i32, nh: i32) callconv(.c) void {
    const B, const T, const C, const NH = .{ dim(b), dim(t), dim(c), dim(nh) };
    attention.forward(slice(out, B * T * C), slice(lse, B * NH * T), constSlice(qkv, B * T * 3 * C), B, T, C, NH);
}
export fn llmts_attention_backward(dqkv: [*]f32, dout: [*]const f32, qkv: [*]const f32, out: [*]const f32, lse: [*]const f32, b: i32, t: i32, c: i32, nh: i32) callconv(.c) void {
    const B, const T, const C, const NH = .{ dim(b), dim(t), dim(c), dim(nh) };
    attention.backward(slice(dqkv, B * T * 3 * C), constSlice(dout, B * T * C), constSlice(qkv, B * T * 3 * C), constSlice(out, B * T * C), constSlice(lse, B * NH * T), B, T, C, NH);
}

test {
    std.testing.refAllDecls(@This());
    _ = pool;
    _ = matmul;
    _ = attention;
}
