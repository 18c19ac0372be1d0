//! Token + position embedding (GPT-2's input layer):
//!   forward   out(B,T,C) = wte[inp[b,t]] + wpe[t]
//!   backward  dwte[inp[b,t]] += dout[b,t],  dwpe[t] += dout[b,t]
//! The backward scatters into rows chosen by the token ids, so two rows of dout may hit the same
//! row of dwte. To stay deterministic without atomics, tasks own slices of channels: each task walks
//! every (b,t) in order for its slice, so every element of dwte/dwpe sees its additions in token order
//! whatever thread runs the task.
const std = @import("std");
const pool = @import("pool.zig");
const simd = @import("simd.zig");
const assert = std.debug.assert;

const vec = simd.native;
const lanes = vec.lanes;
const V = vec.V;
const load = vec.load;
const store = vec.store;
/// Channels per backward task: 64 floats = one 256-byte run per row touched.
const channels_per_task = 64;
/// Rows per forward task: enough work (rows·C floats) to amortise the task hand-out.
const rows_per_task = 16;

pub const Shape = struct { b: usize, t: usize, c: usize, vp: usize, max_t: usize };

fn checkShape(s: Shape) void {
    assert(s.b > 0 and s.t > 0 and s.c > 0 and s.vp > 0 and s.max_t > 0);
    assert(s.t <= s.max_t);
}

fn addRows(out: []f32, a: []const f32, b: []const f32) void {
    assert(out.len == a.len and a.len == b.len);
    var k: usize = 0;
    while (k + lanes <= out.len) : (k += lanes) {
        const va: V = load(a, k);
        const vb: V = load(b, k);
        store(out, k, va + vb);
    }
    while (k < out.len) : (k += 1) out[k] = a[k] + b[k];
}

fn accumulate(y: []f32, x: []const f32) void {
    assert(y.len == x.len);
    var k: usize = 0;
    while (k + lanes <= y.len) : (k += lanes) {
        const vy: V = load(y, k);
        const vx: V = load(x, k);
        store(y, k, vy + vx);
    }
    while (k < y.len) : (k += 1) y[k] += x[k];
}

const ForwardContext = struct {
    out: []f32,
    inp: []const i32,
    wte: []const f32,
    wpe: []const f32,
    shape: Shape,
    fn task(self: *const ForwardContext, task_index: usize) void {
        const s = self.shape;
        const rows = s.b * s.t;
        const first = task_index * rows_per_task;
        const end = @min(rows, first + rows_per_task);
        for (first..end) |row| {
            const id: usize = @intCast(self.inp[row]);
            assert(id < s.vp);
            const t = row % s.t;
            addRows(self.out[row * s.c ..][0..s.c], self.wte[id * s.c ..][0..s.c], self.wpe[t * s.c ..][0..s.c]);
        }
    }
};

pub fn forward(out: []f32, inp: []const i32, wte: []const f32, wpe: []const f32, shape: Shape) void {
    checkShape(shape);
    const rows = shape.b * shape.t;
    assert(out.len == rows * shape.c and inp.len == rows);
    assert(wte.len == shape.vp * shape.c and wpe.len == shape.max_t * shape.c);
    const context = ForwardContext{ .out = out, .inp = inp, .wte = wte, .wpe = wpe, .shape = shape };
    pool.parallelFor(ForwardContext, &context, std.math.divCeil(usize, rows, rows_per_task) catch unreachable, ForwardContext.task);
}

const BackwardContext = struct {
    dwte: []f32,
    dwpe: []f32,
    dout: []const f32,
    inp: []const i32,
    shape: Shape,
    fn task(self: *const BackwardContext, task_index: usize) void {
        const s = self.shape;
        const c0 = task_index * channels_per_task;
        const width = @min(channels_per_task, s.c - c0);
        for (0..s.b * s.t) |row| {
            const id: usize = @intCast(self.inp[row]);
            assert(id < s.vp);
            const t = row % s.t;
            const g = self.dout[row * s.c + c0 ..][0..width];
            accumulate(self.dwte[id * s.c + c0 ..][0..width], g);
            accumulate(self.dwpe[t * s.c + c0 ..][0..width], g);
        }
    }
};

pub fn backward(dwte: []f32, dwpe: []f32, dout: []const f32, inp: []const i32, shape: Shape) void {
    checkShape(shape);
    const rows = shape.b * shape.t;
    assert(dout.len == rows * shape.c and inp.len == rows);
    assert(dwte.len == shape.vp * shape.c and dwpe.len == shape.max_t * shape.c);
    const context = BackwardContext{ .dwte = dwte, .dwpe = dwpe, .dout = dout, .inp = inp, .shape = shape };
    pool.parallelFor(BackwardContext, &context, std.math.divCeil(usize, shape.c, channels_per_task) catch unreachable, BackwardContext.task);
}

test "encoder forward and backward on odd shapes, with repeated ids" {
    const gpa = std.testing.allocator;
    var prng = std.Random.DefaultPrng.init(7);
    const random = prng.random();
    try pool.init(3);
    defer pool.deinit();
    for ([_]Shape{ .{ .b = 1, .t = 1, .c = 1, .vp = 1, .max_t = 1 }, .{ .b = 3, .t = 5, .c = 67, .vp = 4, .max_t = 9 }, .{ .b = 2, .t = 33, .c = 131, .vp = 11, .max_t = 33 } }) |s| {
        const rows = s.b * s.t;
        const inp = try gpa.alloc(i32, rows);
        defer gpa.free(inp);
        const wte = try gpa.alloc(f32, s.vp * s.c);
        defer gpa.free(wte);
        const wpe = try gpa.alloc(f32, s.max_t * s.c);
        defer gpa.free(wpe);
        const out = try gpa.alloc(f32, rows * s.c);
        defer gpa.free(out);
        const dwte = try gpa.alloc(f32, s.vp * s.c);
        defer gpa.free(dwte);
        const dwpe = try gpa.alloc(f32, s.max_t * s.c);
        defer gpa.free(dwpe);
        for (inp) |*id| id.* = @intCast(random.uintLessThan(usize, s.vp));
        for (wte) |*x| x.* = random.floatNorm(f32);
        for (wpe) |*x| x.* = random.floatNorm(f32);
        forward(out, inp, wte, wpe, s);
        for (0..rows) |row| for (0..s.c) |c| {
            const id: usize = @intCast(inp[row]);
            try std.testing.expectEqual(wte[id * s.c + c] + wpe[(row % s.t) * s.c + c], out[row * s.c + c]);
        };
        // dout = 1 everywhere: dwte counts the occurrences of each id, dwpe counts B per position.
        @memset(out, 1);
        @memset(dwte, 0);
        @memset(dwpe, 0);
        backward(dwte, dwpe, out, inp, s);
        for (0..s.vp) |id| {
            var count: f32 = 0;
            for (inp) |x| count += if (x == @as(i32, @intCast(id))) 1 else 0;
            for (0..s.c) |c| try std.testing.expectEqual(count, dwte[id * s.c + c]);
        }
        for (0..s.max_t) |t| for (0..s.c) |c| {
            const want: f32 = if (t < s.t) @floatFromInt(s.b) else 0;
            try std.testing.expectEqual(want, dwpe[t * s.c + c]);
        };
    }
}
