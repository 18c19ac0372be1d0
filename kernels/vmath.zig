//! Vector transcendental functions on simd.zig's vectors, shared by the kernels. @exp on a vector is
//! lowered by LLVM to one libm call per lane (~10× slower than the polynomial below), so the hot
//! loops (softmax, attention, GELU) use these instead.
const std = @import("std");
const simd = @import("simd.zig");

const vec = simd.native;
const lanes = vec.lanes;
const V = vec.V;
const splat = vec.splat;

/// e^x for a vector, with a relative error below 3·2^-24 on [-87.33, 88] (tested). e^x = 2^n·e^r
/// with n = round(x·log2 e) and r = x − n·ln 2 (ln 2 split in two constants so n·ln2_hi is exact),
/// e^r by its degree-7 Taylor polynomial (truncation error below 1e-8 on |r| ≤ ln2/2).
/// Edges: results below 2^-126 (x < -87.33, and -Inf) are flushed to 0, because every caller
/// weighs them against a sum or a 1 that they cannot move; x > 88 (+Inf included) saturates at
/// ~e^88 instead of overflowing: callers only pass x ≤ 0. NaN gives NaN.
pub fn expV(x: V) V {
    // @min/@max return the non-NaN operand, so NaN lanes are clamped to a bound here (keeping
    // @intFromFloat defined) and restored at the end.
    const clamped = @min(@max(x, splat(-88.0)), splat(88.0));
    const n = @floor(clamped * splat(std.math.log2e) + splat(0.5));
    const ln2_hi = splat(0.693359375); // 9 significant bits: n·ln2_hi is exact for |n| ≤ 2^15
    const ln2_lo = splat(-2.12194440e-4);
    const r = @mulAdd(V, -n, ln2_lo, @mulAdd(V, -n, ln2_hi, clamped));
    var p = splat(1.0 / 5040.0);
    p = @mulAdd(V, p, r, splat(1.0 / 720.0));
    p = @mulAdd(V, p, r, splat(1.0 / 120.0));
    p = @mulAdd(V, p, r, splat(1.0 / 24.0));
    p = @mulAdd(V, p, r, splat(1.0 / 6.0));
    p = @mulAdd(V, p, r, splat(0.5));
    p = @mulAdd(V, p, r, splat(1.0));
    p = @mulAdd(V, p, r, splat(1.0));
    const I = @Vector(lanes, i32);
    const exponent: I = @as(I, @intFromFloat(n)) + @as(I, @splat(127));
    const zero: I = @splat(0);
    const biased: I = @select(i32, exponent < zero, zero, exponent);
    const two_n: V = @bitCast(biased << @as(@Vector(lanes, u5), @splat(23)));
    const e = @select(f32, x < splat(-87.33), splat(0), p * two_n);
    return @select(f32, x != x, x, e);
}

pub fn expScalar(x: f32) f32 {
    return expV(@splat(x))[0];
}

/// The largest element of x (−Inf when empty); x must hold no NaN.
pub fn maxOf(x: []const f32) f32 {
    var acc: V = splat(-std.math.inf(f32));
    var k: usize = 0;
    while (k + lanes <= x.len) : (k += lanes) acc = @max(acc, vec.load(x, k));
    var m = @reduce(.Max, acc);
    while (k < x.len) : (k += 1) m = @max(m, x[k]);
    return m;
}

/// Lanes of expF64V's vector: one zmm register with AVX-512, two ymm with AVX2.
pub const f64_lanes = 8;
pub const VF64 = @Vector(f64_lanes, f64);

/// e^x in double precision, for the sampler's weights (JavaScript computes its reference with
/// Math.exp; LLVM would call libm per lane). Relative error below 4·2^-53 on [-708, 709] (tested):
/// as expV, e^x = 2^n·e^r with ln 2 in two parts (ln2_hi has 21 trailing zero bits, so n·ln2_hi is
/// exact), e^r by its degree-13 Taylor polynomial (truncation below 5e-18 on |r| ≤ ln2/2).
/// Edges: x < -708 (results near or below the smallest normal double, 2.2e-308; -Inf included)
/// gives 0; x > 709 saturates at ~e^709; NaN gives NaN.
pub fn expF64V(x: VF64) VF64 {
    const S = struct {
        inline fn s(v: f64) VF64 {
            return @splat(v);
        }
    };
    const s = S.s;
    const clamped = @min(@max(x, s(-708.0)), s(709.0));
    const n = @floor(clamped * s(std.math.log2e) + s(0.5));
    const ln2_hi = s(6.93147180369123816490e-01);
    const ln2_lo = s(1.90821492927058770002e-10);
    const r = @mulAdd(VF64, -n, ln2_lo, @mulAdd(VF64, -n, ln2_hi, clamped));
    var p = s(1.0 / 6227020800.0);
    inline for ([_]f64{ 479001600.0, 39916800.0, 3628800.0, 362880.0, 40320.0, 5040.0, 720.0, 120.0, 24.0, 6.0, 2.0, 1.0, 1.0 }) |factorial| {
        p = @mulAdd(VF64, p, r, s(1.0 / factorial));
    }
    const I = @Vector(f64_lanes, i64);
    const biased: I = @as(I, @intFromFloat(n)) + @as(I, @splat(1023));
    const two_n: VF64 = @bitCast(biased << @as(@Vector(f64_lanes, u6), @splat(52)));
    const e = @select(f64, x < s(-708.0), s(0), p * two_n);
    return @select(f64, x != x, x, e);
}

/// sigmoid(z) = 1/(1 + e^-z) and its derivative sigmoid(z)·(1 − sigmoid(z)).
pub const Sigmoid = struct { s: V, slope: V };

/// Goes through t = e^-|z| ∈ [0, 1], so nothing overflows for any z (±Inf included): for
/// z ≥ 0, s = 1/(1+t); for z < 0, s = t/(1+t); slope = t/(1+t)². Relative errors, to first
/// order: t carries 3·2^-24, then 1+t, the division and each product one rounding, so s is within
/// 6·2^-24 and slope within 9·2^-24 (tested; observed 2.7 and 5.0). |z| > 87.33 flushes t to 0,
/// so s is exactly 1 or 0 and slope exactly 0 there (true values below 1.2e-38). NaN → NaN.
pub fn sigmoidV(z: V) Sigmoid {
    const t = expV(-@abs(z));
    const inv = splat(1) / (splat(1) + t);
    const s = @select(f32, z >= splat(0), inv, t * inv);
    return .{ .s = s, .slope = t * inv * inv };
}

const testing = std.testing;

/// Eight test values in the first lanes of a vector (the rest 0), whatever the width.
fn firstLanes(values: [8]f32) V {
    var all: [lanes]f32 = @splat(0);
    @memcpy(all[0..8], &values);
    return all;
}
const unit_roundoff: f64 = std.math.floatEps(f32) / 2; // 2^-24, the float32 unit roundoff

test "expV is within 3·2^-24 of exp on [-87, 10] and flushes below" {
    var x: f32 = -87;
    var worst: f64 = 0;
    while (x < 10) : (x += 0.01237) {
        const got: f64 = expScalar(x);
        const want = @exp(@as(f64, x));
        worst = @max(worst, @abs(got - want) / want);
    }
    try testing.expect(worst < 3 * unit_roundoff);
    try testing.expectEqual(@as(f32, 0), expScalar(-100));
    try testing.expectEqual(@as(f32, 0), expScalar(-std.math.inf(f32)));
    try testing.expectEqual(@as(f32, 1), expScalar(0));
}

test "expV: NaN propagates in its own lane only, large x saturates finitely" {
    const nan = std.math.nan(f32);
    const got: [lanes]f32 = expV(firstLanes(.{ nan, 0, -nan, 1, -std.math.inf(f32), 2, 1e30, std.math.inf(f32) }));
    try testing.expect(std.math.isNan(got[0]) and std.math.isNan(got[2]));
    try testing.expectEqual(@as(f32, 1), got[1]);
    try testing.expectEqual(@as(f32, 0), got[4]);
    try testing.expectApproxEqRel(@as(f32, std.math.e), got[3], 3 * unit_roundoff);
    try testing.expectApproxEqRel(@as(f32, std.math.e * std.math.e), got[5], 3 * unit_roundoff);
    try testing.expect(std.math.isFinite(got[6]) and std.math.isFinite(got[7]));
}

test "expF64V is within 4·2^-53 of exp on [-708, 709], 0 below, NaN → NaN" {
    var x: f64 = -708;
    var worst: f64 = 0;
    while (x < 709) : (x += 0.0123457) {
        const got = expF64V(@splat(x))[0];
        const want = @exp(x);
        worst = @max(worst, @abs(got - want) / want);
    }
    // Near 0, where the sampler's weights of the likeliest tokens fall, on a finer grid.
    x = -1;
    while (x <= 0) : (x += 1.0 / 4096.0) {
        const got = expF64V(@splat(x))[0];
        worst = @max(worst, @abs(got - @exp(x)) / @exp(x));
    }
    try testing.expect(worst < 4 * std.math.floatEps(f64) / 2);
    try testing.expectEqual(@as(f64, 1), expF64V(@splat(0))[0]);
    try testing.expectEqual(@as(f64, 0), expF64V(@splat(-709))[0]);
    try testing.expectEqual(@as(f64, 0), expF64V(@splat(-std.math.inf(f64)))[0]);
    try testing.expect(std.math.isNan(expF64V(@splat(std.math.nan(f64)))[0]));
}

fn referenceSigmoid(z: f64) f64 {
    return if (z >= 0) 1 / (1 + @exp(-z)) else @exp(z) / (1 + @exp(z));
}

test "sigmoidV is within 6·2^-24 (slope 9·2^-24) on [-87, 87], exact at the ends, NaN → NaN" {
    var z: f32 = -87;
    var worst_s: f64 = 0;
    var worst_slope: f64 = 0;
    while (z < 87) : (z += 0.00731) {
        const got = sigmoidV(@splat(z));
        const want = referenceSigmoid(z);
        worst_s = @max(worst_s, @abs(got.s[0] - want) / want);
        // e^-|z|/(1 + e^-|z|)², which unlike s·(1 − s) loses no digits to cancellation.
        const t = @exp(-@abs(@as(f64, z)));
        const want_slope = t / ((1 + t) * (1 + t));
        worst_slope = @max(worst_slope, @abs(got.slope[0] - want_slope) / want_slope);
    }
    try testing.expect(worst_s < 6 * unit_roundoff);
    try testing.expect(worst_slope < 9 * unit_roundoff);
    const inf = std.math.inf(f32);
    const ends = sigmoidV(firstLanes(.{ inf, -inf, 3e38, -3e38, 1e4, -1e4, 88, std.math.nan(f32) }));
    const s: [lanes]f32 = ends.s;
    const slope: [lanes]f32 = ends.slope;
    for ([_]f32{ 1, 0, 1, 0, 1, 0, 1 }, s[0..7], slope[0..7]) |want, got, got_slope| {
        try testing.expectEqual(want, got);
        try testing.expectEqual(@as(f32, 0), got_slope);
    }
    try testing.expect(std.math.isNan(s[7]) and std.math.isNan(slope[7]));
    try testing.expectEqual(@as(f32, 0.5), sigmoidV(@splat(0)).s[0]);
}
