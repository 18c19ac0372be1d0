//! The reduction of data-parallel ranks on one machine: every rank's gradients live in a segment
//! of one shared-memory window (src/dist/node_reducer.ts), and the owner of a shard adds the
//! ranks' segments over it directly:
//!   segment[self][offset + i] = Σ_{r = 0 … count-1, in rank order} segment[r][offset + i]
//! for i in [0, n). One pass: count reads and one write per element, against a message-passing
//! reduction's copy into a temporary, then its sum (MPI's reduce to the owners, ~4× slower here).
//! With `release`, the other ranks' pages of the range are then dropped from this process's page
//! tables (madvise(MADV_DONTNEED) on a shared mapping keeps the data and only unmaps it here), so
//! reading another rank's gradients does not grow this rank's resident set. Only for segments in
//! shared mappings: on private memory MADV_DONTNEED discards the data.
//! It also returns Σ of the squared sums in float64 (the shard's part of the gradient norm, which
//! would otherwise be one more pass over it), over a fixed partition into at most `max_tasks`
//! chunks added in order. Deterministic: every element's sum, and the squares' total, have the
//! same order whatever the thread count.
const std = @import("std");
const builtin = @import("builtin");
const pool = @import("pool.zig");
const simd = @import("simd.zig");
const assert = std.debug.assert;

const vec = simd.native;
const lanes = vec.lanes;
const V = vec.V;

/// Floats per task at least: 256 KiB of each segment, whole 4 KiB pages.
const chunk_floats = 1 << 16;
/// Most tasks (partials of the squares); longer ranges take longer chunks.
const max_tasks = 1024;
/// Most segments (ranks on one machine).
pub const max_segments = 256;

const SumContext = struct {
    segments: []const [*]f32,
    self_index: usize,
    offset: usize,
    n: usize,
    release: bool,
    chunk: usize,
    squares: *[max_tasks]f64,

    fn task(self: *const SumContext, index: usize) void {
        const begin = self.offset + index * self.chunk;
        const end = @min(self.offset + self.n, begin + self.chunk);
        const out = self.segments[self.self_index];
        const V64 = @Vector(lanes, f64);
        var squares: V64 = @splat(0);
        var i = begin;
        while (i + lanes <= end) : (i += lanes) {
            var acc: V = self.segments[0][i..][0..lanes].*;
            for (self.segments[1..]) |segment| acc += segment[i..][0..lanes].*;
            out[i..][0..lanes].* = acc;
            const wide: V64 = acc;
            squares += wide * wide;
        }
        var total = @reduce(.Add, squares);
        while (i < end) : (i += 1) {
            var acc = self.segments[0][i];
            for (self.segments[1..]) |segment| acc += segment[i];
            out[i] = acc;
            total += @as(f64, acc) * acc;
        }
        self.squares[index] = total;
        if (!self.release) return;
        for (self.segments, 0..) |segment, r| {
            if (r != self.self_index) releasePages(segment + begin, end - begin);
        }
    }
};

/// Unmaps from this process the whole pages inside floats[0 .. n) (a shared mapping keeps them).
fn releasePages(floats: [*]f32, n: usize) void {
    if (builtin.os.tag != .linux) return;
    const page = std.heap.page_size_min;
    const first = std.mem.alignForward(usize, @intFromPtr(floats), page);
    const last = std.mem.alignBackward(usize, @intFromPtr(floats) + n * @sizeOf(f32), page);
    if (last <= first) return;
    // Only an optimisation of the resident set: a refusal changes no result.
    std.posix.madvise(@ptrFromInt(first), last - first, std.posix.MADV.DONTNEED) catch {};
}

/// segments[self_index][offset .. offset+n) = Σ_r segments[r][offset .. offset+n), r in order;
/// with `release`, then unmaps the other segments' whole pages of the range (shared mappings only).
/// Returns Σ over the range of the sums squared, in float64.
pub fn sum(segments: []const [*]f32, self_index: usize, offset: usize, n: usize, release: bool) f64 {
    assert(segments.len >= 1 and segments.len <= max_segments and self_index < segments.len and n > 0);
    const chunk = std.mem.alignForward(usize, @max(chunk_floats, std.math.divCeil(usize, n, max_tasks) catch unreachable), chunk_floats);
    const tasks = std.math.divCeil(usize, n, chunk) catch unreachable;
    assert(tasks <= max_tasks);
    var squares: [max_tasks]f64 = undefined;
    const context = SumContext{ .segments = segments, .self_index = self_index, .offset = offset, .n = n, .release = release, .chunk = chunk, .squares = &squares };
    pool.parallelFor(SumContext, &context, tasks, SumContext.task);
    var total: f64 = 0;
    for (squares[0..tasks]) |x| total += x;
    return total;
}

fn fill(segment: []f32, r: usize) void {
    for (segment, 0..) |*x, i| x.* = @as(f32, @floatFromInt((i * 7 + r * 13) % 101)) * 0.37 - 11;
}

test "sum adds the segments in rank order into one of them, only over the range" {
    try pool.init(2);
    defer pool.deinit();
    const gpa = std.testing.allocator;
    const floats = 3 * chunk_floats + 77;
    var storage: [3][]f32 = undefined;
    for (&storage, 0..) |*s, r| {
        s.* = try gpa.alloc(f32, floats);
        fill(s.*, r);
    }
    defer for (storage) |s| gpa.free(s);
    var want: [3][]f32 = undefined;
    for (&want, storage) |*w, s| w.* = try gpa.dupe(f32, s);
    defer for (want) |w| gpa.free(w);
    const segments = [_][*]f32{ storage[0].ptr, storage[1].ptr, storage[2].ptr };
    const offset, const n = .{ 5, 2 * chunk_floats + 40 };
    const squares = sum(&segments, 1, offset, n, false);
    var want_squares: f64 = 0;
    for (offset..offset + n) |i| {
        want[1][i] = (want[0][i] + want[1][i]) + want[2][i];
        want_squares += @as(f64, want[1][i]) * want[1][i];
    }
    for (storage, want) |got, expected| try std.testing.expectEqualSlices(f32, expected, got);
    try std.testing.expectApproxEqRel(want_squares, squares, 1e-12);
}

test "release drops the other segments' pages but keeps their data (a shared mapping)" {
    try pool.init(1);
    defer pool.deinit();
    const floats = 2 * chunk_floats;
    const bytes = 2 * floats * @sizeOf(f32);
    const memory = try std.posix.mmap(null, bytes, .{ .READ = true, .WRITE = true }, .{ .TYPE = .SHARED, .ANONYMOUS = true }, -1, 0);
    defer std.posix.munmap(memory);
    const all: [*]f32 = @ptrCast(@alignCast(memory.ptr));
    fill(all[0..floats], 0);
    fill(all[floats .. 2 * floats], 1);
    const segments = [_][*]f32{ all, all + floats };
    _ = sum(&segments, 0, 0, floats, true);
    var other: [floats]f32 = undefined;
    fill(&other, 1);
    try std.testing.expectEqualSlices(f32, &other, all[floats .. 2 * floats]);
    var first: [floats]f32 = undefined;
    fill(&first, 0);
    for (&first, other) |*x, y| x.* += y;
    try std.testing.expectEqualSlices(f32, &first, all[0..floats]);
}
