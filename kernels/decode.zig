//! Inference kernels sized for generation, where only a few rows go through the model at a time
//! (their linear layers are matmul.forward's, which has a path for few rows):
//!   attention  n query rows at absolute positions pos0..pos0+n-1 against a KV cache (maxT, C)
//!              per layer: the new rows' keys and values are stored into the cache first, then
//!              every row attends causally (all heads) to cache positions 0..pos0+i, split over
//!              blocks of whole cache rows so that long contexts stream the cache sequentially.
//!   attentionRows  the same for n rows of n different sequences (batched decoding): row i at
//!              position[i] of cache cache_index[i], in one call, so the rows' blocks share the
//!              threads (a decode pass of 8 sequences made 96 single-row calls per step before).
//!   copy       a parallel memcpy: the bandwidth yardstick the decode benchmark compares with.
//! Determinism: each task owns its outputs and fixes its own reduction order, so results do not
//! depend on the thread count.
const std = @import("std");
const pool = @import("pool.zig");
const simd = @import("simd.zig");
const assert = std.debug.assert;

/// 8 lanes, not simd.native's 16 on AVX-512: measured 15–25% slower at 16 lanes (d12, contexts
/// 64 to 1000, 1 and 2 threads). A 64-channel head is a single 16-lane step of dotRow, and the
/// 16-lane horizontal sum that follows costs more than the FMAs it saves.
const vec = simd.Width(8);
const lanes = vec.lanes;
const V = vec.V;
const load = vec.load;
const store = vec.store;

// ---- attention against a KV cache ----

/// Limits of the stack buffers of one block task (GPT-2 goes up to C = 1600, NH = 25, hs = 64).
pub const max_head_size = 256;
pub const max_heads = 64;
pub const max_channels = 4096;
/// Keys per block: a block task reads key_block whole cache rows of K, then of V, sequentially.
pub const key_block = 64;
/// Scratch for per-block partial results (max, sum, weighted values per head). Rows are processed
/// in groups that fit; one row needs blocks·(C + 2·NH) floats (16 blocks · 792 for d12 at 1024).
/// (Tiny in tests, so that row groups are exercised.)
pub const scratch_floats = if (@import("builtin").is_test) 1 << 9 else 1 << 22;
var scratch: [scratch_floats]f32 align(64) = undefined;

pub const AttentionShape = struct {
    pos0: usize, // absolute position of the first query row
    n: usize, // query rows
    c: usize,
    nh: usize,
    max_t: usize, // rows of each cache

    fn headSize(self: AttentionShape) usize {
        return self.c / self.nh;
    }
    /// Key blocks of the last row (the most any row has).
    fn blocks(self: AttentionShape) usize {
        return std.math.divCeil(usize, self.pos0 + self.n, key_block) catch unreachable;
    }
    /// Floats of partial results per (row, block): per head a max, a sum and hs weighted values.
    fn partialFloats(self: AttentionShape) usize {
        return self.c + 2 * self.nh;
    }
};

/// Whether `attention` can take this shape (its scratch holds at least one row's partials).
pub fn attentionFits(shape: AttentionShape) bool {
    return shape.c <= max_channels and shape.nh <= max_heads and shape.headSize() <= max_head_size and
        shape.blocks() * shape.partialFloats() <= scratch_floats;
}

/// Split-K ("flash-decoding") attention over the cache: task (row, block) reads key_block whole
/// cache rows (all heads, so memory is streamed, not strided by head) and leaves per head the
/// block's max score, the sum of exp(score - max) and Σ exp(score - max)·v; a second pass merges
/// a row's blocks in block order. Block boundaries do not depend on the thread count.
const AttentionContext = struct {
    out: []f32,
    qkv: []const f32,
    k_cache: []const f32,
    v_cache: []const f32,
    shape: AttentionShape,
    /// Where the rows' keys are; k_cache and v_cache hold every cache the rows use.
    placement: Placement,
    /// Key blocks per row in `partials` (the most any row of the call has).
    blocks: usize,
    first_row: usize, // of this group
    /// rows·blocks·partialFloats floats: first every (row, block)'s weighted values (C floats
    /// each), then every (row, block)'s maxes and sums (NH each). The values come first so that
    /// each starts on a 64-byte boundary whenever C is a multiple of 16, whatever NH: a vector
    /// load or store that straddles two cache lines costs about two (measured with 16-lane
    /// vectors: 10–18% slower decode attention when the values followed 2·NH floats of stats).
    partials: []f32,

    const Partial = struct { maxes: []f32, sums: []f32, acc: []f32 };
    /// base: the cache's first float in k_cache / v_cache
    const RowCache = struct { base: usize, keys: []const f32, values: []const f32, position: usize };

    /// The cache row `row` attends over, and its position in it.
    fn rowCache(self: *const AttentionContext, row: usize) RowCache {
        const floats = self.shape.max_t * self.shape.c;
        const cache, const position = switch (self.placement) {
            .consecutive => .{ 0, self.shape.pos0 + row },
            .scattered => |p| .{ @as(usize, @intCast(p.cache_index[row])), @as(usize, @intCast(p.position[row])) },
        };
        return .{ .base = cache * floats, .keys = self.k_cache[cache * floats ..][0..floats], .values = self.v_cache[cache * floats ..][0..floats], .position = position };
    }

    fn partial(self: *const AttentionContext, group_row: usize, block: usize) Partial {
        const s = self.shape;
        const records = self.partials.len / s.partialFloats(); // rows in group · blocks
        const record = group_row * self.blocks + block;
        const stats = self.partials[records * s.c + record * 2 * s.nh ..][0 .. 2 * s.nh];
        return .{ .maxes = stats[0..s.nh], .sums = stats[s.nh..], .acc = self.partials[record * s.c ..][0..s.c] };
    }

    fn blockTask(self: *const AttentionContext, task_index: usize) void {
        const s = self.shape;
        const group_row = task_index / self.blocks;
        const block = task_index % self.blocks;
        const row = self.first_row + group_row;
        const cache = self.rowCache(row);
        const keys = cache.position + 1;
        const begin = block * key_block;
        const part = self.partial(group_row, block);
        const maxes = part.maxes;
        const sums = part.sums;
        const acc = part.acc;
        if (begin >= keys) { // past this row's causal limit
            @memset(maxes, -std.math.inf(f32));
            @memset(sums, 0);
            @memset(acc, 0);
            return;
        }
        const len = @min(key_block, keys - begin);
        const hs = s.headSize();
        const q = self.qkv[row * 3 * s.c ..][0..s.c];
        const scale = 1.0 / @sqrt(@as(f32, @floatFromInt(hs)));
        var scores: [key_block * max_heads]f32 = undefined;
        for (0..len) |j| {
            const key = cache.keys[(begin + j) * s.c ..][0..s.c];
            for (0..s.nh) |h| scores[j * s.nh + h] = dotRow(q[h * hs ..][0..hs], key[h * hs ..][0..hs]) * scale;
        }
        for (0..s.nh) |h| {
            var max: f32 = -std.math.inf(f32);
            for (0..len) |j| max = @max(max, scores[j * s.nh + h]);
            var sum: f32 = 0;
            for (0..len) |j| {
                const w = @exp(scores[j * s.nh + h] - max);
                scores[j * s.nh + h] = w;
                sum += w;
            }
            maxes[h] = max;
            sums[h] = sum;
        }
        @memset(acc, 0);
        for (0..len) |j| {
            const value = cache.values[(begin + j) * s.c ..][0..s.c];
            for (0..s.nh) |h| axpy(acc[h * hs ..][0..hs], scores[j * s.nh + h], value[h * hs ..][0..hs]);
        }
    }

    fn combineTask(self: *const AttentionContext, task_index: usize) void {
        const s = self.shape;
        const group_row = task_index / s.nh;
        const head = task_index % s.nh;
        const row = self.first_row + group_row;
        const hs = s.headSize();
        const used_blocks = std.math.divCeil(usize, self.rowCache(row).position + 1, key_block) catch unreachable;
        var max: f32 = -std.math.inf(f32);
        for (0..used_blocks) |b| max = @max(max, self.partial(group_row, b).maxes[head]);
        var total: f32 = 0;
        var acc: [max_head_size]f32 = undefined;
        @memset(acc[0..hs], 0);
        for (0..used_blocks) |b| {
            const part = self.partial(group_row, b);
            const weight = @exp(part.maxes[head] - max);
            total += part.sums[head] * weight;
            axpy(acc[0..hs], weight, part.acc[head * hs ..][0..hs]);
        }
        const out = self.out[row * s.c + head * hs ..][0..hs];
        const inverse = 1.0 / total;
        for (out, acc[0..hs]) |*o, a| o.* = a * inverse;
    }
};

/// x·w with four independent accumulators (a GPT-2 head of 64 channels is two steps).
fn dotRow(x: []const f32, w: []const f32) f32 {
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

fn axpy(y: []f32, alpha: f32, x: []const f32) void {
    assert(x.len == y.len);
    const alpha_v: V = @splat(alpha);
    var k: usize = 0;
    while (k + lanes <= y.len) : (k += lanes) store(y, k, @mulAdd(V, alpha_v, load(x, k), load(y, k)));
    while (k < y.len) : (k += 1) y[k] = @mulAdd(f32, alpha, x[k], y[k]);
}

/// Where the query rows' keys are.
pub const Placement = union(enum) {
    /// one cache; row i at position pos0 + i (a prompt, or one decode row)
    consecutive,
    /// row i at position[i] of cache cache_index[i] (caches of max_t·c floats, one after another)
    scattered: struct { cache_index: []const i32, position: []const i32 },
};

/// Stores the new rows' keys and values (columns C..2C and 2C..3C of qkv) at cache positions
/// pos0..pos0+n-1, then writes out(n, C) = causal attention of the rows' queries over the cache.
/// Not reentrant (module scratch), like the pool.
pub fn attention(out: []f32, qkv: []const f32, k_cache: []f32, v_cache: []f32, shape: AttentionShape) void {
    const s = shape;
    assert(s.pos0 + s.n <= s.max_t);
    assert(k_cache.len == s.max_t * s.c and v_cache.len == s.max_t * s.c);
    attendPlaced(out, qkv, k_cache, v_cache, s, .consecutive, s.blocks());
}

/// attention() for n rows of different sequences: row i is at position[i] of cache
/// cache_index[i] (k_caches and v_caches hold cache_count caches of max_t·c floats), stores its
/// key and value there and attends over that cache's positions 0..position[i]. The indices must
/// be distinct (checked at the C ABI). shape.pos0 is unused. A row's arithmetic is exactly that of
/// attention() on its own cache at pos0 = position[i], n = 1.
pub fn attentionRows(out: []f32, qkv: []const f32, k_caches: []f32, v_caches: []f32, cache_index: []const i32, position: []const i32, shape: AttentionShape) void {
    const s = shape;
    assert(cache_index.len == s.n and position.len == s.n);
    assert(k_caches.len % (s.max_t * s.c) == 0 and k_caches.len == v_caches.len);
    var last: usize = 0;
    for (position) |p| last = @max(last, @as(usize, @intCast(p)));
    const blocks = std.math.divCeil(usize, last + 1, key_block) catch unreachable;
    attendPlaced(out, qkv, k_caches, v_caches, s, .{ .scattered = .{ .cache_index = cache_index, .position = position } }, blocks);
}

fn attendPlaced(out: []f32, qkv: []const f32, k_caches: []f32, v_caches: []f32, shape: AttentionShape, placement: Placement, blocks: usize) void {
    const s = shape;
    assert(s.n > 0 and s.c > 0 and s.nh > 0 and s.c % s.nh == 0);
    assert(s.c <= max_channels and s.nh <= max_heads and s.headSize() <= max_head_size);
    assert(blocks * s.partialFloats() <= scratch_floats);
    assert(out.len == s.n * s.c and qkv.len == s.n * 3 * s.c);
    const probe = AttentionContext{ .out = out, .qkv = qkv, .k_cache = k_caches, .v_cache = v_caches, .shape = s, .placement = placement, .blocks = blocks, .first_row = 0, .partials = scratch[0..0] };
    for (0..s.n) |row| {
        const cache = probe.rowCache(row);
        const at = cache.base + cache.position * s.c;
        const src = qkv[row * 3 * s.c ..][0 .. 3 * s.c];
        @memcpy(k_caches[at..][0..s.c], src[s.c .. 2 * s.c]);
        @memcpy(v_caches[at..][0..s.c], src[2 * s.c .. 3 * s.c]);
    }
    const row_floats = blocks * s.partialFloats();
    const group_rows = @min(s.n, scratch_floats / row_floats);
    var first_row: usize = 0;
    while (first_row < s.n) : (first_row += group_rows) {
        const rows = @min(group_rows, s.n - first_row);
        var context = probe;
        context.first_row = first_row;
        context.partials = scratch[0 .. rows * row_floats];
        pool.parallelFor(AttentionContext, &context, rows * blocks, AttentionContext.blockTask);
        pool.parallelFor(AttentionContext, &context, rows * s.nh, AttentionContext.combineTask);
    }
}

// ---- copy (bandwidth yardstick) ----

const copy_chunk = 1 << 16; // floats per task: 256 KiB

const CopyContext = struct {
    dst: []f32,
    src: []const f32,
    fn task(self: *const CopyContext, task_index: usize) void {
        const begin = task_index * copy_chunk;
        const end = @min(begin + copy_chunk, self.src.len);
        @memcpy(self.dst[begin..end], self.src[begin..end]);
    }
};

pub fn copy(dst: []f32, src: []const f32) void {
    assert(dst.len == src.len and src.len > 0);
    const context = CopyContext{ .dst = dst, .src = src };
    pool.parallelFor(CopyContext, &context, std.math.divCeil(usize, src.len, copy_chunk) catch unreachable, CopyContext.task);
}

// ---- tests ----

fn fillNormal(random: std.Random, values: []f32) void {
    for (values) |*v| v.* = random.floatNorm(f32);
}

test "attention over a cache matches a float64 reference and fills the cache" {
    const gpa = std.testing.allocator;
    var prng = std.Random.DefaultPrng.init(11);
    const random = prng.random();
    try pool.init(2);
    defer pool.deinit();
    // (pos0, n, c, nh, max_t): a prefill, a single decode row late in the cache, odd head sizes,
    // and enough keys (130) to cross two key blocks.
    for ([_][5]usize{ .{ 0, 5, 12, 3, 8 }, .{ 129, 1, 16, 2, 131 }, .{ 3, 4, 10, 1, 9 }, .{ 60, 70, 8, 2, 130 } }) |dims| {
        const shape = AttentionShape{ .pos0 = dims[0], .n = dims[1], .c = dims[2], .nh = dims[3], .max_t = dims[4] };
        const c = shape.c;
        const hs = c / shape.nh;
        const qkv = try gpa.alloc(f32, shape.n * 3 * c);
        defer gpa.free(qkv);
        const k_cache = try gpa.alloc(f32, shape.max_t * c);
        defer gpa.free(k_cache);
        const v_cache = try gpa.alloc(f32, shape.max_t * c);
        defer gpa.free(v_cache);
        const out = try gpa.alloc(f32, shape.n * c);
        defer gpa.free(out);
        fillNormal(random, qkv);
        fillNormal(random, k_cache);
        fillNormal(random, v_cache);
        attention(out, qkv, k_cache, v_cache, shape);
        for (0..shape.n) |row| {
            try std.testing.expectEqualSlices(f32, qkv[row * 3 * c + c ..][0..c], k_cache[(shape.pos0 + row) * c ..][0..c]);
            try std.testing.expectEqualSlices(f32, qkv[row * 3 * c + 2 * c ..][0..c], v_cache[(shape.pos0 + row) * c ..][0..c]);
            const keys = shape.pos0 + row + 1;
            for (0..shape.nh) |h| {
                var scores = try gpa.alloc(f64, keys);
                defer gpa.free(scores);
                var max: f64 = -std.math.inf(f64);
                for (0..keys) |s| {
                    var dot: f64 = 0;
                    for (0..hs) |d| dot += @as(f64, qkv[row * 3 * c + h * hs + d]) * k_cache[s * c + h * hs + d];
                    scores[s] = dot / @sqrt(@as(f64, @floatFromInt(hs)));
                    max = @max(max, scores[s]);
                }
                var total: f64 = 0;
                for (scores) |*x| {
                    x.* = @exp(x.* - max);
                    total += x.*;
                }
                for (0..hs) |d| {
                    var want: f64 = 0;
                    for (0..keys) |s| want += scores[s] / total * v_cache[s * c + h * hs + d];
                    // Outputs are convex combinations of N(0,1) values; float32 score and exp
                    // rounding (relative ~1e-6 per step, growing with the key count) stays far
                    // below 1e-4, while a wrong key range or scale moves outputs by ~0.1.
                    try std.testing.expectApproxEqAbs(want, out[row * c + h * hs + d], 1e-4);
                }
            }
        }
    }
}

test "attentionRows: each row exactly as attention() on its own cache, caches filled" {
    const gpa = std.testing.allocator;
    var prng = std.Random.DefaultPrng.init(12);
    const random = prng.random();
    try pool.init(2);
    defer pool.deinit();
    // Four rows in caches 3, 0, 2, 5 of 6, at positions across one and several key blocks.
    const c, const nh, const max_t = .{ 16, 2, 200 };
    const cache_index = [_]i32{ 3, 0, 2, 5 };
    const position = [_]i32{ 0, 63, 64, 150 };
    const n = cache_index.len;
    const floats = max_t * c;
    const k_caches = try gpa.alloc(f32, 6 * floats);
    defer gpa.free(k_caches);
    const v_caches = try gpa.alloc(f32, 6 * floats);
    defer gpa.free(v_caches);
    const qkv = try gpa.alloc(f32, n * 3 * c);
    defer gpa.free(qkv);
    const out = try gpa.alloc(f32, n * c);
    defer gpa.free(out);
    fillNormal(random, k_caches);
    fillNormal(random, v_caches);
    fillNormal(random, qkv);
    const k_alone = try gpa.dupe(f32, k_caches);
    defer gpa.free(k_alone);
    const v_alone = try gpa.dupe(f32, v_caches);
    defer gpa.free(v_alone);
    const shape = AttentionShape{ .pos0 = 0, .n = n, .c = c, .nh = nh, .max_t = max_t };
    attentionRows(out, qkv, k_caches, v_caches, &cache_index, &position, shape);
    var want: [c]f32 = undefined;
    for (0..n) |row| {
        const base = @as(usize, @intCast(cache_index[row])) * floats;
        const one = AttentionShape{ .pos0 = @intCast(position[row]), .n = 1, .c = c, .nh = nh, .max_t = max_t };
        attention(&want, qkv[row * 3 * c ..][0 .. 3 * c], k_alone[base..][0..floats], v_alone[base..][0..floats], one);
        try std.testing.expectEqualSlices(f32, &want, out[row * c ..][0..c]);
    }
    try std.testing.expectEqualSlices(f32, k_alone, k_caches);
    try std.testing.expectEqualSlices(f32, v_alone, v_caches);
}

test "copy copies every element, for sizes around the chunk" {
    const gpa = std.testing.allocator;
    try pool.init(2);
    defer pool.deinit();
    for ([_]usize{ 1, copy_chunk - 1, copy_chunk + 3, 3 * copy_chunk }) |n| {
        const src = try gpa.alloc(f32, n);
        defer gpa.free(src);
        const dst = try gpa.alloc(f32, n);
        defer gpa.free(dst);
        for (src, 0..) |*x, i| x.* = @floatFromInt(i);
        @memset(dst, -1);
        copy(dst, src);
        try std.testing.expectEqualSlices(f32, src, dst);
    }
}
