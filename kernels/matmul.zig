//! Matmul for the three layouts of a linear layer, with llm.c's conventions (row-major):
//!   forward      out(BT,OC)  = inp(BT,C) · W(OC,C)ᵀ + bias(OC)
//!   input grad   dinp(BT,C) += dout(BT,OC) · W(OC,C)
//!   weight grad  dW(OC,C)   += dout(BT,OC)ᵀ · inp(BT,C),   dbias(OC) += Σ_rows dout
//! Baseline implementation: vectorised dot/axpy loops, parallel over output rows.
const std = @import("std");
const pool = @import("pool.zig");
const assert = std.debug.assert;

const lanes = 8;
const V = @Vector(lanes, f32);

fn load(slice: []const f32, at: usize) V {
    return slice[at..][0..lanes].*;
}

fn dot(a: []const f32, b: []const f32) f32 {
    assert(a.len == b.len);
    var acc: V = @splat(0);
    var k: usize = 0;
    while (k + lanes <= a.len) : (k += lanes) acc = @mulAdd(V, load(a, k), load(b, k), acc);
    var sum = @reduce(.Add, acc);
    while (k < a.len) : (k += 1) sum = @mulAdd(f32, a[k], b[k], sum);
    return sum;
}

fn axpy(y: []f32, alpha: f32, x: []const f32) void {
    assert(x.len == y.len);
    const alpha_v: V = @splat(alpha);
    var k: usize = 0;
    while (k + lanes <= y.len) : (k += lanes) y[k..][0..lanes].* = @mulAdd(V, alpha_v, load(x, k), load(y, k));
    while (k < y.len) : (k += 1) y[k] = @mulAdd(f32, alpha, x[k], y[k]);
}

const Shape = struct { bt: usize, c: usize, oc: usize };

const ForwardContext = struct {
    out: []f32,
    inp: []const f32,
    weight: []const f32,
    bias: ?[]const f32,
    shape: Shape,
    fn task(self: *const ForwardContext, row: usize) void {
        const s = self.shape;
        const x = self.inp[row * s.c ..][0..s.c];
        const y = self.out[row * s.oc ..][0..s.oc];
        for (0..s.oc) |o| {
            const b = if (self.bias) |bias| bias[o] else 0;
            y[o] = b + dot(x, self.weight[o * s.c ..][0..s.c]);
        }
    }
};

pub fn forward(out: []f32, inp: []const f32, weight: []const f32, bias: ?[]const f32, bt: usize, c: usize, oc: usize) void {
    assert(bt > 0 and c > 0 and oc > 0);
    assert(out.len == bt * oc and inp.len == bt * c and weight.len == oc * c);
    if (bias) |b| assert(b.len == oc);
    const context = ForwardContext{ .out = out, .inp = inp, .weight = weight, .bias = bias, .shape = .{ .bt = bt, .c = c, .oc = oc } };
    pool.parallelFor(ForwardContext, &context, bt, ForwardContext.task);
}

const InputGradContext = struct {
    dinp: []f32,
    dout: []const f32,
    weight: []const f32,
    shape: Shape,
    fn task(self: *const InputGradContext, row: usize) void {
        const s = self.shape;
        const dx = self.dinp[row * s.c ..][0..s.c];
        for (0..s.oc) |o| axpy(dx, self.dout[row * s.oc + o], self.weight[o * s.c ..][0..s.c]);
    }
};

pub fn backwardInput(dinp: []f32, dout: []const f32, weight: []const f32, bt: usize, c: usize, oc: usize) void {
    assert(bt > 0 and c > 0 and oc > 0);
    assert(dinp.len == bt * c and dout.len == bt * oc and weight.len == oc * c);
    const context = InputGradContext{ .dinp = dinp, .dout = dout, .weight = weight, .shape = .{ .bt = bt, .c = c, .oc = oc } };
    pool.parallelFor(InputGradContext, &context, bt, InputGradContext.task);
}

const WeightGradContext = struct {
    dweight: []f32,
    dbias: ?[]f32,
    dout: []const f32,
    inp: []const f32,
    shape: Shape,
    fn task(self: *const WeightGradContext, o: usize) void {
        const s = self.shape;
        const dw = self.dweight[o * s.c ..][0..s.c];
        var bias_sum: f32 = 0;
        for (0..s.bt) |row| {
            const g = self.dout[row * s.oc + o];
            bias_sum += g;
            axpy(dw, g, self.inp[row * s.c ..][0..s.c]);
        }
        if (self.dbias) |db| db[o] += bias_sum;
    }
};

pub fn backwardWeight(dweight: []f32, dbias: ?[]f32, dout: []const f32, inp: []const f32, bt: usize, c: usize, oc: usize) void {
    assert(bt > 0 and c > 0 and oc > 0);
    assert(dweight.len == oc * c and dout.len == bt * oc and inp.len == bt * c);
    if (dbias) |db| assert(db.len == oc);
    const context = WeightGradContext{ .dweight = dweight, .dbias = dbias, .dout = dout, .inp = inp, .shape = .{ .bt = bt, .c = c, .oc = oc } };
    pool.parallelFor(WeightGradContext, &context, oc, WeightGradContext.task);
}

fn referenceForward(out: []f32, inp: []const f32, weight: []const f32, bias: ?[]const f32, bt: usize, c: usize, oc: usize) void {
    for (0..bt) |i| for (0..oc) |o| {
        var sum: f64 = if (bias) |b| b[o] else 0;
        for (0..c) |k| sum += @as(f64, inp[i * c + k]) * weight[o * c + k];
        out[i * oc + o] = @floatCast(sum);
    };
}

test "forward matches a float64 reference on odd shapes" {
    const gpa = std.testing.allocator;
    var prng = std.Random.DefaultPrng.init(1);
    const random = prng.random();
    try pool.init(2);
    defer pool.deinit();
    for ([_][3]usize{ .{ 1, 1, 1 }, .{ 7, 9, 5 }, .{ 65, 33, 17 }, .{ 3, 129, 70 } }) |dims| {
        const bt, const c, const oc = dims;
        const inp = try gpa.alloc(f32, bt * c);
        defer gpa.free(inp);
        const weight = try gpa.alloc(f32, oc * c);
        defer gpa.free(weight);
        const bias = try gpa.alloc(f32, oc);
        defer gpa.free(bias);
        const out = try gpa.alloc(f32, bt * oc);
        defer gpa.free(out);
        const expected = try gpa.alloc(f32, bt * oc);
        defer gpa.free(expected);
        for (inp) |*x| x.* = random.floatNorm(f32);
        for (weight) |*x| x.* = random.floatNorm(f32);
        for (bias) |*x| x.* = random.floatNorm(f32);
        forward(out, inp, weight, bias, bt, c, oc);
        referenceForward(expected, inp, weight, bias, bt, c, oc);
        for (out, expected) |got, want| try std.testing.expectApproxEqAbs(want, got, 1e-4 * @sqrt(@as(f32, @floatFromInt(c))) * 4);
    }
}
