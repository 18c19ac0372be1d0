//! Matmul for the three layouts of a linear layer, with llm.c's conventions (row-major):
//!   forward      out(BT,OC)  = inp(BT,C) · W(OC,C)ᵀ + bias(OC)          (NT)
//!   input grad   dinp(BT,C) += dout(BT,OC) · W(OC,C)                    (NN)
//!   weight grad  dW(OC,C)   += dout(BT,OC)ᵀ · inp(BT,C),   dbias(OC) += Σ_rows dout   (TN)
//! All three go through the packed GEMM in gemm.zig, addressed by strides, except the forward with
//! few rows (generation: one row per decode step, a few per prefill chunk), which is memory-bound:
//! forwardSmall streams W once instead of packing it. forward() is the one place that chooses;
//! forwardPrepacked() the same for inference, whose weights are also packed once at load time
//! (panel_matmul.zig) for the few-row calls.
//! Every output element has one fixed reduction order, so results are bit-identical for repeated
//! calls and for any thread count.
const std = @import("std");
const pool = @import("pool.zig");
const gemm = @import("gemm.zig");
const panel_matmul = @import("panel_matmul.zig");
const simd = @import("simd.zig");
const assert = std.debug.assert;

const vec = simd.native;
const lanes = vec.lanes;
const V = vec.V;
const load = vec.load;
const store = vec.store;

/// Forward calls with at most this many rows take the weight-streaming path, one row included.
/// Measured (Intel Xeon with AVX-512, d12's fc and lm_head shapes, weights out of cache,
/// in-process A/B): forwardSmall beats the GEMM by 1.4–2.9× up to 16 rows and 1.12–1.17× at 24
/// and 32 rows, on 1 and 2 threads; they are even at 48 to 64 rows. At one row it beat a
/// dedicated one-W-row-at-a-time matvec (decode.zig's before) by 20–35%: on this CPU four
/// interleaved W rows sharing each load of x stream faster than one. (That matvec had measured
/// the other way, 35 against 26 GB/s on one core, on the AMD Zen 5 machine it was written on:
/// re-measure there before adding a one-row path back.)
pub const small_rows_max = 32;

/// The precision of the packed GEMM for every layout (setPrecision; fp32 by default). The few-row
/// forward stays fp32: it streams the weights once, bound by memory, not by multiplies.
var precision: gemm.Precision = .fp32;

/// Sets the GEMM precision; false (and no change) when bf16 cannot run on this build or CPU.
pub fn setPrecision(wanted: gemm.Precision) bool {
    if (wanted == .bf16 and !gemm.bf16Available()) return false;
    precision = wanted;
    return true;
}

pub fn currentPrecision() gemm.Precision {
    return precision;
}

pub fn forward(out: []f32, inp: []const f32, weight: []const f32, bias: ?[]const f32, bt: usize, c: usize, oc: usize) void {
    assert(bt > 0 and c > 0 and oc > 0);
    assert(out.len == bt * oc and inp.len == bt * c and weight.len == oc * c);
    if (bias) |b| assert(b.len == oc);
    if (bt <= small_rows_max) return forwardSmall(out, inp, weight, bias, bt, c, oc);
    const problem = gemm.Problem{
        .m = bt,
        .n = oc,
        .k = c,
        .a = .{ .ptr = inp.ptr, .row_stride = c, .k_stride = 1 },
        .b = .{ .ptr = weight.ptr, .row_stride = c, .k_stride = 1 },
        .c = out.ptr,
        .ldc = oc,
        .accumulate = false,
        .bias = if (bias) |b| b.ptr else null,
        .precision = precision,
    };
    gemm.run(&problem);
}

/// forward() for a weight that also exists packed (panel_matmul.pack): up to small_rows_max rows
/// take the packed panels (one FMA chain per output whatever the row count), more rows the GEMM
/// on W as it is, at the GEMM's precision.
pub fn forwardPrepacked(out: []f32, inp: []const f32, weight: []const f32, packed_weight: []const f32, bias: ?[]const f32, bt: usize, c: usize, oc: usize) void {
    assert(packed_weight.len == panel_matmul.packedFloats(c, oc));
    if (bt <= small_rows_max) return panel_matmul.forward(out, inp, packed_weight, bias, bt, c, oc);
    forward(out, inp, weight, bias, bt, c, oc);
}

pub fn backwardInput(dinp: []f32, dout: []const f32, weight: []const f32, bt: usize, c: usize, oc: usize) void {
    assert(bt > 0 and c > 0 and oc > 0);
    assert(dinp.len == bt * c and dout.len == bt * oc and weight.len == oc * c);
    const problem = gemm.Problem{
        .m = bt,
        .n = c,
        .k = oc,
        .a = .{ .ptr = dout.ptr, .row_stride = oc, .k_stride = 1 },
        .b = .{ .ptr = weight.ptr, .row_stride = 1, .k_stride = c },
        .c = dinp.ptr,
        .ldc = c,
        .accumulate = true,
        .precision = precision,
    };
    gemm.run(&problem);
}

pub fn backwardWeight(dweight: []f32, dbias: ?[]f32, dout: []const f32, inp: []const f32, bt: usize, c: usize, oc: usize) void {
    assert(bt > 0 and c > 0 and oc > 0);
    assert(dweight.len == oc * c and dout.len == bt * oc and inp.len == bt * c);
    if (dbias) |db| assert(db.len == oc);
    const problem = gemm.Problem{
        .m = oc,
        .n = c,
        .k = bt,
        .a = .{ .ptr = dout.ptr, .row_stride = 1, .k_stride = oc },
        .b = .{ .ptr = inp.ptr, .row_stride = 1, .k_stride = c },
        .c = dweight.ptr,
        .ldc = c,
        .accumulate = true,
        .precision = precision,
    };
    gemm.run(&problem);
    if (dbias) |db| biasGrad(db, dout, bt, oc);
}

// ---- bias grad: column sums of dout, split over columns, rows summed in order ----

const bias_columns_per_task = 256;

const BiasGradContext = struct {
    dbias: []f32,
    dout: []const f32,
    bt: usize,
    oc: usize,
    fn task(self: *const BiasGradContext, index: usize) void {
        const first = index * bias_columns_per_task;
        const last = @min(self.oc, first + bias_columns_per_task);
        var o = first;
        while (o + lanes <= last) : (o += lanes) {
            var sum: V = @splat(0);
            for (0..self.bt) |row| sum += load(self.dout, row * self.oc + o);
            store(self.dbias, o, load(self.dbias, o) + sum);
        }
        while (o < last) : (o += 1) {
            var sum: f32 = 0;
            for (0..self.bt) |row| sum += self.dout[row * self.oc + o];
            self.dbias[o] += sum;
        }
    }
};

fn biasGrad(dbias: []f32, dout: []const f32, bt: usize, oc: usize) void {
    const context = BiasGradContext{ .dbias = dbias, .dout = dout, .bt = bt, .oc = oc };
    pool.parallelFor(BiasGradContext, &context, std.math.divCeil(usize, oc, bias_columns_per_task) catch unreachable, BiasGradContext.task);
}

// ---- forward with few rows: stream W once, rows of W split across threads ----

const weight_rows_per_task = 32;
const tile_weight_rows = 4;
/// Input rows per pass over a tile of W: 4·4 accumulators + 4 + 1 operands fit AVX-512's 32
/// registers; AVX2's 16 hold 2·4 + 4 + 1.
const rows_per_dot = if (simd.has_avx512f) 4 else 2;

const SmallForwardContext = struct {
    out: []f32,
    inp: []const f32,
    weight: []const f32,
    bias: ?[]const f32,
    bt: usize,
    c: usize,
    oc: usize,
    fn task(self: *const SmallForwardContext, index: usize) void {
        const first = index * weight_rows_per_task;
        const last = @min(self.oc, first + weight_rows_per_task);
        var o = first;
        while (o + tile_weight_rows <= last) : (o += tile_weight_rows) self.tile(tile_weight_rows, o);
        while (o < last) : (o += 1) self.tile(1, o);
    }

    /// Every input row against `rn` rows of W: the W rows are read from memory once and reused
    /// from L1 for each input row (several at a time: rows_per_dot + rn loads feed rows_per_dot·rn
    /// FMAs). Vector partial sums are reduced once, after the k loop. The grouping never changes
    /// an output's arithmetic (its k order and its reduction are the same in every group size), so
    /// a row's result does not depend on the other rows (src/infer/batch.ts relies on it).
    fn tile(self: *const SmallForwardContext, comptime rn: usize, o0: usize) void {
        var row: usize = 0;
        while (row + rows_per_dot <= self.bt) : (row += rows_per_dot) self.dots(rows_per_dot, rn, row, o0);
        while (row + 2 <= self.bt) : (row += 2) self.dots(2, rn, row, o0);
        if (row < self.bt) self.dots(1, rn, row, o0);
    }

    inline fn dots(self: *const SmallForwardContext, comptime rm: usize, comptime rn: usize, row0: usize, o0: usize) void {
        const c = self.c;
        var acc: [rm][rn]V = @splat(@splat(@splat(0)));
        var k: usize = 0;
        while (k + lanes <= c) : (k += lanes) {
            var w: [rn]V = undefined;
            inline for (0..rn) |j| w[j] = load(self.weight, (o0 + j) * c + k);
            inline for (0..rm) |i| {
                const xv: V = load(self.inp, (row0 + i) * c + k);
                inline for (0..rn) |j| acc[i][j] = @mulAdd(V, xv, w[j], acc[i][j]);
            }
        }
        inline for (0..rm) |i| inline for (0..rn) |j| {
            var sum = @reduce(.Add, acc[i][j]);
            for (k..c) |kk| sum = @mulAdd(f32, self.inp[(row0 + i) * c + kk], self.weight[(o0 + j) * c + kk], sum);
            const b = if (self.bias) |bias| bias[o0 + j] else 0;
            self.out[(row0 + i) * self.oc + o0 + j] = b + sum;
        };
    }
};

fn forwardSmall(out: []f32, inp: []const f32, weight: []const f32, bias: ?[]const f32, bt: usize, c: usize, oc: usize) void {
    const context = SmallForwardContext{ .out = out, .inp = inp, .weight = weight, .bias = bias, .bt = bt, .c = c, .oc = oc };
    pool.parallelFor(SmallForwardContext, &context, std.math.divCeil(usize, oc, weight_rows_per_task) catch unreachable, SmallForwardContext.task);
}

// ---- tests ----

const Layout = enum { forward, input, weight };

fn checkLayout(layout: Layout, bt: usize, c: usize, oc: usize) !void {
    const gpa = std.testing.allocator;
    var prng = std.Random.DefaultPrng.init(bt * 7919 + c * 31 + oc);
    const random = prng.random();
    const x = try gpa.alloc(f32, bt * c); // inp or dinp
    defer gpa.free(x);
    const w = try gpa.alloc(f32, oc * c); // weight or dweight
    defer gpa.free(w);
    const y = try gpa.alloc(f32, bt * oc); // out or dout
    defer gpa.free(y);
    const bias = try gpa.alloc(f32, oc);
    defer gpa.free(bias);
    for (x) |*v| v.* = random.floatNorm(f32);
    for (w) |*v| v.* = random.floatNorm(f32);
    for (y) |*v| v.* = random.floatNorm(f32);
    for (bias) |*v| v.* = random.floatNorm(f32);
    const want = try gpa.alloc(f64, @max(bt * oc, bt * c, oc * c));
    defer gpa.free(want);
    const want_bias = try gpa.alloc(f64, oc);
    defer gpa.free(want_bias);
    var terms: usize = 0;
    switch (layout) {
        .forward => {
            for (0..bt) |i| for (0..oc) |o| {
                var sum: f64 = bias[o];
                for (0..c) |k| sum += @as(f64, x[i * c + k]) * w[o * c + k];
                want[i * oc + o] = sum;
            };
            forward(y, x, w, bias, bt, c, oc);
            terms = c;
        },
        .input => {
            for (0..bt) |i| for (0..c) |k| {
                var sum: f64 = x[i * c + k];
                for (0..oc) |o| sum += @as(f64, y[i * oc + o]) * w[o * c + k];
                want[i * c + k] = sum;
            };
            backwardInput(x, y, w, bt, c, oc);
            terms = oc;
        },
        .weight => {
            for (0..oc) |o| {
                for (0..c) |k| {
                    var sum: f64 = w[o * c + k];
                    for (0..bt) |i| sum += @as(f64, y[i * oc + o]) * x[i * c + k];
                    want[o * c + k] = sum;
                }
                var sum: f64 = bias[o];
                for (0..bt) |i| sum += y[i * oc + o];
                want_bias[o] = sum;
            }
            backwardWeight(w, bias, y, x, bt, c, oc);
            terms = bt;
        },
    }
    const got: []const f32 = switch (layout) {
        .forward => y,
        .input => x,
        .weight => w,
    };
    // N(0,1) products: a float32 sum of `terms` of them errs far below 1e-5·(terms+2)·4; a wrong
    // or missing term is of order 1.
    const tolerance = 1e-5 * @as(f64, @floatFromInt(terms + 2)) * 4;
    for (got, want[0..got.len]) |g, e| try std.testing.expectApproxEqAbs(e, @as(f64, g), tolerance);
    if (layout == .weight) for (bias, want_bias) |g, e| try std.testing.expectApproxEqAbs(e, @as(f64, g), tolerance);
}

test "each layout matches a float64 reference on odd shapes, small-row path included" {
    try pool.init(2);
    defer pool.deinit();
    // One row with C around the vector width's multiples and OC around the tile and task sizes;
    // then up to and past small_rows_max.
    const shapes = [_][3]usize{ .{ 1, 1, 1 }, .{ 1, 9, 5 }, .{ 1, 3 * lanes + 5, 67 }, .{ 1, 768, 37 }, .{ 3, 17, 37 }, .{ small_rows_max, 33, 70 }, .{ small_rows_max + 1, 33, 70 }, .{ 5, 300, 9 }, .{ 7, 9, 5 }, .{ 65, 33, 17 }, .{ 3, 129, 70 }, .{ 31, 300, 45 } };
    for (shapes) |s| for ([_]Layout{ .forward, .input, .weight }) |layout| try checkLayout(layout, s[0], s[1], s[2]);
}

test "forwardPrepacked takes the panels up to small_rows_max rows and the GEMM beyond" {
    try pool.init(2);
    defer pool.deinit();
    const gpa = std.testing.allocator;
    const c, const oc = .{ 40, 50 };
    const rows_max = small_rows_max + 1;
    const inp = try gpa.alloc(f32, rows_max * c);
    defer gpa.free(inp);
    const weight = try gpa.alloc(f32, oc * c);
    defer gpa.free(weight);
    const packed_weight = try gpa.alloc(f32, panel_matmul.packedFloats(c, oc));
    defer gpa.free(packed_weight);
    const got = try gpa.alloc(f32, rows_max * oc);
    defer gpa.free(got);
    const want = try gpa.alloc(f32, rows_max * oc);
    defer gpa.free(want);
    var prng = std.Random.DefaultPrng.init(3);
    for (inp) |*v| v.* = prng.random().floatNorm(f32);
    for (weight) |*v| v.* = prng.random().floatNorm(f32);
    panel_matmul.pack(packed_weight, weight, c, oc);
    for ([_]usize{ 1, small_rows_max, rows_max }) |bt| {
        forwardPrepacked(got[0 .. bt * oc], inp[0 .. bt * c], weight, packed_weight, null, bt, c, oc);
        if (bt <= small_rows_max) panel_matmul.forward(want[0 .. bt * oc], inp[0 .. bt * c], packed_weight, null, bt, c, oc) else forward(want[0 .. bt * oc], inp[0 .. bt * c], weight, null, bt, c, oc);
        try std.testing.expectEqualSlices(f32, want[0 .. bt * oc], got[0 .. bt * oc]);
    }
}

test {
    _ = gemm;
}
