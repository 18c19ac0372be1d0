//! AdamW with the exact operation order of torch.optim.AdamW (single-tensor path, no amsgrad), one
//! rounding per PyTorch tensor op, no FMA contraction:
//!   p = p·decay                     decay = 1 - lr·weight_decay
//!   m = m·β1 + (1-β1)·g
//!   v = v·β2 + ((1-β2)·g)·g         (addcmul: value·t1·t2)
//!   denom = sqrt(v) / bc2_sqrt + eps
//!   p = p + (-step_size·m) / denom  (addcdiv: value·t1/t2),  step_size = lr / bc1
//! g = grads·grad_scale. The scalar coefficients are computed in float64 by the caller (as Python
//! does) and arrive rounded to float32, as PyTorch rounds them when it applies them to a float32
//! tensor. Memory-bound (7 streams of n floats), so fixed chunks over the pool.
//!
//! gradNormSquared: Σ g² in float64 over a fixed partition into `norm_chunks` chunks whose partial
//! sums are combined in index order, so the result does not depend on the thread count.
const std = @import("std");
const pool = @import("pool.zig");
const simd = @import("simd.zig");
const assert = std.debug.assert;

const vec = simd.native;
const lanes = vec.lanes;
const V = vec.V;
const load = vec.load;
const store = vec.store;
const V64 = @Vector(lanes, f64);
/// Elements per AdamW task: 7 streams × 128 KiB stays inside L2 per core.
const adamw_chunk = 1 << 15;
/// Fixed number of partial sums of the grad norm (the partition depends only on n).
const norm_chunks = 256;

pub const Coefficients = struct {
    decay: f32,
    beta1: f32,
    one_minus_beta1: f32,
    beta2: f32,
    one_minus_beta2: f32,
    bc2_sqrt: f32,
    eps: f32,
    neg_step_size: f32,
    grad_scale: f32,
};

const UpdateContext = struct {
    params: []f32,
    grads: []const f32,
    m: []f32,
    v: []f32,
    k: Coefficients,
    fn task(self: *const UpdateContext, task_index: usize) void {
        const n = self.params.len;
        const start = task_index * adamw_chunk;
        const end = @min(n, start + adamw_chunk);
        var i = start;
        while (i + lanes <= end) : (i += lanes) self.updateVector(i);
        while (i < end) : (i += 1) self.updateScalar(i);
    }
    fn updateVector(self: *const UpdateContext, i: usize) void {
        const k = self.k;
        const g = load(self.grads, i) * @as(V, @splat(k.grad_scale));
        const p = load(self.params, i) * @as(V, @splat(k.decay));
        const m = load(self.m, i) * @as(V, @splat(k.beta1)) + @as(V, @splat(k.one_minus_beta1)) * g;
        const v = load(self.v, i) * @as(V, @splat(k.beta2)) + @as(V, @splat(k.one_minus_beta2)) * g * g;
        const denom = @sqrt(v) / @as(V, @splat(k.bc2_sqrt)) + @as(V, @splat(k.eps));
        store(self.params, i, p + @as(V, @splat(k.neg_step_size)) * m / denom);
        store(self.m, i, m);
        store(self.v, i, v);
    }
    fn updateScalar(self: *const UpdateContext, i: usize) void {
        const k = self.k;
        const g = self.grads[i] * k.grad_scale;
        const p = self.params[i] * k.decay;
        const m = self.m[i] * k.beta1 + k.one_minus_beta1 * g;
        const v = self.v[i] * k.beta2 + k.one_minus_beta2 * g * g;
        const denom = @sqrt(v) / k.bc2_sqrt + k.eps;
        self.params[i] = p + k.neg_step_size * m / denom;
        self.m[i] = m;
        self.v[i] = v;
    }
};

pub fn update(params: []f32, grads: []const f32, m: []f32, v: []f32, k: Coefficients) void {
    assert(params.len > 0 and grads.len == params.len and m.len == params.len and v.len == params.len);
    assert(k.bc2_sqrt > 0 and k.eps > 0);
    const context = UpdateContext{ .params = params, .grads = grads, .m = m, .v = v, .k = k };
    pool.parallelFor(UpdateContext, &context, std.math.divCeil(usize, params.len, adamw_chunk) catch unreachable, UpdateContext.task);
}

const NormContext = struct {
    grads: []const f32,
    chunk: usize,
    partials: *[norm_chunks]f64,
    fn task(self: *const NormContext, task_index: usize) void {
        const start = task_index * self.chunk;
        const end = @min(self.grads.len, start + self.chunk);
        var acc: V64 = @splat(0);
        var i = start;
        while (i + lanes <= end) : (i += lanes) {
            const g: V64 = load(self.grads, i);
            acc += g * g;
        }
        var total = @reduce(.Add, acc);
        while (i < end) : (i += 1) total += @as(f64, self.grads[i]) * self.grads[i];
        self.partials[task_index] = total;
    }
};

pub fn gradNormSquared(grads: []const f32) f64 {
    assert(grads.len > 0);
    // Chunks are whole vectors, so only the last chunk has a scalar tail.
    const chunk = std.mem.alignForward(usize, std.math.divCeil(usize, grads.len, norm_chunks) catch unreachable, lanes);
    const count = std.math.divCeil(usize, grads.len, chunk) catch unreachable;
    assert(count <= norm_chunks);
    var partials: [norm_chunks]f64 = undefined;
    const context = NormContext{ .grads = grads, .chunk = chunk, .partials = &partials };
    pool.parallelFor(NormContext, &context, count, NormContext.task);
    var total: f64 = 0;
    for (partials[0..count]) |p| total += p;
    return total;
}

test "adamw: one step by hand, scalar tail equals vector body, and grad norm" {
    const gpa = std.testing.allocator;
    try pool.init(2);
    defer pool.deinit();
    const n = 2 * adamw_chunk + 13;
    const buf = try gpa.alloc(f32, 4 * n);
    defer gpa.free(buf);
    const p, const g, const m, const v = .{ buf[0..n], buf[n .. 2 * n], buf[2 * n .. 3 * n], buf[3 * n ..] };
    // Same inputs everywhere: every element (vector body or scalar tail) must end bit-identical.
    @memset(p, 0.5);
    @memset(g, 0.25);
    @memset(m, 0);
    @memset(v, 0);
    const lr: f64 = 1e-2;
    const b1: f64 = 0.9;
    const b2: f64 = 0.999;
    const k = Coefficients{ .decay = @floatCast(1 - lr * 0.1), .beta1 = @floatCast(b1), .one_minus_beta1 = @floatCast(1 - b1), .beta2 = @floatCast(b2), .one_minus_beta2 = @floatCast(1 - b2), .bc2_sqrt = @floatCast(@sqrt(1 - b2)), .eps = 1e-8, .neg_step_size = @floatCast(-lr / (1 - b1)), .grad_scale = 2 };
    update(p, g, m, v, k);
    // Step 1 of Adam moves each parameter by ≈ lr·sign(g), after the decay: 0.5·(1-1e-3) - 1e-2.
    for (p) |x| try std.testing.expectApproxEqAbs(@as(f32, 0.5 * (1 - 1e-3) - 1e-2), x, 1e-6);
    for (p[1..]) |x| try std.testing.expectEqual(p[0], x);
    for (m) |x| try std.testing.expectApproxEqAbs(@as(f32, 0.05), x, 1e-8);
    for (v) |x| try std.testing.expectApproxEqAbs(@as(f32, 0.00025), x, 1e-10);

    for (g, 0..) |*x, i| x.* = @as(f32, @floatFromInt(i % 7)) - 3;
    var want: f64 = 0;
    for (g) |x| want += @as(f64, x) * x;
    try std.testing.expectEqual(want, gradNormSquared(g));
    try std.testing.expectEqual(@as(f64, 4), gradNormSquared(&[_]f32{2}));
}
