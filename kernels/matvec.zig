//! One row through a linear layer, out(OC) = W(OC,C) · x(C) + bias(OC): the decode step of
//! generation, which matmul.forward sends here when BT = 1. It is memory-bound (every weight is
//! read once and used once), so the work is split into contiguous blocks of W's rows that each
//! thread streams row after row, one sequential stream per thread.
//! Determinism: each output is one dot product in a fixed order, whatever the thread count.
const std = @import("std");
const pool = @import("pool.zig");
const simd = @import("simd.zig");
const assert = std.debug.assert;

const vec = simd.native;
const lanes = vec.lanes;
const V = vec.V;
const load = vec.load;

/// Rows per task: 32 rows of a 768-wide matrix are 96 KiB, big enough for the hardware
/// prefetcher to stream, small enough that the lm_head (50304 rows) splits into ~1600 tasks and
/// a 768-row matrix still gives 24 tasks to balance over the threads.
const rows_per_task = 32;

const Context = struct {
    out: []f32,
    inp: []const f32,
    weight: []const f32,
    bias: ?[]const f32,
    c: usize,
    oc: usize,

    fn task(self: *const Context, task_index: usize) void {
        const row_begin = task_index * rows_per_task;
        const row_end = @min(row_begin + rows_per_task, self.oc);
        for (row_begin..row_end) |row| {
            const bias = if (self.bias) |b| b[row] else 0;
            self.out[row] = bias + dot(self.inp, self.weight[row * self.c ..][0..self.c]);
        }
    }
};

/// x·w with four independent accumulators, one row at a time: a single sequential stream per
/// thread (more concurrent streams can defeat the prefetcher; x sits in L1 anyway).
pub fn dot(x: []const f32, w: []const f32) f32 {
    assert(x.len == w.len);
    const zero: V = @splat(0);
    var a0 = zero;
    var a1 = zero;
    var a2 = zero;
    var a3 = zero;
    var k: usize = 0;
    while (k + 4 * lanes <= x.len) : (k += 4 * lanes) {
        a0 = @mulAdd(V, load(w, k), load(x, k), a0);
        a1 = @mulAdd(V, load(w, k + lanes), load(x, k + lanes), a1);
        a2 = @mulAdd(V, load(w, k + 2 * lanes), load(x, k + 2 * lanes), a2);
        a3 = @mulAdd(V, load(w, k + 3 * lanes), load(x, k + 3 * lanes), a3);
    }
    while (k + lanes <= x.len) : (k += lanes) a0 = @mulAdd(V, load(w, k), load(x, k), a0);
    var sum = @reduce(.Add, (a0 + a1) + (a2 + a3));
    while (k < x.len) : (k += 1) sum = @mulAdd(f32, w[k], x[k], sum);
    return sum;
}

pub fn forward(out: []f32, inp: []const f32, weight: []const f32, bias: ?[]const f32, c: usize, oc: usize) void {
    assert(c > 0 and oc > 0);
    assert(out.len == oc and inp.len == c and weight.len == oc * c);
    if (bias) |b| assert(b.len == oc);
    const context = Context{ .out = out, .inp = inp, .weight = weight, .bias = bias, .c = c, .oc = oc };
    pool.parallelFor(Context, &context, std.math.divCeil(usize, oc, rows_per_task) catch unreachable, Context.task);
}

// ---- tests ----

test "matvec matches a float64 reference on odd shapes, for 1 and 3 threads" {
    const gpa = std.testing.allocator;
    var prng = std.Random.DefaultPrng.init(7);
    const random = prng.random();
    defer pool.deinit();
    for ([_]usize{ 1, 3 }) |threads| {
        try pool.init(threads);
        // C around the 4-vector step of dot (4·lanes) and its remainders, OC around rows_per_task.
        for ([_][2]usize{ .{ 1, 1 }, .{ 7, 5 }, .{ 17, 33 }, .{ 4 * lanes + lanes + 3, 65 }, .{ 768, 37 }, .{ 100, 130 } }) |dims| {
            const c, const oc = dims;
            const inp = try gpa.alloc(f32, c);
            defer gpa.free(inp);
            const weight = try gpa.alloc(f32, oc * c);
            defer gpa.free(weight);
            const bias = try gpa.alloc(f32, oc);
            defer gpa.free(bias);
            const out = try gpa.alloc(f32, oc);
            defer gpa.free(out);
            for (inp) |*v| v.* = random.floatNorm(f32);
            for (weight) |*v| v.* = random.floatNorm(f32);
            for (bias) |*v| v.* = random.floatNorm(f32);
            forward(out, inp, weight, bias, c, oc);
            for (0..oc) |o| {
                var sum: f64 = bias[o];
                var abs_sum: f64 = @abs(bias[o]);
                for (0..c) |k| {
                    sum += @as(f64, inp[k]) * weight[o * c + k];
                    abs_sum += @abs(@as(f64, inp[k]) * weight[o * c + k]);
                }
                // γ_(c+1)·Σ|terms| bounds any float32 summation order (Higham §3.1).
                const u: f64 = std.math.pow(f64, 2, -24);
                const n: f64 = @floatFromInt(c + 1);
                try std.testing.expect(@abs(out[o] - sum) <= n * u / (1 - n * u) * abs_sum + 1e-30);
            }
        }
    }
}
