//! LayerNorm over the last dimension, PyTorch semantics (biased variance, eps inside the sqrt):
//!   forward   out = (x - mean)·rstd·weight + bias,  rstd = 1/sqrt(var + eps); mean, rstd saved
//!   backward  dinp += rstd·(dnorm - mean(dnorm) - norm·mean(dnorm·norm)),  dnorm = weight·dout
//!             dweight += Σ_rows dout·norm,  dbias += Σ_rows dout
//! Rows are independent, so the forward and dinp run over row blocks. dweight/dbias reduce over
//! rows: a second pass gives each task a slice of channels and walks all rows in order, so the sum
//! order is fixed whatever the thread count (no scratch buffers, no atomics).
const std = @import("std");
const pool = @import("pool.zig");
const simd = @import("simd.zig");
const assert = std.debug.assert;

pub const eps: f32 = 1e-5;
const vec = simd.native;
const lanes = vec.lanes;
const V = vec.V;
const load = vec.load;
const store = vec.store;
const rows_per_task = 8;
const channels_per_task = 64;

fn sum(x: []const f32) f32 {
    var acc: V = @splat(0);
    var k: usize = 0;
    while (k + lanes <= x.len) : (k += lanes) acc += load(x, k);
    var total = @reduce(.Add, acc);
    while (k < x.len) : (k += 1) total += x[k];
    return total;
}

fn sumSquaredDeviation(x: []const f32, mean: f32) f32 {
    const m: V = @splat(mean);
    var acc: V = @splat(0);
    var k: usize = 0;
    while (k + lanes <= x.len) : (k += lanes) {
        const d = load(x, k) - m;
        acc += d * d;
    }
    var total = @reduce(.Add, acc);
    while (k < x.len) : (k += 1) total += (x[k] - mean) * (x[k] - mean);
    return total;
}

fn rowCount(n: usize) usize {
    return std.math.divCeil(usize, n, rows_per_task) catch unreachable;
}

const ForwardContext = struct {
    out: []f32,
    mean: []f32,
    rstd: []f32,
    inp: []const f32,
    weight: []const f32,
    bias: []const f32,
    n: usize,
    c: usize,
    fn task(self: *const ForwardContext, task_index: usize) void {
        const first = task_index * rows_per_task;
        for (first..@min(self.n, first + rows_per_task)) |row| self.normaliseRow(row);
    }
    fn normaliseRow(self: *const ForwardContext, row: usize) void {
        const c = self.c;
        const x = self.inp[row * c ..][0..c];
        const y = self.out[row * c ..][0..c];
        const c_f: f32 = @floatFromInt(c);
        const mean = sum(x) / c_f;
        const variance = sumSquaredDeviation(x, mean) / c_f;
        const rstd = 1 / @sqrt(variance + eps);
        self.mean[row] = mean;
        self.rstd[row] = rstd;
        const m: V = @splat(mean);
        const r: V = @splat(rstd);
        var k: usize = 0;
        while (k + lanes <= c) : (k += lanes) {
            store(y, k, (load(x, k) - m) * r * load(self.weight, k) + load(self.bias, k));
        }
        while (k < c) : (k += 1) y[k] = (x[k] - mean) * rstd * self.weight[k] + self.bias[k];
    }
};

pub fn forward(out: []f32, mean: []f32, rstd: []f32, inp: []const f32, weight: []const f32, bias: []const f32, n: usize, c: usize) void {
    assert(n > 0 and c > 0);
    assert(out.len == n * c and inp.len == n * c and mean.len == n and rstd.len == n);
    assert(weight.len == c and bias.len == c);
    const context = ForwardContext{ .out = out, .mean = mean, .rstd = rstd, .inp = inp, .weight = weight, .bias = bias, .n = n, .c = c };
    pool.parallelFor(ForwardContext, &context, rowCount(n), ForwardContext.task);
}

const BackwardContext = struct {
    dinp: []f32,
    dweight: []f32,
    dbias: []f32,
    dout: []const f32,
    inp: []const f32,
    weight: []const f32,
    mean: []const f32,
    rstd: []const f32,
    n: usize,
    c: usize,

    fn inputTask(self: *const BackwardContext, task_index: usize) void {
        const first = task_index * rows_per_task;
        for (first..@min(self.n, first + rows_per_task)) |row| self.inputRow(row);
    }

    fn inputRow(self: *const BackwardContext, row: usize) void {
        const c = self.c;
        const x = self.inp[row * c ..][0..c];
        const g = self.dout[row * c ..][0..c];
        const dx = self.dinp[row * c ..][0..c];
        const mean = self.mean[row];
        const rstd = self.rstd[row];
        const m: V = @splat(mean);
        const r: V = @splat(rstd);
        // The two row means the gradient needs: mean(dnorm) and mean(dnorm·norm).
        var acc_dnorm: V = @splat(0);
        var acc_dnorm_norm: V = @splat(0);
        var k: usize = 0;
        while (k + lanes <= c) : (k += lanes) {
            const dnorm = load(self.weight, k) * load(g, k);
            acc_dnorm += dnorm;
            acc_dnorm_norm += dnorm * ((load(x, k) - m) * r);
        }
        var sum_dnorm = @reduce(.Add, acc_dnorm);
        var sum_dnorm_norm = @reduce(.Add, acc_dnorm_norm);
        while (k < c) : (k += 1) {
            const dnorm = self.weight[k] * g[k];
            sum_dnorm += dnorm;
            sum_dnorm_norm += dnorm * ((x[k] - mean) * rstd);
        }
        const c_f: f32 = @floatFromInt(c);
        const mean_dnorm = sum_dnorm / c_f;
        const mean_dnorm_norm = sum_dnorm_norm / c_f;
        const md: V = @splat(mean_dnorm);
        const mdn: V = @splat(mean_dnorm_norm);
        k = 0;
        while (k + lanes <= c) : (k += lanes) {
            const dnorm = load(self.weight, k) * load(g, k);
            const norm = (load(x, k) - m) * r;
            store(dx, k, load(dx, k) + r * (dnorm - md - norm * mdn));
        }
        while (k < c) : (k += 1) {
            const dnorm = self.weight[k] * g[k];
            const norm = (x[k] - mean) * rstd;
            dx[k] += rstd * (dnorm - mean_dnorm - norm * mean_dnorm_norm);
        }
    }

    fn parameterTask(self: *const BackwardContext, task_index: usize) void {
        const c = self.c;
        const c0 = task_index * channels_per_task;
        const width = @min(channels_per_task, c - c0);
        var dw: [channels_per_task]f32 = undefined;
        var db: [channels_per_task]f32 = undefined;
        @memcpy(dw[0..width], self.dweight[c0..][0..width]);
        @memcpy(db[0..width], self.dbias[c0..][0..width]);
        for (0..self.n) |row| {
            const x = self.inp[row * c + c0 ..][0..width];
            const g = self.dout[row * c + c0 ..][0..width];
            const mean = self.mean[row];
            const rstd = self.rstd[row];
            for (0..width) |j| {
                dw[j] += g[j] * ((x[j] - mean) * rstd);
                db[j] += g[j];
            }
        }
        @memcpy(self.dweight[c0..][0..width], dw[0..width]);
        @memcpy(self.dbias[c0..][0..width], db[0..width]);
    }
};

pub fn backward(dinp: []f32, dweight: []f32, dbias: []f32, dout: []const f32, inp: []const f32, weight: []const f32, mean: []const f32, rstd: []const f32, n: usize, c: usize) void {
    assert(n > 0 and c > 0);
    assert(dinp.len == n * c and dout.len == n * c and inp.len == n * c);
    assert(dweight.len == c and dbias.len == c and weight.len == c and mean.len == n and rstd.len == n);
    const context = BackwardContext{ .dinp = dinp, .dweight = dweight, .dbias = dbias, .dout = dout, .inp = inp, .weight = weight, .mean = mean, .rstd = rstd, .n = n, .c = c };
    pool.parallelFor(BackwardContext, &context, rowCount(n), BackwardContext.inputTask);
    pool.parallelFor(BackwardContext, &context, std.math.divCeil(usize, c, channels_per_task) catch unreachable, BackwardContext.parameterTask);
}

fn referenceForwardRow(out: []f64, x: []const f32, weight: []const f32, bias: []const f32) void {
    var mean: f64 = 0;
    for (x) |v| mean += v;
    mean /= @floatFromInt(x.len);
    var variance: f64 = 0;
    for (x) |v| variance += (v - mean) * (v - mean);
    variance /= @floatFromInt(x.len);
    const rstd = 1 / @sqrt(variance + eps);
    for (out, x, weight, bias) |*y, v, w, b| y.* = (v - mean) * rstd * w + b;
}

test "layernorm forward matches a float64 reference; backward gradients sum as they must" {
    const gpa = std.testing.allocator;
    var prng = std.Random.DefaultPrng.init(3);
    const random = prng.random();
    try pool.init(2);
    defer pool.deinit();
    for ([_][2]usize{ .{ 1, 1 }, .{ 1, 7 }, .{ 9, 1 }, .{ 13, 77 }, .{ 33, 130 } }) |dims| {
        const n, const c = dims;
        const inp = try gpa.alloc(f32, n * c);
        defer gpa.free(inp);
        const out = try gpa.alloc(f32, n * c);
        defer gpa.free(out);
        const params = try gpa.alloc(f32, 2 * c);
        defer gpa.free(params);
        const stats = try gpa.alloc(f32, 2 * n);
        defer gpa.free(stats);
        const want = try gpa.alloc(f64, c);
        defer gpa.free(want);
        for (inp) |*x| x.* = random.floatNorm(f32) * 3 + 1;
        for (params) |*x| x.* = random.floatNorm(f32);
        const weight, const bias = .{ params[0..c], params[c..] };
        forward(out, stats[0..n], stats[n..], inp, weight, bias, n, c);
        for (0..n) |row| {
            referenceForwardRow(want, inp[row * c ..][0..c], weight, bias);
            for (want, out[row * c ..][0..c]) |w, got| try std.testing.expectApproxEqAbs(w, got, 1e-5 * (1 + @abs(w)));
        }
        // With dout = 1: dbias = n per channel; dinp sums to ~0 per row (the gradient of a
        // normalised row is orthogonal to the all-ones direction).
        const dout = try gpa.alloc(f32, n * c);
        defer gpa.free(dout);
        for (dout) |*g| g.* = random.floatNorm(f32);
        const grads = try gpa.alloc(f32, n * c + 2 * c);
        defer gpa.free(grads);
        @memset(grads, 0);
        backward(grads[0 .. n * c], grads[n * c ..][0..c], grads[n * c + c ..][0..c], dout, inp, weight, stats[0..n], stats[n..], n, c);
        for (0..c) |j| {
            var db: f64 = 0;
            for (0..n) |row| db += dout[row * c + j];
            try std.testing.expectApproxEqAbs(db, grads[n * c + c + j], 1e-4 * @as(f64, @floatFromInt(n)));
        }
        for (0..n) |row| {
            var total: f64 = 0;
            var scale: f64 = 0;
            for (grads[row * c ..][0..c]) |g| {
                total += g;
                scale += @abs(g);
            }
            try std.testing.expect(@abs(total) <= 1e-4 * (scale + 1));
        }
    }
}
