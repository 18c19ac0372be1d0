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
        zeroStreaming(self.out[r.start..r.end]);
    }
};

/// @memset with non-temporal stores for the aligned middle: a buffer this large is not read again
/// before it leaves the cache, and ordinary stores first read every line they write. (glibc's
/// memset switches to such stores only above a fraction of the L3 size, which this VM reports as
/// 480 MiB.) Measured on the Intel Xeon VM, 498 MB (d12's gradients): 59.7 → 22.4 ms on one
/// thread, 32.7 → 11.5 ms on two.
fn zeroStreaming(out: []f32) void {
    const vector_floats = lanes;
    const address = @intFromPtr(out.ptr);
    const misaligned = (std.mem.alignForward(usize, address, vec.vector_bytes) - address) / @sizeOf(f32);
    if (!is_x86_64 or out.len < misaligned + 4 * vector_floats) return @memset(out, 0);
    @memset(out[0..misaligned], 0);
    const body = (out.len - misaligned) / vector_floats * vector_floats;
    const zero_vector: V = @splat(0);
    var p: [*]f32 = out.ptr + misaligned;
    const end = p + body;
    while (@intFromPtr(p) < @intFromPtr(end)) : (p += vector_floats) {
        asm volatile ("vmovntps %[v], (%[p])"
            :
            : [v] "v" (zero_vector),
              [p] "r" (p),
            : .{ .memory = true });
    }
    asm volatile ("sfence" ::: .{ .memory = true });
    @memset(out[misaligned + body ..], 0);
}

const is_x86_64 = @import("builtin").cpu.arch == .x86_64;

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
