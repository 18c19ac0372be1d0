//! The sampler's weights: w[i] = e^((logit[i] − max)·scale) over one row of V logits, in double
//! precision (scale = 1/temperature). src/infer/sampling.ts sums and walks them in id order to
//! draw a token; computing them was most of a draw's time in JavaScript (0.3 of 0.4 ms for 50k
//! tokens), and a decode pass of 8 sequences draws 8 times.
//! Deterministic: every weight is a function of its logit, the row's max and scale alone.
const std = @import("std");
const pool = @import("pool.zig");
const vmath = @import("vmath.zig");
const assert = std.debug.assert;

const f64_lanes = vmath.f64_lanes;
const VF64 = vmath.VF64;

/// Weights per task: 2 tasks per thread for GPT-2's 50257 tokens on 2 threads.
const chunk = 1 << 13;

const WeightsContext = struct {
    out: []f64,
    logits: []const f32,
    max: f64,
    scale: f64,
    fn task(self: *const WeightsContext, index: usize) void {
        const begin = index * chunk;
        const end = @min(self.out.len, begin + chunk);
        const max: VF64 = @splat(self.max);
        const scale: VF64 = @splat(self.scale);
        var i = begin;
        while (i + f64_lanes <= end) : (i += f64_lanes) {
            const x: @Vector(f64_lanes, f32) = self.logits[i..][0..f64_lanes].*;
            // (logit − max)·scale in double, as JavaScript computes it.
            self.out[i..][0..f64_lanes].* = vmath.expF64V((@as(VF64, x) - max) * scale);
        }
        while (i < end) : (i += 1) {
            var one: VF64 = @splat(0);
            one[0] = (@as(f64, self.logits[i]) - self.max) * self.scale;
            self.out[i] = vmath.expF64V(one)[0];
        }
    }
};

/// out[i] = e^((logits[i] − max(logits))·scale); scale > 0 and finite, logits finite.
pub fn weights(out: []f64, logits: []const f32, scale: f64) void {
    assert(out.len == logits.len and out.len > 0);
    assert(scale > 0 and std.math.isFinite(scale));
    const context = WeightsContext{ .out = out, .logits = logits, .max = vmath.maxOf(logits), .scale = scale };
    pool.parallelFor(WeightsContext, &context, std.math.divCeil(usize, out.len, chunk) catch unreachable, WeightsContext.task);
}

test "weights: e^((l − max)·scale) for lengths around the vector width and the chunk" {
    try pool.init(2);
    defer pool.deinit();
    const gpa = std.testing.allocator;
    var prng = std.Random.DefaultPrng.init(9);
    for ([_]usize{ 1, 7, 8, 9, chunk + 3, 3 * chunk }) |n| {
        const logits = try gpa.alloc(f32, n);
        defer gpa.free(logits);
        const out = try gpa.alloc(f64, n);
        defer gpa.free(out);
        for (logits) |*l| l.* = (prng.random().float(f32) - 0.5) * 40;
        const scale = 1.0 / 0.7;
        weights(out, logits, scale);
        var max: f64 = -std.math.inf(f64);
        for (logits) |l| max = @max(max, l);
        for (logits, out) |l, got| {
            const want = @exp((@as(f64, l) - max) * scale);
            try std.testing.expectApproxEqRel(want, got, 4 * std.math.floatEps(f64) / 2);
        }
    }
}
