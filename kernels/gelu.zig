//! GELU with GPT-2's tanh approximation (Hugging Face `gelu_new`):
//!   gelu(x) = 0.5·x·(1 + tanh(z/2)),  z = 2·√(2/π)·(x + 0.044715·x³)
//! Since 0.5·(1 + tanh(z/2)) = sigmoid(z), we compute gelu(x) = x·sigmoid(z) and
//!   gelu'(x) = sigmoid(z) + x·sigmoid(z)·(1 - sigmoid(z))·dz/dx.
//! The sigmoid (vmath.sigmoidV: a vector polynomial exp, not a libm call per lane) goes through
//! t = exp(-|z|) ∈ [0, 1], so no intermediate overflows: for |z| > 87.33 (|x| ≳ 10) t is flushed
//! to 0 and the result is exactly x or -0 (forward), 1 or 0 (backward); the terms dropped are below
//! 1e-35 in absolute value. llm.c's 1/cosh² form overflowed to Inf·0 = NaN there under fast-math.
//! The backward clamps x to ±clamp_x first: beyond it gelu' is exactly 0 or 1 in f32 anyway
//! (|z| > 600, so t = 0), and the clamp keeps x·dz/dx finite (it would overflow for |x| > ~1e12).
//! NaN inputs give NaN.
const std = @import("std");
const pool = @import("pool.zig");
const simd = @import("simd.zig");
const elementwise = @import("elementwise.zig");
const vmath = @import("vmath.zig");
const assert = std.debug.assert;

const vec = simd.native;
const lanes = vec.lanes;
const V = vec.V;
const load = vec.load;
const store = vec.store;
const sqrt_2_over_pi: f32 = 0.7978845608028654;
const cubic: f32 = 0.044715;
const clamp_x: f32 = 20;

const splat = vec.splat;

fn geluVector(x: V) V {
    const z = splat(2 * sqrt_2_over_pi) * (x + splat(cubic) * x * x * x);
    return x * vmath.sigmoidV(z).s;
}

fn geluGradVector(x_raw: V) V {
    const x = @min(@max(x_raw, splat(-clamp_x)), splat(clamp_x));
    const x2 = x * x;
    const z = splat(2 * sqrt_2_over_pi) * (x + splat(cubic) * x2 * x);
    const dz_dx = splat(2 * sqrt_2_over_pi) * (splat(1) + splat(3 * cubic) * x2);
    const sig = vmath.sigmoidV(z);
    const grad = sig.s + x * sig.slope * dz_dx;
    return @select(f32, x_raw == x_raw, grad, x_raw);
}

/// Loads a partial vector from the tail of a chunk, padding with zeros (gelu(0) = 0 is harmless).
fn loadTail(s: []const f32, at: usize, end: usize) V {
    var v: [lanes]f32 = @splat(0);
    for (at..end, 0..) |k, j| v[j] = s[k];
    return v;
}

const ForwardContext = struct {
    out: []f32,
    inp: []const f32,
    fn task(self: *const ForwardContext, task_index: usize) void {
        const r = elementwise.chunkRange(self.inp.len, task_index);
        var k = r.start;
        while (k + lanes <= r.end) : (k += lanes) store(self.out, k, geluVector(load(self.inp, k)));
        if (k < r.end) {
            const y: [lanes]f32 = geluVector(loadTail(self.inp, k, r.end));
            for (k..r.end, 0..) |i, j| self.out[i] = y[j];
        }
    }
};

pub fn forward(out: []f32, inp: []const f32) void {
    assert(inp.len > 0 and out.len == inp.len);
    const context = ForwardContext{ .out = out, .inp = inp };
    pool.parallelFor(ForwardContext, &context, elementwise.chunkCount(inp.len), ForwardContext.task);
}

const BackwardContext = struct {
    dinp: []f32,
    inp: []const f32,
    dout: []const f32,
    fn task(self: *const BackwardContext, task_index: usize) void {
        const r = elementwise.chunkRange(self.inp.len, task_index);
        var k = r.start;
        while (k + lanes <= r.end) : (k += lanes) {
            store(self.dinp, k, load(self.dinp, k) + load(self.dout, k) * geluGradVector(load(self.inp, k)));
        }
        if (k < r.end) {
            const g: [lanes]f32 = geluGradVector(loadTail(self.inp, k, r.end));
            for (k..r.end, 0..) |i, j| self.dinp[i] += self.dout[i] * g[j];
        }
    }
};

pub fn backward(dinp: []f32, inp: []const f32, dout: []const f32) void {
    assert(inp.len > 0 and dinp.len == inp.len and dout.len == inp.len);
    const context = BackwardContext{ .dinp = dinp, .inp = inp, .dout = dout };
    pool.parallelFor(BackwardContext, &context, elementwise.chunkCount(inp.len), BackwardContext.task);
}

fn referenceGelu(x: f64) f64 {
    return 0.5 * x * (1 + std.math.tanh(sqrt_2_over_pi * (x + cubic * x * x * x)));
}

fn referenceGeluGrad(x: f64) f64 {
    const u = sqrt_2_over_pi * (x + cubic * x * x * x);
    const th = std.math.tanh(u);
    return 0.5 * (1 + th) + 0.5 * x * (1 - th * th) * sqrt_2_over_pi * (1 + 3 * cubic * x * x);
}

test "gelu forward and backward against float64 tanh formulas, including large |x|" {
    const xs = [_]f32{ 0, 1e-8, -1e-8, 0.5, -0.5, 1, -1, 2.5, -2.5, 3, -3, 5, -5, 8, -8, 10, -10, 11.5, -11.5, 20, -20, 50, -50, 1e4, -1e4, 1e13, -1e13, 3e38, -3e38 };
    var out: [xs.len]f32 = undefined;
    var dinp: [xs.len]f32 = @splat(0);
    var dout: [xs.len]f32 = @splat(1);
    try pool.init(2);
    defer pool.deinit();
    forward(&out, &xs);
    backward(&dinp, &xs, &dout);
    for (xs, out, dinp) |x, y, g| {
        try std.testing.expect(std.math.isFinite(y) and std.math.isFinite(g));
        const x64: f64 = x;
        const want_y = if (@abs(x64) < 100) referenceGelu(x64) else if (x64 > 0) x64 else 0;
        const want_g = if (@abs(x64) < 100) referenceGeluGrad(x64) else if (x64 > 0) @as(f64, 1) else 0;
        try std.testing.expectApproxEqAbs(want_y, y, 1e-6 * (1 + @abs(want_y)));
        try std.testing.expectApproxEqAbs(want_g, g, 2e-6);
    }
    const nan = [_]f32{std.math.nan(f32)};
    var g_nan = [_]f32{0};
    backward(&g_nan, &nan, &[_]f32{1});
    try std.testing.expect(std.math.isNan(g_nan[0]));
    var y_nan = [_]f32{0};
    forward(&y_nan, &nan);
    try std.testing.expect(std.math.isNan(y_nan[0]));
}
