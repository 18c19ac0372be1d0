//! The C ABI of libllmts.so: every symbol src/ffi.ts binds. Arguments were validated in
//! TypeScript; here they are asserted again (cheaply) and turned into slices.
const std = @import("std");
const pool = @import("pool.zig");
const matmul = @import("matmul.zig");
const attention = @import("attention.zig");
const encoder = @import("encoder.zig");
const layernorm = @import("layernorm.zig");
const elementwise = @import("elementwise.zig");
const gelu = @import("gelu.zig");
const vmath = @import("vmath.zig");
const softmax_xent = @import("softmax_xent.zig");
const adamw = @import("adamw.zig");
const gemm = @import("gemm.zig");
const peak = @import("peak.zig");
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

// ---- attention ----
export fn llmts_attention_forward(out: [*]f32, lse: [*]f32, qkv: [*]const f32, b: i32, t: i32, c: i32, nh: i32) callconv(.c) void {
    const B, const T, const C, const NH = .{ dim(b), dim(t), dim(c), dim(nh) };
    attention.forward(slice(out, B * T * C), slice(lse, B * NH * T), constSlice(qkv, B * T * 3 * C), B, T, C, NH);
}
export fn llmts_attention_backward(dqkv: [*]f32, dout: [*]const f32, qkv: [*]const f32, out: [*]const f32, lse: [*]const f32, b: i32, t: i32, c: i32, nh: i32) callconv(.c) void {
    const B, const T, const C, const NH = .{ dim(b), dim(t), dim(c), dim(nh) };
    attention.backward(slice(dqkv, B * T * 3 * C), constSlice(dout, B * T * C), constSlice(qkv, B * T * 3 * C), constSlice(out, B * T * C), constSlice(lse, B * NH * T), B, T, C, NH);
}

// ---- layers ----
fn ints(ptr: [*]const i32, len: usize) []const i32 {
    return ptr[0..len];
}
fn count64(value: i64) usize {
    std.debug.assert(value > 0);
    return @intCast(value);
}
export fn llmts_encoder_forward(out: [*]f32, inp: [*]const i32, wte: [*]const f32, wpe: [*]const f32, b: i32, t: i32, c: i32, vp: i32, max_t: i32) callconv(.c) void {
    const s = encoder.Shape{ .b = dim(b), .t = dim(t), .c = dim(c), .vp = dim(vp), .max_t = dim(max_t) };
    encoder.forward(slice(out, s.b * s.t * s.c), ints(inp, s.b * s.t), constSlice(wte, s.vp * s.c), constSlice(wpe, s.max_t * s.c), s);
}
export fn llmts_encoder_backward(dwte: [*]f32, dwpe: [*]f32, dout: [*]const f32, inp: [*]const i32, b: i32, t: i32, c: i32, vp: i32, max_t: i32) callconv(.c) void {
    const s = encoder.Shape{ .b = dim(b), .t = dim(t), .c = dim(c), .vp = dim(vp), .max_t = dim(max_t) };
    encoder.backward(slice(dwte, s.vp * s.c), slice(dwpe, s.max_t * s.c), constSlice(dout, s.b * s.t * s.c), ints(inp, s.b * s.t), s);
}
export fn llmts_layernorm_forward(out: [*]f32, mean: [*]f32, rstd: [*]f32, inp: [*]const f32, weight: [*]const f32, bias: [*]const f32, n: i32, c: i32) callconv(.c) void {
    const N, const C = .{ dim(n), dim(c) };
    layernorm.forward(slice(out, N * C), slice(mean, N), slice(rstd, N), constSlice(inp, N * C), constSlice(weight, C), constSlice(bias, C), N, C);
}
export fn llmts_layernorm_backward(dinp: [*]f32, dweight: [*]f32, dbias: [*]f32, dout: [*]const f32, inp: [*]const f32, weight: [*]const f32, mean: [*]const f32, rstd: [*]const f32, n: i32, c: i32) callconv(.c) void {
    const N, const C = .{ dim(n), dim(c) };
    layernorm.backward(slice(dinp, N * C), slice(dweight, C), slice(dbias, C), constSlice(dout, N * C), constSlice(inp, N * C), constSlice(weight, C), constSlice(mean, N), constSlice(rstd, N), N, C);
}
export fn llmts_residual_forward(out: [*]f32, a: [*]const f32, b: [*]const f32, n: i32) callconv(.c) void {
    elementwise.residualForward(slice(out, dim(n)), constSlice(a, dim(n)), constSlice(b, dim(n)));
}
export fn llmts_residual_backward(da: [*]f32, db: [*]f32, dout: [*]const f32, n: i32) callconv(.c) void {
    elementwise.residualBackward(slice(da, dim(n)), slice(db, dim(n)), constSlice(dout, dim(n)));
}
export fn llmts_gelu_forward(out: [*]f32, inp: [*]const f32, n: i32) callconv(.c) void {
    gelu.forward(slice(out, dim(n)), constSlice(inp, dim(n)));
}
export fn llmts_gelu_backward(dinp: [*]f32, inp: [*]const f32, dout: [*]const f32, n: i32) callconv(.c) void {
    gelu.backward(slice(dinp, dim(n)), constSlice(inp, dim(n)), constSlice(dout, dim(n)));
}
export fn llmts_softmax_xent_forward(probs: [*]f32, losses: [*]f32, logits: [*]const f32, targets: [*]const i32, bt: i32, v: i32, vp: i32) callconv(.c) void {
    const s = softmax_xent.Shape{ .bt = dim(bt), .v = dim(v), .vp = dim(vp) };
    softmax_xent.forward(slice(probs, s.bt * s.vp), slice(losses, s.bt), constSlice(logits, s.bt * s.vp), ints(targets, s.bt), s);
}
/// dlogits may be the same array as probs.
export fn llmts_softmax_xent_backward(dlogits: [*]f32, probs: [*]const f32, targets: [*]const i32, dloss_scale: f32, bt: i32, v: i32, vp: i32) callconv(.c) void {
    const s = softmax_xent.Shape{ .bt = dim(bt), .v = dim(v), .vp = dim(vp) };
    softmax_xent.backward(dlogits, probs, ints(targets, s.bt), dloss_scale, s);
}
export fn llmts_adamw_update(params: [*]f32, grads: [*]const f32, m: [*]f32, v: [*]f32, n: i64, decay: f32, beta1: f32, one_minus_beta1: f32, beta2: f32, one_minus_beta2: f32, bc2_sqrt: f32, eps: f32, neg_step_size: f32, grad_scale: f32) callconv(.c) void {
    const len = count64(n);
    adamw.update(slice(params, len), constSlice(grads, len), slice(m, len), slice(v, len), .{
        .decay = decay,
        .beta1 = beta1,
        .one_minus_beta1 = one_minus_beta1,
        .beta2 = beta2,
        .one_minus_beta2 = one_minus_beta2,
        .bc2_sqrt = bc2_sqrt,
        .eps = eps,
        .neg_step_size = neg_step_size,
        .grad_scale = grad_scale,
    });
}
export fn llmts_grad_norm_squared(grads: [*]const f32, n: i64, out: *f64) callconv(.c) void {
    out.* = adamw.gradNormSquared(constSlice(grads, count64(n)));
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
    _ = peak;
    _ = gemm;
    _ = pool;
    _ = matmul;
    _ = attention;
    _ = encoder;
    _ = layernorm;
    _ = elementwise;
    _ = gelu;
    _ = vmath;
    _ = softmax_xent;
    _ = adamw;
    _ = decode;
}
