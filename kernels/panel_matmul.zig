//! The forward matmul of inference, on weights packed once at load time:
//!   out(bt,oc) = inp(bt,c) · W(oc,c)ᵀ + bias(oc)
//! pack() lays W out in panels of `panel_width` output columns, k-major inside a panel:
//!   packed[p·c·P + k·P + j] = W[p·P + j][k]          (P = panel_width; 0 past oc)
//! so that a panel is one sequential stream of memory and each of its rows of P weights is
//! multiplied by one broadcast input value per input row: no horizontal sums, and 2·rows FMAs per
//! 2 + rows loads (matmul.zig's few-row path, on W as it is, needs a horizontal sum per output and
//! ran at 42% of the FMA peak with W in L2; this runs at the peak's 80–90%).
//!
//! Why inference wants it: a decode pass of n sequences reads every weight once, whatever n, so
//! its time is memory time + compute time where the two do not overlap. Cheaper compute is what
//! lets 8 rows cost little more than one.
//!
//! Every output element is one FMA chain over k = 0, 1, …, c-1, started at 0, with the bias added
//! last — for every row count, row grouping and thread count. So a row's result never depends on
//! which other rows share the call (batched decoding relies on it), and a prompt's rows come out
//! exactly as they would one at a time.
const std = @import("std");
const pool = @import("pool.zig");
const simd = @import("simd.zig");
const assert = std.debug.assert;

const vec = simd.native;
const lanes = vec.lanes;
const V = vec.V;
const load = vec.load;
const store = vec.store;

/// Vectors per packed row of a panel.
const panel_vectors = 2;
/// Output columns per panel (32 with AVX-512, 16 with AVX2).
pub const panel_width = panel_vectors * lanes;
/// Input rows per pass over a panel: rows·2 accumulators + 2 weight vectors + 1 broadcast fit the
/// 32 vector registers of AVX-512 (12 rows: 27) and the 16 of AVX2 (6 rows: 15). More rows take
/// several passes, the later ones reading the panel from L2.
const rows_per_pass = if (simd.has_avx512f) 12 else 6;
/// How far ahead of its loads a pass prefetches the weights, into L2. On this VM one core streams
/// ~14 GB/s, limited by the misses it keeps in flight; with 8 rows of FMAs between loads the
/// out-of-order window holds too few of them, and memory time and compute time add up. Measured
/// (Intel Xeon, AVX-512, d12's weights out of cache, 2 threads): a decode pass's matmuls at 8
/// rows took 28.8 ms without, 21.7–22.7 ms with 2–8 KiB ahead (t1), and 19.2 ms at one row (from
/// 19.6); 32 KiB ahead or into L1 (t0) helped less.
const prefetch_floats = 4096 / @sizeOf(f32);
/// Tasks per thread: each task takes consecutive panels, so that a pass's prefetch runs on into
/// the task's next panel instead of one another thread is reading.
const tasks_per_thread = 8;

pub fn panelCount(oc: usize) usize {
    return std.math.divCeil(usize, oc, panel_width) catch unreachable;
}

/// Floats of the packed form of a (oc, c) weight (oc rounded up to whole panels).
pub fn packedFloats(c: usize, oc: usize) usize {
    return panelCount(oc) * panel_width * c;
}

// ---- pack ----

const PackContext = struct {
    packed_weight: []f32,
    weight: []const f32,
    c: usize,
    oc: usize,
    fn task(self: *const PackContext, panel: usize) void {
        const dst = self.packed_weight[panel * self.c * panel_width ..][0 .. self.c * panel_width];
        const col0 = panel * panel_width;
        const cols = @min(panel_width, self.oc - col0);
        for (0..self.c) |k| {
            const row = dst[k * panel_width ..][0..panel_width];
            for (0..cols) |j| row[j] = self.weight[(col0 + j) * self.c + k];
            @memset(row[cols..], 0);
        }
    }
};

/// packed_weight (packedFloats(c, oc)) = W (oc, c) in panels; panels split over the pool.
pub fn pack(packed_weight: []f32, weight: []const f32, c: usize, oc: usize) void {
    assert(c > 0 and oc > 0);
    assert(weight.len == oc * c and packed_weight.len == packedFloats(c, oc));
    const context = PackContext{ .packed_weight = packed_weight, .weight = weight, .c = c, .oc = oc };
    pool.parallelFor(PackContext, &context, panelCount(oc), PackContext.task);
}

// ---- forward ----

const ForwardContext = struct {
    out: []f32,
    inp: []const f32,
    packed_weight: []const f32,
    bias: ?[]const f32,
    bt: usize,
    c: usize,
    oc: usize,

    panels_per_task: usize,

    fn task(self: *const ForwardContext, index: usize) void {
        const first = index * self.panels_per_task;
        const last = @min(panelCount(self.oc), first + self.panels_per_task);
        for (first..last) |panel| self.panelTask(panel);
    }

    /// One panel: every input row against it, rows_per_pass rows at a time.
    fn panelTask(self: *const ForwardContext, panel: usize) void {
        var row: usize = 0;
        while (row + rows_per_pass <= self.bt) : (row += rows_per_pass) self.pass(rows_per_pass, row, panel);
        const rest = self.bt - row;
        // One instantiation per remainder, each with its accumulators in registers.
        inline for (1..rows_per_pass) |rows| {
            if (rest == rows) self.pass(rows, row, panel);
        }
    }

    inline fn pass(self: *const ForwardContext, comptime rows: usize, row0: usize, panel: usize) void {
        const c = self.c;
        const w = self.packed_weight[panel * c * panel_width ..][0 .. c * panel_width];
        var acc: [rows][panel_vectors]V = @splat(@splat(@splat(0)));
        // Past the end of the packed weight only on the task's last panel: a prefetch never faults.
        const ahead = w.ptr + prefetch_floats;
        for (0..c) |k| {
            inline for (0..panel_vectors) |j| @prefetch(ahead + k * panel_width + j * lanes, .{ .locality = 2 });
            var wv: [panel_vectors]V = undefined;
            inline for (0..panel_vectors) |j| wv[j] = load(w, k * panel_width + j * lanes);
            inline for (0..rows) |i| {
                const x: V = @splat(self.inp[(row0 + i) * c + k]);
                inline for (0..panel_vectors) |j| acc[i][j] = @mulAdd(V, x, wv[j], acc[i][j]);
            }
        }
        inline for (0..rows) |i| self.storeRow(row0 + i, panel, acc[i]);
    }

    inline fn storeRow(self: *const ForwardContext, row: usize, panel: usize, acc: [panel_vectors]V) void {
        const col0 = panel * panel_width;
        const out_row = self.out[row * self.oc ..][0..self.oc];
        if (col0 + panel_width <= self.oc) {
            inline for (0..panel_vectors) |j| {
                const at = col0 + j * lanes;
                store(out_row, at, if (self.bias) |b| load(b, at) + acc[j] else acc[j]);
            }
            return;
        }
        const sums: [panel_width]f32 = @bitCast(acc);
        for (col0..self.oc, 0..) |col, j| out_row[col] = if (self.bias) |b| b[col] + sums[j] else sums[j];
    }
};

pub fn forward(out: []f32, inp: []const f32, packed_weight: []const f32, bias: ?[]const f32, bt: usize, c: usize, oc: usize) void {
    assert(bt > 0 and c > 0 and oc > 0);
    assert(out.len == bt * oc and inp.len == bt * c and packed_weight.len == packedFloats(c, oc));
    if (bias) |b| assert(b.len == oc);
    const panels = panelCount(oc);
    const panels_per_task = @max(1, panels / (pool.threads() * tasks_per_thread));
    const context = ForwardContext{ .out = out, .inp = inp, .packed_weight = packed_weight, .bias = bias, .bt = bt, .c = c, .oc = oc, .panels_per_task = panels_per_task };
    pool.parallelFor(ForwardContext, &context, std.math.divCeil(usize, panels, panels_per_task) catch unreachable, ForwardContext.task);
}

// ---- tests ----

const Problem = struct {
    inp: []f32,
    weight: []f32,
    bias: []f32,
    packed_weight: []f32,
    out: []f32,

    fn init(gpa: std.mem.Allocator, seed: u64, bt: usize, c: usize, oc: usize) !Problem {
        var prng = std.Random.DefaultPrng.init(seed);
        const random = prng.random();
        const p = Problem{
            .inp = try gpa.alloc(f32, bt * c),
            .weight = try gpa.alloc(f32, oc * c),
            .bias = try gpa.alloc(f32, oc),
            .packed_weight = try gpa.alloc(f32, packedFloats(c, oc)),
            .out = try gpa.alloc(f32, bt * oc),
        };
        for (p.inp) |*v| v.* = random.floatNorm(f32);
        for (p.weight) |*v| v.* = random.floatNorm(f32);
        for (p.bias) |*v| v.* = random.floatNorm(f32);
        pack(p.packed_weight, p.weight, c, oc);
        return p;
    }

    fn deinit(self: Problem, gpa: std.mem.Allocator) void {
        for ([_][]f32{ self.inp, self.weight, self.bias, self.packed_weight, self.out }) |s| gpa.free(s);
    }
};

test "packed forward matches a float64 reference; each output is the in-order fp32 FMA chain" {
    try pool.init(2);
    defer pool.deinit();
    const gpa = std.testing.allocator;
    // Rows around rows_per_pass and its multiples, C around the vector width, OC around the panel.
    const shapes = [_][3]usize{ .{ 1, 1, 1 }, .{ 1, 9, 5 }, .{ 3, 17, panel_width + 3 }, .{ rows_per_pass, 33, 2 * panel_width }, .{ rows_per_pass + 1, 65, 70 }, .{ 2 * rows_per_pass + 5, 300, 45 }, .{ 8, 768, 37 } };
    for (shapes, 0..) |s, index| {
        const bt, const c, const oc = s;
        const p = try Problem.init(gpa, 1000 + index, bt, c, oc);
        defer p.deinit(gpa);
        forward(p.out, p.inp, p.packed_weight, p.bias, bt, c, oc);
        for (0..bt) |i| for (0..oc) |o| {
            var sum64: f64 = p.bias[o];
            var chain: f32 = 0;
            for (0..c) |k| {
                sum64 += @as(f64, p.inp[i * c + k]) * p.weight[o * c + k];
                chain = @mulAdd(f32, p.inp[i * c + k], p.weight[o * c + k], chain);
            }
            const got = p.out[i * oc + o];
            // The arithmetic is exactly the scalar chain; and the chain is near the exact sum
            // (N(0,1) products: a wrong or missing term is of order 1).
            try std.testing.expectEqual(p.bias[o] + chain, got);
            try std.testing.expectApproxEqAbs(sum64, @as(f64, got), 1e-5 * @as(f64, @floatFromInt(c + 2)) * 4);
        };
    }
}

test "a row's result does not depend on the other rows or the thread count" {
    const gpa = std.testing.allocator;
    const bt, const c, const oc = .{ 2 * rows_per_pass + 3, 100, 3 * panel_width - 1 };
    const p = try Problem.init(gpa, 77, bt, c, oc);
    defer p.deinit(gpa);
    const alone = try gpa.alloc(f32, oc);
    defer gpa.free(alone);
    for ([_]usize{ 1, 3 }) |threads| {
        try pool.init(threads);
        defer pool.deinit();
        forward(p.out, p.inp, p.packed_weight, null, bt, c, oc);
        for (0..bt) |i| {
            forward(alone, p.inp[i * c ..][0..c], p.packed_weight, null, 1, c, oc);
            try std.testing.expectEqualSlices(f32, alone, p.out[i * oc ..][0..oc]);
        }
    }
}

test "pack zero-fills the columns past oc" {
    try pool.init(1);
    defer pool.deinit();
    const gpa = std.testing.allocator;
    const p = try Problem.init(gpa, 5, 1, 3, panel_width + 1);
    defer p.deinit(gpa);
    const last_panel = p.packed_weight[panel_width * 3 ..];
    for (0..3) |k| {
        try std.testing.expectEqual(p.weight[panel_width * 3 + k], last_panel[k * panel_width]);
        for (last_panel[k * panel_width + 1 ..][0 .. panel_width - 1]) |v| try std.testing.expectEqual(@as(f32, 0), v);
    }
}
