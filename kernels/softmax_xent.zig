//! Fused softmax + cross-entropy over GPT-2's padded vocabulary. Logits are (BT, Vp) but only the
//! first V columns are real tokens: padded columns get probability 0 and gradient 0.
//!   forward   probs = softmax(logits[:, :V]),  losses[i] = log Σ exp(l - max) - (l[t_i] - max)
//!   backward  dlogits = (probs - onehot(t))·dloss_scale on [0, V), 0 on [V, Vp)
//! The row max is subtracted before exp, so exp never overflows; the row sum of exps is gathered
//! in float32 vectors flushed into a float64 total every block, so the loss keeps full float32
//! precision at V = 50257 (a plain float32 sum of 50k terms would lose ~3 digits in the worst case).
//! The backward reads each element before writing it, so dlogits may alias probs.
const std = @import("std");
const pool = @import("pool.zig");
const simd = @import("simd.zig");
const vmath = @import("vmath.zig");
const assert = std.debug.assert;

const vec = simd.native;
const lanes = vec.lanes;
const V = vec.V;
const load = vec.load;
const store = vec.store;
/// Vectors summed in float32 before flushing into the float64 total.
const flush_vectors = 64;

pub const Shape = struct { bt: usize, v: usize, vp: usize };

/// Writes exp(x - max) into p and returns the sum of what it wrote. x - max ≤ 0, the domain where
/// vmath.expV is accurate (3·2^-24 relative; terms below 2^-126 become 0, which cannot move a sum
/// that holds exp(0) = 1). A NaN logit, or max = +Inf, makes the sum NaN and so the loss NaN.
fn expAndSum(p: []f32, x: []const f32, max: f32) f64 {
    const m: V = @splat(max);
    var total: f64 = 0;
    var k: usize = 0;
    while (k + lanes <= x.len) {
        var acc: V = @splat(0);
        var j: usize = 0;
        while (j < flush_vectors and k + lanes <= x.len) : ({
            j += 1;
            k += lanes;
        }) {
            const e = vmath.expV(load(x, k) - m);
            store(p, k, e);
            acc += e;
        }
        total += @reduce(.Add, acc);
    }
    if (k < x.len) {
        // The tail as one vector padded with -Inf, whose exp is exactly 0.
        var tail: [lanes]f32 = @splat(-std.math.inf(f32));
        @memcpy(tail[0 .. x.len - k], x[k..]);
        const e: [lanes]f32 = vmath.expV(@as(V, tail) - m);
        @memcpy(p[k..], e[0 .. x.len - k]);
        total += @reduce(.Add, @as(V, e));
    }
    return total;
}

fn scale(p: []f32, factor: f32) void {
    const f: V = @splat(factor);
    var k: usize = 0;
    while (k + lanes <= p.len) : (k += lanes) store(p, k, load(p, k) * f);
    while (k < p.len) : (k += 1) p[k] *= factor;
}

const ForwardContext = struct {
    probs: []f32,
    losses: []f32,
    logits: []const f32,
    targets: []const i32,
    shape: Shape,
    fn task(self: *const ForwardContext, row: usize) void {
        const s = self.shape;
        const x = self.logits[row * s.vp ..][0..s.v];
        const p = self.probs[row * s.vp ..][0..s.vp];
        const target: usize = @intCast(self.targets[row]);
        assert(target < s.v);
        const max = vmath.maxOf(x);
        const total = expAndSum(p[0..s.v], x, max);
        scale(p[0..s.v], @floatCast(1 / total));
        @memset(p[s.v..], 0);
        const loss = @log(total) - (@as(f64, x[target]) - max);
        self.losses[row] = @floatCast(loss);
    }
};

pub fn forward(probs: []f32, losses: []f32, logits: []const f32, targets: []const i32, shape: Shape) void {
    assert(shape.bt > 0 and shape.v > 0 and shape.v <= shape.vp);
    assert(probs.len == shape.bt * shape.vp and logits.len == shape.bt * shape.vp);
    assert(losses.len == shape.bt and targets.len == shape.bt);
    const context = ForwardContext{ .probs = probs, .losses = losses, .logits = logits, .targets = targets, .shape = shape };
    pool.parallelFor(ForwardContext, &context, shape.bt, ForwardContext.task);
}

const BackwardContext = struct {
    dlogits: [*]f32,
    probs: [*]const f32,
    targets: []const i32,
    dloss_scale: f32,
    shape: Shape,
    fn task(self: *const BackwardContext, row: usize) void {
        const s = self.shape;
        const d = self.dlogits[row * s.vp ..][0..s.vp];
        const p = self.probs[row * s.vp ..][0..s.vp];
        const target: usize = @intCast(self.targets[row]);
        assert(target < s.v);
        // Read before the loop overwrites it when dlogits aliases probs.
        const p_target = p[target];
        const f: V = @splat(self.dloss_scale);
        var k: usize = 0;
        while (k + lanes <= s.v) : (k += lanes) store(d, k, load(p, k) * f);
        while (k < s.v) : (k += 1) d[k] = p[k] * self.dloss_scale;
        d[target] = (p_target - 1) * self.dloss_scale;
        @memset(d[s.v..], 0);
    }
};

/// dlogits and probs may be the same array (pointers, not slices, so nothing assumes no-alias).
pub fn backward(dlogits: [*]f32, probs: [*]const f32, targets: []const i32, dloss_scale: f32, shape: Shape) void {
    assert(shape.bt > 0 and shape.v > 0 and shape.v <= shape.vp);
    assert(targets.len == shape.bt);
    const context = BackwardContext{ .dlogits = dlogits, .probs = probs, .targets = targets, .dloss_scale = dloss_scale, .shape = shape };
    pool.parallelFor(BackwardContext, &context, shape.bt, BackwardContext.task);
}

test "softmax cross-entropy: padded columns, float64 loss, in-place backward" {
    const gpa = std.testing.allocator;
    var prng = std.Random.DefaultPrng.init(11);
    const random = prng.random();
    try pool.init(2);
    defer pool.deinit();
    for ([_]Shape{ .{ .bt = 1, .v = 1, .vp = 1 }, .{ .bt = 3, .v = 5, .vp = 8 }, .{ .bt = 7, .v = 1001, .vp = 1024 }, .{ .bt = 2, .v = 50257, .vp = 50304 } }) |s| {
        const logits = try gpa.alloc(f32, s.bt * s.vp);
        defer gpa.free(logits);
        const probs = try gpa.alloc(f32, s.bt * s.vp);
        defer gpa.free(probs);
        const losses = try gpa.alloc(f32, s.bt);
        defer gpa.free(losses);
        const targets = try gpa.alloc(i32, s.bt);
        defer gpa.free(targets);
        for (logits, 0..) |*x, i| x.* = if (i % s.vp < s.v) random.floatNorm(f32) * 4 + 30 else 1e30;
        for (targets) |*t| t.* = @intCast(random.uintLessThan(usize, s.v));
        forward(probs, losses, logits, targets, s);
        for (0..s.bt) |row| {
            const x = logits[row * s.vp ..][0..s.vp];
            var max: f64 = -std.math.inf(f64);
            for (x[0..s.v]) |l| max = @max(max, l);
            var total: f64 = 0;
            for (x[0..s.v]) |l| total += @exp(@as(f64, l) - max);
            const t: usize = @intCast(targets[row]);
            const want_loss = @log(total) - (x[t] - max);
            try std.testing.expectApproxEqAbs(want_loss, losses[row], 1e-6 * (1 + want_loss));
            var prob_sum: f64 = 0;
            for (probs[row * s.vp ..][0..s.vp], 0..) |p, c| {
                if (c >= s.v) try std.testing.expectEqual(@as(f32, 0), p);
                prob_sum += p;
            }
            try std.testing.expectApproxEqAbs(@as(f64, 1), prob_sum, 1e-5);
        }
        const expected = try gpa.alloc(f32, s.bt * s.vp);
        defer gpa.free(expected);
        for (expected, probs, 0..) |*e, p, i| {
            const c = i % s.vp;
            const onehot: f32 = if (c == @as(usize, @intCast(targets[i / s.vp]))) 1 else 0;
            e.* = if (c < s.v) (p - onehot) * 0.25 else 0;
        }
        backward(probs.ptr, probs.ptr, targets, 0.25, s);
        for (expected, probs) |e, d| try std.testing.expectEqual(e, d);
    }
}

test "softmax cross-entropy: a NaN or +Inf logit gives a NaN loss, not a silent number" {
    try pool.init(1);
    defer pool.deinit();
    const s = Shape{ .bt = 2, .v = 11, .vp = 16 };
    var logits: [32]f32 = @splat(0.5);
    logits[3] = std.math.nan(f32);
    logits[16 + 9] = std.math.inf(f32);
    var probs: [32]f32 = undefined;
    var losses: [2]f32 = undefined;
    forward(&probs, &losses, &logits, &[_]i32{ 0, 0 }, s);
    try std.testing.expect(std.math.isNan(losses[0]) and std.math.isNan(losses[1]));
}
