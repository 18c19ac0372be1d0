//! The C ABI of libllmts.so: every symbol src/ffi.ts binds.
//!
//! Conventions:
//!   - Sizes are i32 (element counts of whole buffers i64), pointers are nullable C pointers.
//!   - Every export checks its arguments with check.zig before it builds a slice, in every build
//!     mode (the library ships ReleaseFast, where std.debug.assert is only an optimizer hint): a
//!     size below 1, an offset below 0, a product of sizes above 2^40 elements, a null required
//!     pointer, a token id out of range or a shape past a kernel's limits ends the process with a
//!     line on stderr naming the symbol and the argument, and exit status 70. src/ffi.ts refuses
//!     all of these first, with a KernelArgumentError; the checks here are for callers that bypass
//!     it, and cost a few comparisons per call (one pass over token ids).
//!   - The limits TypeScript checks against come from here (llmts_limits_json), as do the vector
//!     width and the CPU features (simd.zig).
const std = @import("std");
const check = @import("check.zig");
const simd = @import("simd.zig");
const pool = @import("pool.zig");
const matmul = @import("matmul.zig");
const panel_matmul = @import("panel_matmul.zig");
const gemm = @import("gemm.zig");
const attention = @import("attention.zig");
const encoder = @import("encoder.zig");
const layernorm = @import("layernorm.zig");
const elementwise = @import("elementwise.zig");
const gelu = @import("gelu.zig");
const softmax_xent = @import("softmax_xent.zig");
const adamw = @import("adamw.zig");
const peak = @import("peak.zig");
const decode = @import("decode.zig");
const sampling = @import("sampling.zig");
const segments_sum = @import("segments.zig");

const Call = check.Call;

// ---- machine and limits ----

/// f32 lanes per vector register the kernels were built for (8 = AVX2, 16 = AVX-512).
export fn llmts_vector_lanes() callconv(.c) i32 {
    return simd.lanes;
}
/// simd.Features of the running CPU (with OS support) as a bitmask: bit 0 avx2, 1 fma, 2 avx512f,
/// 3 avx512bf16, 4 amx_bf16.
export fn llmts_cpu_features() callconv(.c) u32 {
    return simd.cpuFeatures().bits();
}
/// The same bitmask for the features the library was compiled to require.
export fn llmts_target_features() callconv(.c) u32 {
    return simd.target_features.bits();
}

/// The limits the exports below enforce, as a JSON object of integers, for src/ffi.ts to check
/// against before a call.
export fn llmts_limits_json() callconv(.c) [*:0]const u8 {
    return limits_json;
}
const limits_json = std.fmt.comptimePrint(
    \\{{"max_dim":{d},"max_elements":{d},"max_threads":{d},"decode_max_head_size":{d},"decode_max_heads":{d},"decode_max_channels":{d},"decode_key_block":{d},"decode_scratch_floats":{d},"matmul_small_rows_max":{d},"matmul_panel_width":{d},"decode_max_rows":{d}}}
, .{ std.math.maxInt(i32), check.max_elements, pool.max_threads, decode.max_head_size, decode.max_heads, decode.max_channels, decode.key_block, decode.scratch_floats, matmul.small_rows_max, panel_matmul.panel_width, decode_max_rows });

// ---- pool ----

fn threadCount(call: Call, threads: i32) usize {
    call.require(threads >= 1 and threads <= pool.max_threads, "threads = {d}, must be from 1 to {d}", .{ threads, pool.max_threads });
    return @intCast(threads);
}

/// Returns the thread count in use, or -1 when threads could not be spawned.
export fn llmts_pool_init(thread_count: i32) callconv(.c) i32 {
    const threads = threadCount(Call.of(@src()), thread_count);
    pool.init(threads) catch return -1;
    return @intCast(pool.threads());
}
export fn llmts_pool_threads() callconv(.c) i32 {
    return @intCast(pool.threads());
}

// ---- matmul ----

const Linear = struct { bt: usize, c: usize, oc: usize, in: usize, out: usize, w: usize };

fn linear(call: Call, bt: i32, c: i32, oc: i32) Linear {
    const BT, const C, const OC = .{ call.dim("bt", bt), call.dim("c", c), call.dim("oc", oc) };
    return .{ .bt = BT, .c = C, .oc = OC, .in = call.elements("bt·c", .{ BT, C }), .out = call.elements("bt·oc", .{ BT, OC }), .w = call.elements("oc·c", .{ OC, C }) };
}

/// out(bt,oc) = inp(bt,c)·weight(oc,c)ᵀ + bias; one row, a few rows and many rows take different
/// kernels (matmul.forward chooses).
export fn llmts_matmul_forward(out: ?[*]f32, inp: ?[*]const f32, weight: ?[*]const f32, bias: ?[*]const f32, bt: i32, c: i32, oc: i32) callconv(.c) void {
    const call = Call.of(@src());
    const s = linear(call, bt, c, oc);
    const b = if (bias) |p| p[0..s.oc] else null;
    matmul.forward(call.floats("out", out, s.out), call.constFloats("inp", inp, s.in), call.constFloats("weight", weight, s.w), b, s.bt, s.c, s.oc);
}
/// packed (panel_matmul.packedFloats(c, oc)) = weight (oc,c) in the panel layout of
/// llmts_matmul_forward_packed.
export fn llmts_matmul_pack(packed_weight: ?[*]f32, weight: ?[*]const f32, c: i32, oc: i32) callconv(.c) void {
    const call = Call.of(@src());
    const s = linear(call, 1, c, oc);
    const packed_len = call.elements("packed floats", .{ panel_matmul.panelCount(s.oc), panel_matmul.panel_width, s.c });
    panel_matmul.pack(call.floats("packed", packed_weight, packed_len), call.constFloats("weight", weight, s.w), s.c, s.oc);
}
/// llmts_matmul_forward for a weight also packed by llmts_matmul_pack: up to matmul_small_rows_max
/// rows run on the packed panels, one FMA chain per output whatever bt (a row's result does not
/// depend on the other rows); more rows on weight (matmul.forwardPrepacked chooses).
export fn llmts_matmul_forward_prepacked(out: ?[*]f32, inp: ?[*]const f32, weight: ?[*]const f32, packed_weight: ?[*]const f32, bias: ?[*]const f32, bt: i32, c: i32, oc: i32) callconv(.c) void {
    const call = Call.of(@src());
    const s = linear(call, bt, c, oc);
    const packed_len = call.elements("packed floats", .{ panel_matmul.panelCount(s.oc), panel_matmul.panel_width, s.c });
    const b = if (bias) |p| p[0..s.oc] else null;
    matmul.forwardPrepacked(call.floats("out", out, s.out), call.constFloats("inp", inp, s.in), call.constFloats("weight", weight, s.w), call.constFloats("packed", packed_weight, packed_len), b, s.bt, s.c, s.oc);
}
export fn llmts_matmul_backward_input(dinp: ?[*]f32, dout: ?[*]const f32, weight: ?[*]const f32, bt: i32, c: i32, oc: i32) callconv(.c) void {
    const call = Call.of(@src());
    const s = linear(call, bt, c, oc);
    matmul.backwardInput(call.floats("dinp", dinp, s.in), call.constFloats("dout", dout, s.out), call.constFloats("weight", weight, s.w), s.bt, s.c, s.oc);
}
export fn llmts_matmul_backward_weight(dweight: ?[*]f32, dbias: ?[*]f32, dout: ?[*]const f32, inp: ?[*]const f32, bt: i32, c: i32, oc: i32) callconv(.c) void {
    const call = Call.of(@src());
    const s = linear(call, bt, c, oc);
    const db = if (dbias) |p| p[0..s.oc] else null;
    matmul.backwardWeight(call.floats("dweight", dweight, s.w), db, call.constFloats("dout", dout, s.out), call.constFloats("inp", inp, s.in), s.bt, s.c, s.oc);
}

// ---- attention ----

const Heads = struct { b: usize, t: usize, c: usize, nh: usize, qkv: usize, out: usize, lse: usize };

fn heads(call: Call, b: i32, t: i32, c: i32, nh: i32) Heads {
    const B, const T, const C, const NH = .{ call.dim("b", b), call.dim("t", t), call.dim("c", c), call.dim("nh", nh) };
    call.require(C % NH == 0, "c = {d} is not a multiple of nh = {d}", .{ C, NH });
    return .{ .b = B, .t = T, .c = C, .nh = NH, .qkv = call.elements("b·t·3·c", .{ B, T, 3, C }), .out = call.elements("b·t·c", .{ B, T, C }), .lse = call.elements("b·nh·t", .{ B, NH, T }) };
}

export fn llmts_attention_forward(out: ?[*]f32, lse: ?[*]f32, qkv: ?[*]const f32, b: i32, t: i32, c: i32, nh: i32) callconv(.c) void {
    const call = Call.of(@src());
    const s = heads(call, b, t, c, nh);
    attention.forward(call.floats("out", out, s.out), call.floats("lse", lse, s.lse), call.constFloats("qkv", qkv, s.qkv), s.b, s.t, s.c, s.nh);
}
export fn llmts_attention_backward(dqkv: ?[*]f32, dout: ?[*]const f32, qkv: ?[*]const f32, out: ?[*]const f32, lse: ?[*]const f32, b: i32, t: i32, c: i32, nh: i32) callconv(.c) void {
    const call = Call.of(@src());
    const s = heads(call, b, t, c, nh);
    attention.backward(call.floats("dqkv", dqkv, s.qkv), call.constFloats("dout", dout, s.out), call.constFloats("qkv", qkv, s.qkv), call.constFloats("out", out, s.out), call.constFloats("lse", lse, s.lse), s.b, s.t, s.c, s.nh);
}

// ---- layers ----

fn embedding(call: Call, b: i32, t: i32, c: i32, vp: i32, max_t: i32) encoder.Shape {
    const s = encoder.Shape{ .b = call.dim("b", b), .t = call.dim("t", t), .c = call.dim("c", c), .vp = call.dim("vp", vp), .max_t = call.dim("max_t", max_t) };
    call.require(s.t <= s.max_t, "t = {d} exceeds max_t = {d}", .{ s.t, s.max_t });
    _ = call.elements("b·t·c", .{ s.b, s.t, s.c });
    _ = call.elements("vp·c", .{ s.vp, s.c });
    _ = call.elements("max_t·c", .{ s.max_t, s.c });
    return s;
}

export fn llmts_encoder_forward(out: ?[*]f32, inp: ?[*]const i32, wte: ?[*]const f32, wpe: ?[*]const f32, b: i32, t: i32, c: i32, vp: i32, max_t: i32) callconv(.c) void {
    const call = Call.of(@src());
    const s = embedding(call, b, t, c, vp, max_t);
    const ids = call.ids("inp", inp, s.b * s.t, s.vp, "vp");
    encoder.forward(call.floats("out", out, s.b * s.t * s.c), ids, call.constFloats("wte", wte, s.vp * s.c), call.constFloats("wpe", wpe, s.max_t * s.c), s);
}
export fn llmts_encoder_backward(dwte: ?[*]f32, dwpe: ?[*]f32, dout: ?[*]const f32, inp: ?[*]const i32, b: i32, t: i32, c: i32, vp: i32, max_t: i32) callconv(.c) void {
    const call = Call.of(@src());
    const s = embedding(call, b, t, c, vp, max_t);
    const ids = call.ids("inp", inp, s.b * s.t, s.vp, "vp");
    encoder.backward(call.floats("dwte", dwte, s.vp * s.c), call.floats("dwpe", dwpe, s.max_t * s.c), call.constFloats("dout", dout, s.b * s.t * s.c), ids, s);
}

fn rows(call: Call, n: i32, c: i32) struct { usize, usize, usize } {
    const N, const C = .{ call.dim("n", n), call.dim("c", c) };
    return .{ N, C, call.elements("n·c", .{ N, C }) };
}

export fn llmts_layernorm_forward(out: ?[*]f32, mean: ?[*]f32, rstd: ?[*]f32, inp: ?[*]const f32, weight: ?[*]const f32, bias: ?[*]const f32, n: i32, c: i32) callconv(.c) void {
    const call = Call.of(@src());
    const N, const C, const NC = rows(call, n, c);
    layernorm.forward(call.floats("out", out, NC), call.floats("mean", mean, N), call.floats("rstd", rstd, N), call.constFloats("inp", inp, NC), call.constFloats("weight", weight, C), call.constFloats("bias", bias, C), N, C);
}
export fn llmts_layernorm_backward(dinp: ?[*]f32, dweight: ?[*]f32, dbias: ?[*]f32, dout: ?[*]const f32, inp: ?[*]const f32, weight: ?[*]const f32, mean: ?[*]const f32, rstd: ?[*]const f32, n: i32, c: i32) callconv(.c) void {
    const call = Call.of(@src());
    const N, const C, const NC = rows(call, n, c);
    layernorm.backward(call.floats("dinp", dinp, NC), call.floats("dweight", dweight, C), call.floats("dbias", dbias, C), call.constFloats("dout", dout, NC), call.constFloats("inp", inp, NC), call.constFloats("weight", weight, C), call.constFloats("mean", mean, N), call.constFloats("rstd", rstd, N), N, C);
}
export fn llmts_residual_forward(out: ?[*]f32, a: ?[*]const f32, b: ?[*]const f32, n: i32) callconv(.c) void {
    const call = Call.of(@src());
    const len = call.dim("n", n);
    elementwise.residualForward(call.floats("out", out, len), call.constFloats("a", a, len), call.constFloats("b", b, len));
}
export fn llmts_zero(out: ?[*]f32, n: i64) callconv(.c) void {
    const call = Call.of(@src());
    const len = call.count("n", n);
    elementwise.zero(call.floats("out", out, len));
}
export fn llmts_gelu_forward(out: ?[*]f32, inp: ?[*]const f32, n: i32) callconv(.c) void {
    const call = Call.of(@src());
    const len = call.dim("n", n);
    gelu.forward(call.floats("out", out, len), call.constFloats("inp", inp, len));
}
export fn llmts_gelu_backward(dinp: ?[*]f32, inp: ?[*]const f32, dout: ?[*]const f32, n: i32) callconv(.c) void {
    const call = Call.of(@src());
    const len = call.dim("n", n);
    gelu.backward(call.floats("dinp", dinp, len), call.constFloats("inp", inp, len), call.constFloats("dout", dout, len));
}

fn vocabulary(call: Call, bt: i32, v: i32, vp: i32) softmax_xent.Shape {
    const s = softmax_xent.Shape{ .bt = call.dim("bt", bt), .v = call.dim("v", v), .vp = call.dim("vp", vp) };
    call.require(s.v <= s.vp, "v = {d} exceeds vp = {d}", .{ s.v, s.vp });
    _ = call.elements("bt·vp", .{ s.bt, s.vp });
    return s;
}

export fn llmts_softmax_xent_forward(probs: ?[*]f32, losses: ?[*]f32, logits: ?[*]const f32, targets: ?[*]const i32, bt: i32, v: i32, vp: i32) callconv(.c) void {
    const call = Call.of(@src());
    const s = vocabulary(call, bt, v, vp);
    const ids = call.ids("targets", targets, s.bt, s.v, "v");
    softmax_xent.forward(call.floats("probs", probs, s.bt * s.vp), call.floats("losses", losses, s.bt), call.constFloats("logits", logits, s.bt * s.vp), ids, s);
}
/// dlogits may be the same array as probs.
export fn llmts_softmax_xent_backward(dlogits: ?[*]f32, probs: ?[*]const f32, targets: ?[*]const i32, dloss_scale: f32, bt: i32, v: i32, vp: i32) callconv(.c) void {
    const call = Call.of(@src());
    const s = vocabulary(call, bt, v, vp);
    const ids = call.ids("targets", targets, s.bt, s.v, "v");
    const d = dlogits orelse call.fail("dlogits is null", .{});
    const p = probs orelse call.fail("probs is null", .{});
    softmax_xent.backward(d, p, ids, call.finite("dloss_scale", dloss_scale), s);
}
export fn llmts_adamw_update(params: ?[*]f32, grads: ?[*]const f32, m: ?[*]f32, v: ?[*]f32, n: i64, decay: f32, beta1: f32, one_minus_beta1: f32, beta2: f32, one_minus_beta2: f32, bc2_sqrt: f32, eps: f32, neg_step_size: f32, grad_scale: f32) callconv(.c) void {
    const call = Call.of(@src());
    const len = call.count("n", n);
    call.require(bc2_sqrt > 0, "bc2_sqrt = {d}, must be positive", .{bc2_sqrt});
    call.require(eps > 0, "eps = {d}, must be positive", .{eps});
    adamw.update(call.floats("params", params, len), call.constFloats("grads", grads, len), call.floats("m", m, len), call.floats("v", v, len), .{
        .decay = call.finite("decay", decay),
        .beta1 = call.finite("beta1", beta1),
        .one_minus_beta1 = call.finite("one_minus_beta1", one_minus_beta1),
        .beta2 = call.finite("beta2", beta2),
        .one_minus_beta2 = call.finite("one_minus_beta2", one_minus_beta2),
        .bc2_sqrt = call.finite("bc2_sqrt", bc2_sqrt),
        .eps = call.finite("eps", eps),
        .neg_step_size = call.finite("neg_step_size", neg_step_size),
        .grad_scale = call.finite("grad_scale", grad_scale),
    });
}
export fn llmts_grad_norm_squared(grads: ?[*]const f32, n: i64, out: ?*f64) callconv(.c) void {
    const call = Call.of(@src());
    const len = call.count("n", n);
    const result = out orelse call.fail("out is null", .{});
    result.* = adamw.gradNormSquared(call.constFloats("grads", grads, len));
}

// ---- peak ----

/// Runs `measure` on `threads` pool threads, restoring the pool's size afterwards; -1 when the
/// threads cannot be spawned.
fn onThreads(threads: usize, comptime measure: anytype, args: anytype) f64 {
    const previous = pool.threads();
    if (previous != threads) pool.init(threads) catch return -1;
    defer if (previous != threads) pool.init(previous) catch {};
    return @call(.auto, measure, args);
}

/// FMA GFLOP/s of `threads` threads running `width`-lane FMA chains (8, or 16 where the build
/// has AVX-512) for about `ms` milliseconds; -1 for a width this build lacks.
export fn llmts_fma_peak_gflops(threads: i32, ms: i32, width: i32) callconv(.c) f64 {
    const call = Call.of(@src());
    const count, const duration = .{ threadCount(call, threads), call.dim("ms", ms) };
    if (width == 8) return onThreads(count, peak.fma, .{ 8, duration });
    if (width == simd.lanes) return onThreads(count, peak.fma, .{ simd.lanes, duration });
    return -1;
}

fn bf16OrUnavailable(ms: u64) f64 {
    return peak.bf16(ms) orelse -1;
}

/// bf16 dot-product (vdpbf16ps zmm, 64 FLOP each) GFLOP/s of `threads` threads for about `ms`
/// milliseconds; -1 unless both the build target and the CPU have AVX512_BF16.
export fn llmts_bf16_peak_gflops(threads: i32, ms: i32) callconv(.c) f64 {
    const call = Call.of(@src());
    const count, const duration = .{ threadCount(call, threads), call.dim("ms", ms) };
    if (!peak.bf16Available()) return -1;
    return onThreads(count, bf16OrUnavailable, .{duration});
}

// ---- matmul precision ----

/// Sets the precision of every packed GEMM (0 = fp32, 1 = bf16); returns 0, or -1 (nothing
/// changed) when bf16 cannot run here: the build target or the CPU lacks AVX512_BF16.
export fn llmts_set_matmul_precision(value: i32) callconv(.c) i32 {
    const call = Call.of(@src());
    call.require(value == 0 or value == 1, "value = {d}, must be 0 (fp32) or 1 (bf16)", .{value});
    return if (matmul.setPrecision(@enumFromInt(value))) 0 else -1;
}
export fn llmts_matmul_precision() callconv(.c) i32 {
    return @intFromEnum(matmul.currentPrecision());
}
/// 1 when the bf16 GEMM can run (the build target and the CPU have AVX512_BF16), else 0.
export fn llmts_bf16_matmul_available() callconv(.c) i32 {
    return @intFromBool(gemm.bf16Available());
}

// ---- decode ----

fn cacheShape(call: Call, pos0: i32, n: i32, c: i32, nh: i32, max_t: i32) decode.AttentionShape {
    const s = decode.AttentionShape{ .pos0 = call.offset("pos0", pos0), .n = call.dim("n", n), .c = call.dim("c", c), .nh = call.dim("nh", nh), .max_t = call.dim("max_t", max_t) };
    call.require(s.pos0 + s.n <= s.max_t, "rows pos0 = {d} .. pos0 + n = {d} do not fit max_t = {d}", .{ s.pos0, s.pos0 + s.n, s.max_t });
    call.require(s.c % s.nh == 0, "c = {d} is not a multiple of nh = {d}", .{ s.c, s.nh });
    call.require(s.c <= decode.max_channels, "c = {d} exceeds {d}", .{ s.c, decode.max_channels });
    call.require(s.nh <= decode.max_heads, "nh = {d} exceeds {d}", .{ s.nh, decode.max_heads });
    call.require(s.c / s.nh <= decode.max_head_size, "head size c/nh = {d} exceeds {d}", .{ s.c / s.nh, decode.max_head_size });
    call.require(decode.attentionFits(s), "context pos0 + n = {d} is too long for c = {d} (scratch of {d} floats)", .{ s.pos0 + s.n, s.c, decode.scratch_floats });
    _ = call.elements("max_t·c", .{ s.max_t, s.c });
    return s;
}

/// pos0 may be 0 (the first row of a prompt), so it is checked as an offset, not a size.
export fn llmts_decode_attention(out: ?[*]f32, qkv: ?[*]const f32, k_cache: ?[*]f32, v_cache: ?[*]f32, pos0: i32, n: i32, c: i32, nh: i32, max_t: i32) callconv(.c) void {
    const call = Call.of(@src());
    const s = cacheShape(call, pos0, n, c, nh, max_t);
    decode.attention(call.floats("out", out, s.n * s.c), call.constFloats("qkv", qkv, s.n * 3 * s.c), call.floats("k_cache", k_cache, s.max_t * s.c), call.floats("v_cache", v_cache, s.max_t * s.c), s);
}
/// Most rows of one llmts_decode_attention_rows call (its distinct-cache check is quadratic).
pub const decode_max_rows = 256;

/// llmts_decode_attention for n rows of n sequences: row i at position[i] of cache cache_index[i]
/// of the cache_count caches of (max_t, c) floats in k_caches and v_caches; indices distinct.
export fn llmts_decode_attention_rows(out: ?[*]f32, qkv: ?[*]const f32, k_caches: ?[*]f32, v_caches: ?[*]f32, cache_index: ?[*]const i32, position: ?[*]const i32, n: i32, cache_count: i32, c: i32, nh: i32, max_t: i32) callconv(.c) void {
    const call = Call.of(@src());
    const row_count = call.dim("n", n);
    call.require(row_count <= decode_max_rows, "n = {d} exceeds {d}", .{ row_count, decode_max_rows });
    const caches = call.dim("cache_count", cache_count);
    const indices = call.ids("cache_index", cache_index, row_count, caches, "cache_count");
    const positions = call.ids("position", position, row_count, call.dim("max_t", max_t), "max_t");
    for (indices, 0..) |index, i| for (indices[0..i], 0..) |earlier, j| {
        call.require(index != earlier, "rows {d} and {d} both name cache {d}", .{ j, i, index });
    };
    var last: i32 = 0;
    for (positions) |p| last = @max(last, p);
    // The shape of the row furthest in: the limits of llmts_decode_attention hold for every row.
    const s = cacheShape(call, last, 1, c, nh, max_t);
    const floats = call.elements("cache_count·max_t·c", .{ caches, s.max_t, s.c });
    const shape = decode.AttentionShape{ .pos0 = 0, .n = row_count, .c = s.c, .nh = s.nh, .max_t = s.max_t };
    decode.attentionRows(call.floats("out", out, row_count * s.c), call.constFloats("qkv", qkv, row_count * 3 * s.c), call.floats("k_caches", k_caches, floats), call.floats("v_caches", v_caches, floats), indices, positions, shape);
}
// ---- sampling ----

/// out (f64, n) = e^((logits[i] − max)·scale), the sampler's weights; scale = 1/temperature.
export fn llmts_sampling_weights(out: ?[*]f64, logits: ?[*]const f32, n: i32, scale: f64) callconv(.c) void {
    const call = Call.of(@src());
    const len = call.dim("n", n);
    call.require(scale > 0 and std.math.isFinite(scale), "scale = {d}, must be finite and > 0", .{scale});
    const weights = (out orelse call.fail("out is null", .{}))[0..len];
    sampling.weights(weights, call.constFloats("logits", logits, len), scale);
}

// ---- data parallelism on one machine ----

/// segment[self][offset .. offset+n) = Σ_r segment[r][offset .. offset+n) over the `count`
/// segments whose addresses are given (shared memory of the ranks; src/dist/node_reducer.ts). The
/// addresses come from MPI and cannot be checked here beyond being non-null and distinct; the
/// caller (src/ffi.ts) checks offset + n against the segments' length.
/// release = 1 then unmaps the other segments' pages of the range from this process (they must be
/// shared mappings: see segments.zig).
/// squares_out, when not null, receives Σ of the sums squared (float64).
export fn llmts_sum_segments(addresses: ?[*]const u64, count: i32, self_index: i32, offset: i64, n: i64, release: i32, squares_out: ?*f64) callconv(.c) void {
    const call = Call.of(@src());
    const segment_count = call.dim("count", count);
    call.require(segment_count <= segments_sum.max_segments, "count = {d} exceeds {d}", .{ segment_count, segments_sum.max_segments });
    call.require(self_index >= 0 and self_index < count, "self_index = {d}, outside [0, count = {d})", .{ self_index, count });
    call.require(offset >= 0, "offset = {d}, must be at least 0", .{offset});
    const len = call.count("n", n);
    _ = call.count("offset + n", offset + n);
    const raw = (addresses orelse call.fail("addresses is null", .{}))[0..segment_count];
    var pointers: [segments_sum.max_segments][*]f32 = undefined;
    for (raw, 0..) |address, r| {
        call.require(address != 0 and address % @alignOf(f32) == 0, "addresses[{d}] = {d} is null or misaligned", .{ r, address });
        for (raw[0..r], 0..) |earlier, q| call.require(earlier != address, "addresses[{d}] and [{d}] are the same", .{ q, r });
        pointers[r] = @ptrFromInt(address);
    }
    call.require(release == 0 or release == 1, "release = {d}, must be 0 or 1", .{release});
    const squares = segments_sum.sum(pointers[0..segment_count], @intCast(self_index), @intCast(offset), len, release == 1);
    if (squares_out) |out| out.* = squares;
}

export fn llmts_copy(dst: ?[*]f32, src: ?[*]const f32, n: i64) callconv(.c) void {
    const call = Call.of(@src());
    const len = call.count("n", n);
    decode.copy(call.floats("dst", dst, len), call.constFloats("src", src, len));
}

test {
    std.testing.refAllDecls(@This());
    _ = check;
    _ = simd;
    _ = peak;
    _ = pool;
    _ = matmul;
    _ = panel_matmul;
    _ = attention;
    _ = encoder;
    _ = layernorm;
    _ = elementwise;
    _ = gelu;
    _ = @import("vmath.zig");
    _ = softmax_xent;
    _ = adamw;
    _ = decode;
    _ = sampling;
    _ = segments_sum;
}
