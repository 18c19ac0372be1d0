//! Causal multi-head self-attention, forward and backward, in the FlashAttention-2 manner: scores
//! are computed one (query block × key block) tile at a time and never stored whole, so memory is
//! linear in T. Layout (llm.c's): qkv (B,T,3C) holds per (b,t) the row [q(C) | k(C) | v(C)]; head h
//! uses channels [h·hs, (h+1)·hs), hs = C/NH; out (B,T,C); lse (B,NH,T) is the natural-log
//! logsumexp of each row of scaled scores, the only softmax statistic the backward needs.
//!
//! Forward: tasks own (b, h, query block) and sweep key blocks with an online softmax.
//! Backward: for each (query block i, key block j) pair, with D_t = dout_t·out_t,
//!   P = exp(S − lse), dV_j += Pᵀ·dO_i, dP = dO_i·V_jᵀ, dS = P∘(dP − D)/√hs,
//!   dQ_i += dS·K_j, dK_j += dSᵀ·Q_i.
//! Every dQ_i sums its key blocks in ascending j and every dK_j, dV_j its query blocks in ascending
//! i, whichever of the two schedules below runs, and each pair is computed by the same code: results
//! are bit-identical for any thread count.
const std = @import("std");
const pool = @import("pool.zig");
const simd = @import("simd.zig");
const vmath = @import("vmath.zig");
const expV = vmath.expV;
const expScalar = vmath.expScalar;
const assert = std.debug.assert;

const vec = simd.native;
const lanes = vec.lanes;
const V = vec.V;
const load = vec.load;
const store = vec.store;
/// Query rows and key rows per block: a 64×64 score tile is 16 KiB, three of them fit in L1/L2.
pub const block = 64;
/// Head channels packed (transposed) per pass of the score kernel; larger heads take several passes.
const chunk_channels = 64;
const tile_rows = 6;
const tile_cols = 2 * lanes;

const Tile = [block][block]f32;
const Packed = [chunk_channels][block]f32;

// ---- shapes ----

const Shape = struct {
    b: usize,
    t: usize,
    c: usize,
    nh: usize,
    hs: usize,
    scale: f32,

    fn init(b: usize, t: usize, c: usize, nh: usize) Shape {
        assert(b > 0 and t > 0 and c > 0 and nh > 0);
        assert(c % nh == 0);
        const hs = c / nh;
        return .{ .b = b, .t = t, .c = c, .nh = nh, .hs = hs, .scale = 1.0 / @sqrt(@as(f32, @floatFromInt(hs))) };
    }
    fn blocks(s: Shape) usize {
        return (s.t + block - 1) / block;
    }
    /// Offset of head h's q channels of (b, t=0) in qkv; k is C further, v 2C.
    fn qkvHead(s: Shape, b: usize, h: usize) usize {
        return b * s.t * 3 * s.c + h * s.hs;
    }
    fn outHead(s: Shape, b: usize, h: usize) usize {
        return b * s.t * s.c + h * s.hs;
    }
};

/// One query block [t0, t0+qb) against one key block [s0, s0+kb).
const Pair = struct {
    t0: usize,
    s0: usize,
    qb: usize,
    kb: usize,

    fn init(s: Shape, query_block: usize, key_block: usize) Pair {
        assert(key_block <= query_block);
        const t0 = query_block * block;
        const s0 = key_block * block;
        return .{ .t0 = t0, .s0 = s0, .qb = @min(block, s.t - t0), .kb = @min(block, s.t - s0) };
    }
    /// Keys of the block that query row r may see (causal: s ≤ t).
    fn validKeys(p: Pair, r: usize) usize {
        if (p.t0 + r < p.s0) return 0;
        return @min(p.kb, p.t0 + r - p.s0 + 1);
    }
    /// First query row of the block that sees key column c.
    fn firstQuery(p: Pair, c: usize) usize {
        if (p.s0 + c <= p.t0) return 0;
        return @min(p.qb, p.s0 + c - p.t0);
    }
};

// ---- tile kernels ----

/// tile[r][c] = Σ_d a_(t0+r)[d]·b_(s0+c)[d] for the rows and the key columns the causal mask keeps
/// (columns are computed in groups of 16; the extra ones are never read). Rows of a and b are read
/// at a[t·a_stride ..][0..hs]. b is packed transposed, chunk_channels at a time, zero-padded to
/// whole column groups, so the inner loop is a broadcast of a times two vectors of b.
fn scores(tile: *Tile, pair: Pair, a: []const f32, a_stride: usize, b: []const f32, b_stride: usize, hs: usize, packed_b: *Packed) void {
    var d0: usize = 0;
    while (d0 < hs) : (d0 += chunk_channels) {
        const channels = @min(chunk_channels, hs - d0);
        const padded = (pair.kb + tile_cols - 1) / tile_cols * tile_cols;
        for (0..pair.kb) |c| {
            const row = b[(pair.s0 + c) * b_stride + d0 ..][0..channels];
            for (row, 0..) |x, d| packed_b[d][c] = x;
        }
        for (0..channels) |d| @memset(packed_b[d][pair.kb..padded], 0);
        var r0: usize = 0;
        while (r0 < pair.qb) : (r0 += tile_rows) {
            const rows = @min(tile_rows, pair.qb - r0);
            const columns = pair.validKeys(r0 + rows - 1);
            var c0: usize = 0;
            while (c0 < columns) : (c0 += tile_cols) {
                switch (rows) {
                    inline 1...tile_rows => |R| scoreTile(R, tile, pair.t0, r0, c0, a, a_stride, d0, channels, packed_b),
                    else => unreachable,
                }
            }
        }
    }
}

fn scoreTile(comptime R: usize, tile: *Tile, t0: usize, r0: usize, c0: usize, a: []const f32, a_stride: usize, d0: usize, channels: usize, packed_b: *const Packed) void {
    var acc: [R][2]V = undefined;
    var a_rows: [R][]const f32 = undefined;
    inline for (0..R) |i| {
        a_rows[i] = a[(t0 + r0 + i) * a_stride + d0 ..][0..channels];
        if (d0 == 0) {
            acc[i] = .{ @splat(0), @splat(0) };
        } else {
            acc[i][0] = load(&tile[r0 + i], c0);
            acc[i][1] = load(&tile[r0 + i], c0 + lanes);
        }
    }
    for (0..channels) |d| {
        const b0: V = load(&packed_b[d], c0);
        const b1: V = load(&packed_b[d], c0 + lanes);
        inline for (0..R) |i| {
            const x: V = @splat(a_rows[i][d]);
            acc[i][0] = @mulAdd(V, x, b0, acc[i][0]);
            acc[i][1] = @mulAdd(V, x, b1, acc[i][1]);
        }
    }
    inline for (0..R) |i| {
        store(&tile[r0 + i], c0, acc[i][0]);
        store(&tile[r0 + i], c0 + lanes, acc[i][1]);
    }
}

/// Which index of the coefficient tile runs along the output rows.
const Along = enum {
    /// out rows are the pair's queries (coef[r][c], summed over keys c): dQ, and O in the forward.
    queries,
    /// out rows are the pair's keys (coef[r][c], summed over queries r): dK, dV.
    keys,
};

/// out_i[0..hs] += Σ_k coef(i,k)·src_k[0..hs] over the pair, restricted to the causal range.
/// out rows are at out[(first + i)·out_stride ..], src rows at src[(first' + k)·src_stride ..].
fn accumulate(comptime along: Along, out: []f32, out_stride: usize, pair: Pair, coef: *const Tile, src: []const f32, src_stride: usize, hs: usize) void {
    const out_first, const out_count, const src_first = switch (along) {
        .queries => .{ pair.t0, pair.qb, pair.s0 },
        .keys => .{ pair.s0, pair.kb, pair.t0 },
    };
    var first_row: usize = 0;
    while (first_row < out_count) : (first_row += tile_rows) {
        const rows = @min(tile_rows, out_count - first_row);
        // Coefficients outside the causal range are zero; these bounds skip most of them.
        const k_begin, const k_end = switch (along) {
            .queries => .{ 0, pair.validKeys(first_row + rows - 1) },
            .keys => .{ pair.firstQuery(first_row), pair.qb },
        };
        if (k_begin >= k_end) continue;
        const range = Range{ .out_row = out_first + first_row, .coef_row = first_row, .k_begin = k_begin, .k_end = k_end, .src_row = src_first };
        var d0: usize = 0;
        while (d0 + 2 * lanes <= hs) : (d0 += 2 * lanes) {
            switch (rows) {
                inline 1...tile_rows => |R| accumulateTile(R, 2, along, out, out_stride, range, d0, coef, src, src_stride),
                else => unreachable,
            }
        }
        if (d0 + lanes <= hs) {
            switch (rows) {
                inline 1...tile_rows => |R| accumulateTile(R, 1, along, out, out_stride, range, d0, coef, src, src_stride),
                else => unreachable,
            }
            d0 += lanes;
        }
        for (d0..hs) |d| {
            for (0..rows) |i| {
                var sum = out[(range.out_row + i) * out_stride + d];
                for (k_begin..k_end) |k| sum = @mulAdd(f32, coefAt(along, coef, first_row + i, k), src[(src_first + k) * src_stride + d], sum);
                out[(range.out_row + i) * out_stride + d] = sum;
            }
        }
    }
}

const Range = struct { out_row: usize, coef_row: usize, k_begin: usize, k_end: usize, src_row: usize };

inline fn coefAt(comptime along: Along, coef: *const Tile, i: usize, k: usize) f32 {
    return switch (along) {
        .queries => coef[i][k],
        .keys => coef[k][i],
    };
}

fn accumulateTile(comptime R: usize, comptime vectors: usize, comptime along: Along, out: []f32, out_stride: usize, range: Range, d0: usize, coef: *const Tile, src: []const f32, src_stride: usize) void {
    var acc: [R][vectors]V = undefined;
    inline for (0..R) |i| inline for (0..vectors) |v| {
        acc[i][v] = load(out, (range.out_row + i) * out_stride + d0 + v * lanes);
    };
    for (range.k_begin..range.k_end) |k| {
        const row = src[(range.src_row + k) * src_stride + d0 ..][0 .. vectors * lanes];
        var b: [vectors]V = undefined;
        inline for (0..vectors) |v| b[v] = load(row, v * lanes);
        inline for (0..R) |i| {
            const x: V = @splat(coefAt(along, coef, range.coef_row + i, k));
            inline for (0..vectors) |v| acc[i][v] = @mulAdd(V, x, b[v], acc[i][v]);
        }
    }
    inline for (0..R) |i| inline for (0..vectors) |v| {
        store(out, (range.out_row + i) * out_stride + d0 + v * lanes, acc[i][v]);
    };
}

/// Which of the `lanes` columns starting at c are below n, as a mask.
fn laneMask(c: usize, n: usize) @Vector(lanes, bool) {
    const index = std.simd.iota(u32, lanes) + @as(@Vector(lanes, u32), @splat(@intCast(c)));
    return index < @as(@Vector(lanes, u32), @splat(@intCast(n)));
}

/// row[c] ← exp(row[c]·scale − shift) for c < n and 0 for n ≤ c < kb; returns Σ row. Masked
/// entries are never exponentiated (their lanes are replaced by 0 before they are used).
fn exponentiateRow(row: *[block]f32, n: usize, kb: usize, scale: f32, shift: f32) f32 {
    assert(n >= 1 and n <= kb and kb <= block);
    var sum: V = @splat(0);
    var c: usize = 0;
    while (c < n) : (c += lanes) {
        const x = load(row, c) * @as(V, @splat(scale)) - @as(V, @splat(shift));
        const p = @select(f32, laneMask(c, n), expV(x), @as(V, @splat(0)));
        store(row, c, p);
        sum += p;
    }
    if (c < kb) @memset(row[c..kb], 0);
    return @reduce(.Add, sum);
}

fn rowMax(row: *const [block]f32, n: usize) f32 {
    assert(n >= 1 and n <= block);
    const lowest: V = @splat(-std.math.inf(f32));
    var best = lowest;
    var c: usize = 0;
    while (c < n) : (c += lanes) best = @max(best, @select(f32, laneMask(c, n), load(row, c), lowest));
    return @reduce(.Max, best);
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

fn scaleRow(row: []f32, factor: f32) void {
    for (row) |*x| x.* *= factor;
}

// ---- forward ----

const ForwardContext = struct {
    out: []f32,
    lse: []f32,
    qkv: []const f32,
    shape: Shape,

    fn task(self: *const ForwardContext, index: usize) void {
        const s = self.shape;
        const blocks = s.blocks();
        // The last query blocks see the most keys: hand them out first.
        const query_block = blocks - 1 - index % blocks;
        const bh = index / blocks;
        const b, const h = .{ bh / s.nh, bh % s.nh };
        const q = self.qkv[s.qkvHead(b, h)..];
        const k = q[s.c..];
        const v = q[2 * s.c ..];
        const out = self.out[s.outHead(b, h)..];
        const lse = self.lse[bh * s.t ..][0..s.t];

        var tile: Tile align(64) = undefined;
        var packed_b: Packed align(64) = undefined;
        var running_max: [block]f32 = undefined;
        var running_sum: [block]f32 = undefined;
        const first = Pair.init(s, query_block, 0);
        @memset(running_max[0..first.qb], -std.math.inf(f32));
        @memset(running_sum[0..first.qb], 0);
        for (0..first.qb) |r| @memset(out[(first.t0 + r) * s.c ..][0..s.hs], 0);

        for (0..query_block + 1) |key_block| {
            const pair = Pair.init(s, query_block, key_block);
            scores(&tile, pair, q, 3 * s.c, k, 3 * s.c, s.hs, &packed_b);
            for (0..pair.qb) |r| {
                const n = pair.validKeys(r);
                if (n == 0) {
                    @memset(tile[r][0..pair.kb], 0);
                    continue;
                }
                const new_max = @max(running_max[r], rowMax(&tile[r], n) * s.scale);
                const seen_before = running_max[r] != -std.math.inf(f32);
                const rescale: f32 = if (seen_before) expScalar(running_max[r] - new_max) else 0;
                running_sum[r] = running_sum[r] * rescale + exponentiateRow(&tile[r], n, pair.kb, s.scale, new_max);
                running_max[r] = new_max;
                if (seen_before and rescale != 1) scaleRow(out[(pair.t0 + r) * s.c ..][0..s.hs], rescale);
            }
            accumulate(.queries, out, s.c, pair, &tile, v, 3 * s.c, s.hs);
        }
        for (0..first.qb) |r| {
            // Row t sees key 0, so every row has a finite max and a sum of at least 1.
            assert(running_sum[r] >= 1);
            scaleRow(out[(first.t0 + r) * s.c ..][0..s.hs], 1 / running_sum[r]);
            lse[first.t0 + r] = running_max[r] + @log(running_sum[r]);
        }
    }
};

pub fn forward(out: []f32, lse: []f32, qkv: []const f32, b: usize, t: usize, c: usize, nh: usize) void {
    const shape = Shape.init(b, t, c, nh);
    assert(out.len == b * t * c and lse.len == b * nh * t and qkv.len == b * t * 3 * c);
    const context = ForwardContext{ .out = out, .lse = lse, .qkv = qkv, .shape = shape };
    pool.parallelFor(ForwardContext, &context, b * nh * shape.blocks(), ForwardContext.task);
}

// ---- backward ----

const Update = enum { all, keys_values, queries };

const BackwardContext = struct {
    dqkv: []f32,
    dout: []const f32,
    qkv: []const f32,
    out: []const f32,
    lse: []const f32,
    shape: Shape,

    /// Whole-head schedule: one task per (b, h), key blocks outer, query blocks inner.
    fn headTask(self: *const BackwardContext, bh: usize) void {
        const s = self.shape;
        var scratch: Scratch = undefined;
        for (0..s.t) |t| self.zeroRow(bh, t, 0, 3);
        for (0..s.blocks()) |key_block| {
            for (key_block..s.blocks()) |query_block| self.pair(&scratch, bh, Pair.init(s, query_block, key_block), .all);
        }
    }

    /// Split schedule, pass 1: one task per (b, h, key block) writes that block's dK and dV.
    fn keyBlockTask(self: *const BackwardContext, index: usize) void {
        const s = self.shape;
        const blocks = s.blocks();
        const bh, const key_block = .{ index / blocks, index % blocks }; // low j first: most work
        var scratch: Scratch = undefined;
        const first = Pair.init(s, key_block, key_block);
        for (0..first.kb) |c| self.zeroRow(bh, first.s0 + c, 1, 3);
        for (key_block..blocks) |query_block| self.pair(&scratch, bh, Pair.init(s, query_block, key_block), .keys_values);
    }

    /// Split schedule, pass 2: one task per (b, h, query block) writes that block's dQ.
    fn queryBlockTask(self: *const BackwardContext, index: usize) void {
        const s = self.shape;
        const blocks = s.blocks();
        const bh, const query_block = .{ index / blocks, blocks - 1 - index % blocks };
        var scratch: Scratch = undefined;
        const first = Pair.init(s, query_block, 0);
        for (0..first.qb) |r| self.zeroRow(bh, first.t0 + r, 0, 1);
        for (0..query_block + 1) |key_block| self.pair(&scratch, bh, Pair.init(s, query_block, key_block), .queries);
    }

    /// Zeroes the head's gradient rows of q, k or v (parts [part_begin, part_end) of 0=q 1=k 2=v).
    fn zeroRow(self: *const BackwardContext, bh: usize, t: usize, part_begin: usize, part_end: usize) void {
        const s = self.shape;
        const base = s.qkvHead(bh / s.nh, bh % s.nh) + t * 3 * s.c;
        for (part_begin..part_end) |part| @memset(self.dqkv[base + part * s.c ..][0..s.hs], 0);
    }

    fn pair(self: *const BackwardContext, scratch: *Scratch, bh: usize, p: Pair, update: Update) void {
        const s = self.shape;
        const b, const h = .{ bh / s.nh, bh % s.nh };
        const row_stride = 3 * s.c;
        const q = self.qkv[s.qkvHead(b, h)..];
        const k = q[s.c..];
        const v = q[2 * s.c ..];
        const dq = self.dqkv[s.qkvHead(b, h)..];
        const dk = dq[s.c..];
        const dv = dq[2 * s.c ..];
        const dout = self.dout[s.outHead(b, h)..];
        const out = self.out[s.outHead(b, h)..];
        const lse = self.lse[bh * s.t ..][0..s.t];

        const probabilities = &scratch.probabilities;
        const dscores = &scratch.dscores;
        scores(probabilities, p, q, row_stride, k, row_stride, s.hs, &scratch.packed_b);
        for (0..p.qb) |r| {
            const n = p.validKeys(r);
            if (n == 0) @memset(probabilities[r][0..p.kb], 0) else _ = exponentiateRow(&probabilities[r], n, p.kb, s.scale, lse[p.t0 + r]);
        }
        if (update != .queries) accumulate(.keys, dv, row_stride, p, probabilities, dout, s.c, s.hs);

        scores(dscores, p, dout, s.c, v, row_stride, s.hs, &scratch.packed_b);
        for (0..p.qb) |r| {
            const t = p.t0 + r;
            const n = p.validKeys(r);
            const d_row = dot(dout[t * s.c ..][0..s.hs], out[t * s.c ..][0..s.hs]);
            for (0..n) |c| dscores[r][c] = probabilities[r][c] * (dscores[r][c] - d_row) * s.scale;
            @memset(dscores[r][n..p.kb], 0);
        }
        if (update != .keys_values) accumulate(.queries, dq, row_stride, p, dscores, k, row_stride, s.hs);
        if (update != .queries) accumulate(.keys, dk, row_stride, p, dscores, q, row_stride, s.hs);
    }
};

const Scratch = struct {
    probabilities: Tile align(64),
    dscores: Tile align(64),
    packed_b: Packed align(64),
};

/// Whole heads unless that leaves threads idle: the split schedule recomputes scores and dP
/// (about 7 tile products per pair instead of 5) but spreads the work over key and query blocks.
fn useHeadSchedule(heads: usize, blocks: usize, threads: usize) bool {
    if (blocks == 1 or threads == 1) return true;
    const rounds = (heads + threads - 1) / threads;
    return rounds * 5 * threads <= 7 * heads;
}

pub fn backward(dqkv: []f32, dout: []const f32, qkv: []const f32, out: []const f32, lse: []const f32, b: usize, t: usize, c: usize, nh: usize) void {
    const shape = Shape.init(b, t, c, nh);
    assert(dqkv.len == b * t * 3 * c and qkv.len == b * t * 3 * c);
    assert(dout.len == b * t * c and out.len == b * t * c and lse.len == b * nh * t);
    const context = BackwardContext{ .dqkv = dqkv, .dout = dout, .qkv = qkv, .out = out, .lse = lse, .shape = shape };
    backwardWith(&context, useHeadSchedule(b * nh, shape.blocks(), pool.threads()));
}

fn backwardWith(context: *const BackwardContext, head_schedule: bool) void {
    const s = context.shape;
    if (head_schedule) {
        pool.parallelFor(BackwardContext, context, s.b * s.nh, BackwardContext.headTask);
    } else {
        pool.parallelFor(BackwardContext, context, s.b * s.nh * s.blocks(), BackwardContext.keyBlockTask);
        pool.parallelFor(BackwardContext, context, s.b * s.nh * s.blocks(), BackwardContext.queryBlockTask);
    }
}

// ---- tests ----

const testing = std.testing;

/// Naive float64 attention: full score rows, two-pass softmax.
fn referenceForward(out: []f64, lse: []f64, qkv: []const f32, s: Shape) void {
    const scores_row = testing.allocator.alloc(f64, s.t) catch unreachable;
    defer testing.allocator.free(scores_row);
    for (0..s.b) |b| for (0..s.nh) |h| for (0..s.t) |t| {
        const q = qkv[s.qkvHead(b, h) + t * 3 * s.c ..][0..s.hs];
        var max: f64 = -std.math.inf(f64);
        for (0..t + 1) |u| {
            const k = qkv[s.qkvHead(b, h) + u * 3 * s.c + s.c ..][0..s.hs];
            var sum: f64 = 0;
            for (q, k) |x, y| sum += @as(f64, x) * y;
            scores_row[u] = sum / @sqrt(@as(f64, @floatFromInt(s.hs)));
            max = @max(max, scores_row[u]);
        }
        var total: f64 = 0;
        for (scores_row[0 .. t + 1]) |*x| {
            x.* = @exp(x.* - max);
            total += x.*;
        }
        const o = out[s.outHead(b, h) + t * s.c ..][0..s.hs];
        @memset(o, 0);
        for (0..t + 1) |u| {
            const vrow = qkv[s.qkvHead(b, h) + u * 3 * s.c + 2 * s.c ..][0..s.hs];
            for (o, vrow) |*x, y| x.* += scores_row[u] / total * y;
        }
        lse[(b * s.nh + h) * s.t + t] = max + @log(total);
    };
}

fn randomArray(random: std.Random, n: usize) ![]f32 {
    const a = try testing.allocator.alloc(f32, n);
    for (a) |*x| x.* = random.floatNorm(f32);
    return a;
}

test "forward matches a float64 reference, and backward is deterministic across schedules" {
    var prng = std.Random.DefaultPrng.init(7);
    const random = prng.random();
    try pool.init(2);
    defer pool.deinit();
    // (B, T, C, NH): T=1, hs not a multiple of 8, hs=1, T across block boundaries.
    for ([_][4]usize{ .{ 1, 1, 8, 1 }, .{ 2, 7, 15, 3 }, .{ 1, 65, 3, 3 }, .{ 2, 130, 40, 5 }, .{ 1, 129, 128, 1 } }) |dims| {
        const b, const t, const c, const nh = dims;
        const s = Shape.init(b, t, c, nh);
        const qkv = try randomArray(random, b * t * 3 * c);
        defer testing.allocator.free(qkv);
        const out = try testing.allocator.alloc(f32, b * t * c);
        defer testing.allocator.free(out);
        const lse = try testing.allocator.alloc(f32, b * nh * t);
        defer testing.allocator.free(lse);
        const want_out = try testing.allocator.alloc(f64, b * t * c);
        defer testing.allocator.free(want_out);
        const want_lse = try testing.allocator.alloc(f64, b * nh * t);
        defer testing.allocator.free(want_lse);
        forward(out, lse, qkv, b, t, c, nh);
        referenceForward(want_out, want_lse, qkv, s);
        // Scores of unit normals over hs ≤ 128 channels stay below ~10 in size; errors of a few
        // ulp times (hs + T) are far below this tolerance, wrong indices are far above it.
        for (out, want_out) |got, want| try testing.expectApproxEqAbs(want, @as(f64, got), 2e-5);
        for (lse, want_lse) |got, want| try testing.expectApproxEqAbs(want, @as(f64, got), 2e-5);

        const dout = try randomArray(random, b * t * c);
        defer testing.allocator.free(dout);
        const first = try testing.allocator.alloc(f32, b * t * 3 * c);
        defer testing.allocator.free(first);
        const second = try testing.allocator.alloc(f32, b * t * 3 * c);
        defer testing.allocator.free(second);
        const context = BackwardContext{ .dqkv = first, .dout = dout, .qkv = qkv, .out = out, .lse = lse, .shape = s };
        @memset(first, std.math.nan(f32));
        backwardWith(&context, true);
        var split = context;
        split.dqkv = second;
        @memset(second, std.math.nan(f32));
        backwardWith(&split, false);
        try testing.expectEqualSlices(u8, std.mem.sliceAsBytes(first), std.mem.sliceAsBytes(second));
    }
}

test "backward matches a central difference of the forward" {
    // L = Σ w⊙out. Float32 forward differences are noisy, so the check is loose; the TS tests
    // compare against an exact float64 backward.
    var prng = std.Random.DefaultPrng.init(11);
    const random = prng.random();
    const b, const t, const c, const nh = .{ 1, 5, 6, 2 };
    const qkv = try randomArray(random, b * t * 3 * c);
    defer testing.allocator.free(qkv);
    const w = try randomArray(random, b * t * c);
    defer testing.allocator.free(w);
    var out: [b * t * c]f32 = undefined;
    var lse: [b * nh * t]f32 = undefined;
    var dqkv: [b * t * 3 * c]f32 = undefined;
    forward(&out, &lse, qkv, b, t, c, nh);
    backward(&dqkv, w, qkv, &out, &lse, b, t, c, nh);
    const s = Shape.init(b, t, c, nh);
    var ref_out: [b * t * c]f64 = undefined;
    var ref_lse: [b * nh * t]f64 = undefined;
    const step = 1e-2;
    for (0..qkv.len) |i| {
        const saved = qkv[i];
        var loss: [2]f64 = undefined;
        for ([_]f32{ step, -step }, 0..) |delta, side| {
            qkv[i] = saved + delta;
            referenceForward(&ref_out, &ref_lse, qkv, s);
            loss[side] = 0;
            for (ref_out, w) |o, x| loss[side] += o * x;
        }
        const width = @as(f64, saved + step) - @as(f64, saved - step);
        qkv[i] = saved;
        const numeric = (loss[0] - loss[1]) / width;
        try testing.expectApproxEqAbs(numeric, @as(f64, dqkv[i]), 1e-3);
    }
}
