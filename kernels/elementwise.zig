//! The residual connection's forward, out = a + b, and zeroing a buffer over the pool. (The
//! residual's backward needs no kernel: the gradient passes to both branches unchanged, so the
//! model keeps one residual-gradient buffer.)
//! Memory-bound: split into fixed chunks over the pool.
const std = @import("std");
const pool = @import("pool.zig");
const simd = @import("simd.zig");
const assert = std.debug.assert;

const vec = simd.native;
const lanes = vec.lanes;
const V = vec.V;
const load = vec.load;
const store = vec.store;
/// Elements per task: 64 KiB per stream, large enough that the task hand-out is noise.
pub const chunk_elements = 1 << 14;

pub fn chunkCount(n: usize) usize {
    return std.math.divCeil(usize, n, chunk_elements) catch unreachable;
}

pub fn chunkRange(n: usize, task_index: usize) struct { start: usize, end: usize } {
    const start = task_index * chunk_elements;
    assert(start < n);
    return .{ .start = start, .end = @min(n, start + chunk_elements) };
}

const ForwardContext = struct {
    out: []f32,
    a: []const f32,
    b: []const f32,
    fn task(self: *const ForwardContext, task_index: usize) void {
        const r = chunkRange(self.out.len, task_index);
        var k = r.start;
        while (k + lanes <= r.end) : (k += lanes) store(self.out, k, load(self.a, k) + load(self.b, k));
        while (k < r.end) : (k += 1) self.out[k] = self.a[k] + self.b[k];
    }
};

pub fn residualForward(out: []f32, a: []const f32, b: []const f32) void {
    assert(out.len > 0 and a.len == out.len and b.len == out.len);
    const context = ForwardContext{ .out = out, .a = a, .b = b };
    pool.parallelFor(ForwardContext, &context, chunkCount(out.len), ForwardContext.task);
}

const ZeroContext = struct {
    out: []f32,
    fn task(self: *const ZeroContext, task_index: usize) void {
        const r = chunkRange(self.out.len, task_index);
        @memset(self.out[r.start..r.end], 0);
    }
};

/// Zeroes out on every pool thread: the gradient buffer (0.5 GB at d12) is cleared between
/// optimizer steps, and one core alone reaches only part of the machine's write bandwidth.
pub fn zero(out: []f32) void {
    assert(out.len > 0);
    const context = ZeroContext{ .out = out };
    pool.parallelFor(ZeroContext, &context, chunkCount(out.len), ZeroContext.task);
}

test "zero clears exactly the given range" {
    const gpa = std.testing.allocator;
    try pool.init(2);
    defer pool.deinit();
    for ([_]usize{ 1, 9, chunk_elements + 3, 3 * chunk_elements + 11 }) |n| {
        const buf = try gpa.alloc(f32, n + 2);
        defer gpa.free(buf);
        @memset(buf, 7);
        zero(buf[1 .. n + 1]);
        try std.testing.expectEqual(@as(f32, 7), buf[0]);
        try std.testing.expectEqual(@as(f32, 7), buf[n + 1]);
        for (buf[1 .. n + 1]) |x| try std.testing.expectEqual(@as(f32, 0), x);
    }
}

test "residual forward on sizes around the chunk and vector widths" {
    const gpa = std.testing.allocator;
    try pool.init(2);
    defer pool.deinit();
    for ([_]usize{ 1, 7, 9, chunk_elements - 1, chunk_elements + 3, 3 * chunk_elements + 11 }) |n| {
        const buf = try gpa.alloc(f32, 3 * n);
        defer gpa.free(buf);
        const out, const a, const b = .{ buf[0..n], buf[n .. 2 * n], buf[2 * n ..] };
        for (0..n) |i| {
            a[i] = @floatFromInt(i);
            b[i] = 0.5 - @as(f32, @floatFromInt(i % 13));
        }
        residualForward(out, a, b);
        for (0..n) |i| try std.testing.expectEqual(a[i] + b[i], out[i]);
    }
}
