//! A packed, register-blocked, multithreaded SGEMM core: C(M,N) = init + A(M,K) · B(K,N), where
//! the operands are addressed through strides so the three layouts of a linear layer (NT, NN, TN)
//! share one implementation. GotoBLAS/BLIS structure:
//!   for each N block and M block (as large as the packing budgets allow, all of K):
//!     1. pack A's block into mr-row panels and B's block into nr-column panels (parallel; panels
//!        are zero-padded so the microkernel never sees a ragged edge),
//!     2. compute (parallel over tasks = M sub-blocks × N sub-blocks): a task walks K in blocks
//!        of kc, keeping its C sub-block in L2; per K block each B micro-panel (kc×nr) stays in
//!        L1 while the A panels of the sub-block stream past it from L2.
//! K is split into chunks (k_chunk) only when long; two barriers per block and chunk.
//! Determinism: every output element is computed by exactly one microkernel call per K block, in
//! the fixed K-block order, with a sequential k loop inside. Task boundaries change who computes a
//! tile, never how; results are bit-identical for any thread count.
const std = @import("std");
const pool = @import("pool.zig");
const simd = @import("simd.zig");
const assert = std.debug.assert;

const has_avx512 = simd.has_avx512f;
const vec = simd.native;
const lanes = vec.lanes;
const V = vec.V;
const load = vec.load;
const store = vec.store;
/// Register tile: mr rows × nr columns = 2·mr accumulators. AVX2 has 16 ymm registers: 6×16 uses
/// 12 accumulators + 2 B vectors + 1 broadcast. AVX-512 has 32 zmm registers: 12×32 uses 24 + 3.
pub const mr = if (has_avx512) 12 else 6;
pub const nr = 2 * lanes;

/// Cache blocking. A kc×nr B micro-panel must sit in L1 (32–48 KiB) next to the streaming A
/// panel; a task's own block (task_panels panels × the K chunk) and its share of C must sit in L2
/// (1–2 MiB); the shared operand's packed block (capped by its budget, in 32-bit slots) in L3.
pub const Blocking = struct {
    kc: usize,
    k_chunk: usize, // K is packed and walked in chunks of this many (a multiple of kc)
    task_panels: usize, // at most this many B panels per task (when the tasks split B)
    task_panels_a: usize, // at most this many A panels per task (when the tasks split A)
    shared_pack_floats: usize,
};
pub const default_blocking: Blocking = if (has_avx512)
    .{ .kc = 256, .k_chunk = 1536, .task_panels = 4, .task_panels_a = 32, .shared_pack_floats = 4 << 20 }
else
    .{ .kc = 256, .k_chunk = 1536, .task_panels = 4, .task_panels_a = 16, .shared_pack_floats = 4 << 20 };

/// Element (row, p) of an operand sits at ptr[row·row_stride + p·k_stride]; "row" is the M index
/// for A and the N index for B, p is the K index.
pub const Operand = struct {
    ptr: [*]const f32,
    row_stride: usize,
    k_stride: usize,
};

pub const Problem = struct {
    m: usize,
    n: usize,
    k: usize,
    a: Operand,
    b: Operand,
    c: [*]f32,
    ldc: usize,
    /// true: C += A·B. false: C = bias + A·B (bias per column, or zero when null).
    accumulate: bool,
    bias: ?[*]const f32 = null,
    precision: Precision = .fp32,
};

/// How the microkernel multiplies (issue 9, like torch.set_float32_matmul_precision):
///   fp32  FMAs on f32 operands;
///   bf16  operands rounded to bf16 (round to nearest even) when they are packed, multiplied in
///         pairs by vdpbf16ps (AVX512_BF16) into f32 accumulators; C, the bias and everything
///         outside the GEMM stay f32.
pub const Precision = enum(u8) { fp32 = 0, bf16 = 1 };

/// Whether the bf16 GEMM can run: the build target must have AVX512_BF16 (the instruction is
/// compiled only then) and so must the CPU (asked once, at the first call).
pub fn bf16Available() bool {
    if (!simd.has_avx512bf16) return false;
    const Cached = struct {
        var state = std.atomic.Value(u8).init(0); // 0 unknown, 1 no, 2 yes
    };
    var known = Cached.state.load(.acquire);
    if (known == 0) {
        known = if (simd.cpuFeatures().avx512bf16) 2 else 1;
        Cached.state.store(known, .release);
    }
    return known == 2;
}

// Packing buffers, never freed (the library lives as long as the process). A packed panel is an
// array of 32-bit slots: one f32, or one pair of bf16 values (two consecutive k). The shared
// buffer reserves its whole budget at the first call (mmap: pages cost memory only once touched);
// each thread's own buffer grows to the largest task block it has packed. Only one GEMM runs at a
// time (the pool is not reentrant).
var shared_pack: []align(64) u32 = &.{};
/// Each pool thread's own packing buffer (grown on first use, then reused for the process).
threadlocal var own_pack: []align(64) u32 = &.{};

fn ownBuffer(count: usize) [*]u32 {
    ensureCapacity(&own_pack, count, count);
    return own_pack.ptr;
}

fn ensureCapacity(buffer: *[]align(64) u32, count: usize, reserve: usize) void {
    if (buffer.len >= count) return;
    const allocator = std.heap.page_allocator;
    if (buffer.len > 0) allocator.free(buffer.*);
    buffer.* = allocator.alignedAlloc(u32, .@"64", @max(count, reserve)) catch @panic("llm.ts matmul: out of memory for packing buffers");
}

const Init = enum { load, bias, zero };
const U = @Vector(lanes, u32);

/// f32 → bf16, round to nearest even (NaN stays a quiet NaN, overflow rounds to ±inf).
pub fn bf16Bits(x: f32) u16 {
    const bits: u32 = @bitCast(x);
    if (bits & 0x7fff_ffff > 0x7f80_0000) return @truncate((bits >> 16) | 0x0040);
    return @truncate((bits + 0x7fff + ((bits >> 16) & 1)) >> 16);
}

/// One slot of a bf16 panel: k in the low half, k+1 in the high half (the instruction's pair order).
inline fn bf16Pair(low: f32, high: f32) u32 {
    return @as(u32, bf16Bits(low)) | @as(u32, bf16Bits(high)) << 16;
}

/// The same rounding on a vector of lanes values.
inline fn bf16BitsV(x: V) U {
    const bits: U = @bitCast(x);
    const nan = (bits & @as(U, @splat(0x7fff_ffff))) > @as(U, @splat(0x7f80_0000));
    const rounded = (bits +% @as(U, @splat(0x7fff)) +% ((bits >> @splat(16)) & @as(U, @splat(1)))) >> @splat(16);
    return @select(u32, nan, (bits >> @splat(16)) | @as(U, @splat(0x0040)), rounded);
}

fn Kernels(comptime precision: Precision) type {
    return struct {
        /// K values per 32-bit slot of a packed panel.
        const k_per_slot = if (precision == .bf16) 2 else 1;

        fn slots(k: usize) usize {
            return divCeil(k, k_per_slot);
        }

        /// The register tile: c[0..mr][0..nr] (row stride ldc) = init + Σ over `steps` slots of
        /// a[s·mr + i]·b[s·nr + j] (a bf16 slot contributes its two products). Accumulators live in
        /// registers for the whole loop; nothing is reduced horizontally.
        inline fn microkernel(steps: usize, a: [*]const u32, b: [*]const u32, c: [*]f32, ldc: usize, init: Init, bias: ?[*]const f32) void {
            var acc: [mr][2]V = undefined;
            switch (init) {
                .load => inline for (0..mr) |i| {
                    // C is added after the k loop: the tile (often in L3 or memory: C is re-read
                    // once per K block) arrives during the loop instead of stalling its start.
                    @prefetch(c + i * ldc, .{ .rw = .write, .locality = 3 });
                    @prefetch(c + i * ldc + nr - 1, .{ .rw = .write, .locality = 3 });
                    acc[i] = .{ @splat(0), @splat(0) };
                },
                .bias => {
                    const b0: V = load(bias.?[0..nr], 0);
                    const b1: V = load(bias.?[0..nr], lanes);
                    inline for (0..mr) |i| acc[i] = .{ b0, b1 };
                },
                .zero => inline for (0..mr) |i| {
                    acc[i] = .{ @splat(0), @splat(0) };
                },
            }
            var ap = a;
            var bp = b;
            // Unrolled: the loop's own pointer and counter updates are integer µops that may be
            // scheduled on the two FMA ports; four steps per iteration make them 4× rarer.
            var s: usize = 0;
            while (s + unroll <= steps) : (s += unroll) {
                inline for (0..unroll) |u| kStep(&acc, ap + u * mr, bp + u * nr);
                ap += unroll * mr;
                bp += unroll * nr;
            }
            while (s < steps) : (s += 1) {
                kStep(&acc, ap, bp);
                ap += mr;
                bp += nr;
            }
            if (init == .load) inline for (0..mr) |i| {
                acc[i][0] += load(c[i * ldc ..][0..nr], 0);
                acc[i][1] += load(c[i * ldc ..][0..nr], lanes);
            };
            inline for (0..mr) |i| {
                store(c[i * ldc ..][0..nr], 0, acc[i][0]);
                store(c[i * ldc ..][0..nr], lanes, acc[i][1]);
            }
        }

        const unroll = 4;

        /// One slot of the k loop: every accumulator gets its product(s).
        inline fn kStep(acc: *[mr][2]V, ap: [*]const u32, bp: [*]const u32) void {
            // Packed panels are 64-byte aligned and nr slots wide: every B vector is aligned.
            const b0: U = @as(*const U, @ptrCast(@alignCast(bp))).*;
            const b1: U = @as(*const U, @ptrCast(@alignCast(bp + lanes))).*;
            inline for (0..mr) |i| {
                const ai: U = @splat(ap[i]);
                if (precision == .bf16) {
                    acc[i][0] = simd.dotBf16(acc[i][0], @bitCast(ai), @bitCast(b0));
                    acc[i][1] = simd.dotBf16(acc[i][1], @bitCast(ai), @bitCast(b1));
                } else {
                    acc[i][0] = @mulAdd(V, @bitCast(ai), @bitCast(b0), acc[i][0]);
                    acc[i][1] = @mulAdd(V, @bitCast(ai), @bitCast(b1), acc[i][1]);
                }
            }
        }

        /// A ragged tile (rows < mr or cols < nr) goes through a full-size scratch tile, so the
        /// microkernel performs exactly the same operations as for an interior tile.
        fn edgeTile(steps: usize, a: [*]const u32, b: [*]const u32, c: [*]f32, ldc: usize, rows: usize, cols: usize, init: Init, bias: ?[*]const f32) void {
            assert(rows >= 1 and rows <= mr and cols >= 1 and cols <= nr);
            var scratch: [mr * nr]f32 align(64) = @splat(0);
            var bias_row: [nr]f32 align(64) = @splat(0);
            if (init == .load) {
                for (0..rows) |i| @memcpy(scratch[i * nr ..][0..cols], c[i * ldc ..][0..cols]);
            }
            if (init == .bias) @memcpy(bias_row[0..cols], bias.?[0..cols]);
            microkernel(steps, a, b, &scratch, nr, init, &bias_row);
            for (0..rows) |i| @memcpy(c[i * ldc ..][0..cols], scratch[i * nr ..][0..cols]);
        }

        /// The slot for row `row`, K values [p, p+k_per_slot) of `src` (zero past k_end).
        inline fn slotAt(src: Operand, row: usize, p: usize, k_end: usize) u32 {
            const at = src.ptr + row * src.row_stride + p * src.k_stride;
            if (precision == .fp32) return @bitCast(at[0]);
            return bf16Pair(at[0], if (p + 1 < k_end) at[src.k_stride] else 0);
        }

        /// Packs rows [row0, row0+rows) × K range [p0, p0+kc) of `src` into dst[s·r + i] (slot s
        /// holds K values p0 + k_per_slot·s …), zero-padding rows up to r and the last pair.
        fn packPanel(comptime r: usize, dst: [*]u32, src: Operand, row0: usize, rows: usize, p0: usize, kc: usize) void {
            assert(rows >= 1 and rows <= r);
            const n_slots = slots(kc);
            const k_end = p0 + kc;
            if (src.row_stride == 1 and rows == r and r % lanes == 0) {
                // Rows are contiguous for a fixed p: whole vectors of rows, converted in registers.
                for (0..n_slots) |s| {
                    const p = p0 + k_per_slot * s;
                    const low = src.ptr + p * src.k_stride + row0;
                    inline for (0..r / lanes) |v| {
                        const x: V = load(low[v * lanes ..][0..lanes], 0);
                        const slot: U = if (precision == .fp32) @bitCast(x) else blk: {
                            const y: V = if (p + 1 < k_end) load((low + src.k_stride)[v * lanes ..][0..lanes], 0) else @splat(0);
                            break :blk bf16BitsV(x) | (bf16BitsV(y) << @splat(16));
                        };
                        @as(*U, @ptrCast(@alignCast(dst + s * r + v * lanes))).* = slot;
                    }
                }
                return;
            }
            if (src.k_stride == 1 and precision == .fp32) {
                // Each row is a run along p: transpose 8×8 blocks in registers, then finish the
                // ragged rows and columns element by element.
                const rows8 = rows / 8 * 8;
                const kc8 = kc / 8 * 8;
                const d: [*]f32 = @ptrCast(dst);
                var i: usize = 0;
                while (i < rows8) : (i += 8) {
                    const s = src.ptr + (row0 + i) * src.row_stride + p0;
                    var p: usize = 0;
                    while (p < kc8) : (p += 8) transpose8x8(d + p * r + i, r, s + p, src.row_stride);
                    for (kc8..kc) |q| {
                        for (0..8) |ii| d[q * r + i + ii] = s[ii * src.row_stride + q];
                    }
                }
                for (rows8..rows) |ii| {
                    const s = src.ptr + (row0 + ii) * src.row_stride + p0;
                    for (0..kc) |p| d[p * r + ii] = s[p];
                }
            } else if (src.row_stride == 1) {
                // Rows contiguous for a fixed p, but not whole vectors of them (A's 12-row panels):
                // p outermost, so each p reads one run of memory. Row by row instead would walk
                // kc values k_stride apart, and at k_stride = 3072 floats (12 KiB: the MLP's
                // weight gradient) those all fall in one L1 set and a few L2 sets.
                for (0..n_slots) |s| {
                    for (0..rows) |i| dst[s * r + i] = slotAt(src, row0 + i, p0 + k_per_slot * s, k_end);
                }
            } else {
                // Any strides, slot by slot (bf16 pairs are rounded here).
                for (0..rows) |i| {
                    for (0..n_slots) |s| dst[s * r + i] = slotAt(src, row0 + i, p0 + k_per_slot * s, k_end);
                }
            }
            if (rows < r) for (0..n_slots) |s| @memset(dst[s * r + rows .. s * r + r], 0);
        }

        /// The operand every task shares, packed once (per K chunk) before the tasks run: the small
        /// one. The other is split among the tasks, each packing its own block into its thread's
        /// buffer right before using it, so each of its panels is packed exactly once and stays in
        /// that core's cache between packing and use (no barrier, no round trip through memory).
        const Side = enum { a, b };

        const Tasks = struct {
            problem: *const Problem,
            blocking: *const Blocking,
            /// which operand the tasks split (and pack themselves)
            split: Side,
            // The current K chunk [pk, pk+kk) and block of the shared operand [s0, s0+sn) (rows of A
            // when B is split, columns of B when A is split), packed into `shared_pack`.
            pk: usize,
            kk: usize,
            s0: usize,
            sn: usize,
            /// panels of the split operand per task
            task_panels: usize,

            fn rOf(side: Side) usize {
                return if (side == .a) mr else nr;
            }

            fn packShared(self: *const Tasks, task: usize) void {
                const g = self.problem;
                const side: Side = if (self.split == .a) .b else .a;
                const r = rOf(side);
                const src = if (side == .a) g.a else g.b;
                const first = task * panels_per_pack_task;
                const last = @min(divCeil(self.sn, r), first + panels_per_pack_task);
                for (first..last) |panel| {
                    const row0 = panel * r;
                    const dst = shared_pack.ptr + panel * r * slots(self.kk);
                    if (side == .a) packPanel(mr, dst, src, self.s0 + row0, @min(mr, self.sn - row0), self.pk, self.kk) else packPanel(nr, dst, src, self.s0 + row0, @min(nr, self.sn - row0), self.pk, self.kk);
                }
            }

            /// One block of the split operand: pack it (all of the K chunk) into this thread's buffer,
            /// then every microkernel over it and the whole shared block, K blocks outermost.
            fn run(self: *const Tasks, task: usize) void {
                const g = self.problem;
                const r = rOf(self.split);
                const total = if (self.split == .a) g.m else g.n;
                const row0 = task * self.task_panels * r;
                const rows = @min(self.task_panels * r, total - row0);
                const panels = divCeil(rows, r);
                const panel_slots = slots(self.kk);
                const own = ownBuffer(panels * r * panel_slots);
                const src = if (self.split == .a) g.a else g.b;
                for (0..panels) |p| {
                    const at = own + p * r * panel_slots;
                    const start = row0 + p * r;
                    if (self.split == .a) packPanel(mr, at, src, start, @min(mr, total - start), self.pk, self.kk) else packPanel(nr, at, src, start, @min(nr, total - start), self.pk, self.kk);
                }
                const kc_max = self.blocking.kc;
                var pc: usize = 0;
                while (pc < self.kk) : (pc += kc_max) {
                    const steps = slots(@min(kc_max, self.kk - pc));
                    const first_slot = slots(pc); // pc is a multiple of kc, which k_per_slot divides
                    const init: Init = if (self.pk + pc > 0 or g.accumulate) .load else if (g.bias != null) .bias else .zero;
                    if (self.split == .b) {
                        // Each B micro-panel of the task stays in L1 while the shared A panels stream past.
                        for (0..panels) |jp| {
                            const col = row0 + jp * nr;
                            const b = own + jp * nr * panel_slots + first_slot * nr;
                            for (0..divCeil(self.sn, mr)) |ip| {
                                const row = self.s0 + ip * mr;
                                const a = shared_pack.ptr + ip * mr * panel_slots + first_slot * mr;
                                tile(g, steps, a, b, row, @min(mr, self.s0 + self.sn - row), col, @min(nr, g.n - col), init);
                            }
                        }
                    } else {
                        // Each shared B micro-panel stays in L1 while the task's own A panels stream past.
                        for (0..divCeil(self.sn, nr)) |jp| {
                            const col = self.s0 + jp * nr;
                            const b = shared_pack.ptr + jp * nr * panel_slots + first_slot * nr;
                            for (0..panels) |ip| {
                                const row = row0 + ip * mr;
                                const a = own + ip * mr * panel_slots + first_slot * mr;
                                tile(g, steps, a, b, row, @min(mr, g.m - row), col, @min(nr, self.s0 + self.sn - col), init);
                            }
                        }
                    }
                }
            }
        };

        inline fn tile(g: *const Problem, steps: usize, a: [*]const u32, b: [*]const u32, row: usize, rows: usize, col: usize, cols: usize, init: Init) void {
            const c = g.c + row * g.ldc + col;
            const bias = if (g.bias) |bias| bias + col else null;
            if (rows == mr and cols == nr) microkernel(steps, a, b, c, g.ldc, init, bias) else edgeTile(steps, a, b, c, g.ldc, rows, cols, init, bias);
        }

        fn runBlocked(g: *const Problem, blocking: *const Blocking) void {
            assert(blocking.kc % k_per_slot == 0);
            // The tasks split the larger of M and N; the other operand is shared.
            const split: Side = if (g.m > g.n) .a else .b;
            const shared_total = if (split == .a) g.n else g.m;
            const shared_r = if (split == .a) nr else mr;
            const split_r = if (split == .a) mr else nr;
            const split_total = if (split == .a) g.m else g.n;
            const kk_max = @min(blocking.k_chunk, g.k);
            const slots_max = slots(kk_max);
            // The shared operand is packed in blocks within its budget (all of it, for GPT-2's shapes).
            const sn_max = @max(shared_r, blocking.shared_pack_floats / slots_max / shared_r * shared_r);
            ensureCapacity(&shared_pack, @min(sn_max, roundUp(shared_total, shared_r)) * slots_max, blocking.shared_pack_floats);
            const threads = pool.threads();
            // Enough tasks for the atomic counter to balance the threads, each of ≥ 1 panel and at
            // most `task_panels` (its block must stay in L2 next to its share of C).
            const split_panels = divCeil(split_total, split_r);
            const most = if (split == .a) blocking.task_panels_a else blocking.task_panels;
            const task_panels = @max(1, @min(most, divCeil(split_panels, 4 * threads)));
            var s0: usize = 0;
            while (s0 < shared_total) : (s0 += sn_max) {
                const sn = @min(sn_max, shared_total - s0);
                // K chunks in order: the reduction order never depends on scheduling.
                var pk: usize = 0;
                while (pk < g.k) : (pk += kk_max) {
                    const tasks = Tasks{ .problem = g, .blocking = blocking, .split = split, .pk = pk, .kk = @min(kk_max, g.k - pk), .s0 = s0, .sn = sn, .task_panels = task_panels };
                    pool.parallelFor(Tasks, &tasks, divCeil(divCeil(sn, shared_r), panels_per_pack_task), Tasks.packShared);
                    pool.parallelFor(Tasks, &tasks, divCeil(split_panels, task_panels), Tasks.run);
                }
            }
        }

    };
}

const V8 = @Vector(8, f32);

/// dst[q·dst_stride + i] = src[i·src_stride + q] for i, q in [0, 8): the 8×8 block transposed by
/// three rounds of swapping off-diagonal sub-blocks (4×4, then 2×2, then 1×1).
inline fn transpose8x8(dst: [*]f32, dst_stride: usize, src: [*]const f32, src_stride: usize) void {
    var rows: [8]V8 = undefined;
    inline for (0..8) |i| rows[i] = src[i * src_stride ..][0..8].*;
    inline for (.{ 4, 2, 1 }) |s| {
        const low = comptime swapMask(s, false);
        const high = comptime swapMask(s, true);
        inline for (0..8) |i| {
            if (i & s == 0) {
                const a = rows[i];
                const b = rows[i + s];
                rows[i] = @shuffle(f32, a, b, low);
                rows[i + s] = @shuffle(f32, a, b, high);
            }
        }
    }
    inline for (0..8) |q| dst[q * dst_stride ..][0..8].* = rows[q];
}

/// Shuffle masks for one round: row i keeps its elements j with (j & s) == 0 and takes the
/// partner row's elements j - s for the others; the partner row gets the mirror image.
fn swapMask(comptime s: usize, comptime partner: bool) [8]i32 {
    var mask: [8]i32 = undefined;
    for (0..8) |j| {
        const in_low_half = j & s == 0;
        if (!partner) {
            mask[j] = if (in_low_half) @intCast(j) else ~@as(i32, @intCast(j - s));
        } else {
            mask[j] = if (in_low_half) @intCast(j + s) else ~@as(i32, @intCast(j));
        }
    }
    return mask;
}

test "transpose8x8 transposes" {
    var src: [8 * 11]f32 = undefined;
    for (&src, 0..) |*x, i| x.* = @floatFromInt(i);
    var dst: [8 * 13]f32 = @splat(-1);
    transpose8x8(&dst, 13, &src, 11);
    for (0..8) |q| for (0..8) |i| try std.testing.expectEqual(src[i * 11 + q], dst[q * 13 + i]);
}

const panels_per_pack_task = 4;

pub fn run(problem: *const Problem) void {
    runBlocked(problem, &default_blocking);
}

pub fn runBlocked(g: *const Problem, blocking: *const Blocking) void {
    assert(g.m > 0 and g.n > 0 and g.k > 0);
    assert(g.ldc >= g.n);
    assert(blocking.kc > 0 and blocking.task_panels > 0 and blocking.shared_pack_floats > 0);
    assert(blocking.k_chunk % blocking.kc == 0);
    switch (g.precision) {
        .fp32 => Kernels(.fp32).runBlocked(g, blocking),
        // Callers check bf16Available() first (the C ABI refuses bf16 otherwise).
        .bf16 => if (comptime simd.has_avx512bf16) {
            assert(bf16Available());
            Kernels(.bf16).runBlocked(g, blocking);
        } else unreachable,
    }
}

fn divCeil(a: usize, b: usize) usize {
    return (a + b - 1) / b;
}
fn roundUp(a: usize, b: usize) usize {
    return divCeil(a, b) * b;
}


// ---- tests ----

fn reference(g: *const Problem, out: []f64) void {
    for (0..g.m) |i| for (0..g.n) |j| {
        var sum: f64 = if (g.accumulate) g.c[i * g.ldc + j] else if (g.bias) |b| b[j] else 0;
        for (0..g.k) |p| sum += @as(f64, g.a.ptr[i * g.a.row_stride + p * g.a.k_stride]) * g.b.ptr[j * g.b.row_stride + p * g.b.k_stride];
        out[i * g.n + j] = sum;
    };
}

/// Random N(0,1) operands of one test problem, in one allocation: a | b | bias | c. Full f32
/// values (not bf16-representable), so a bf16 problem exercises the rounding at packing; C is NaN
/// unless the problem accumulates, so a missed store shows.
const TestProblem = struct {
    floats: []f32,
    problem: Problem,

    const Layout = struct { a_transposed: bool, b_transposed: bool, accumulate: bool, with_bias: bool };

    fn init(gpa: std.mem.Allocator, seed: u64, m: usize, n: usize, k: usize, layout: Layout, precision: Precision) !TestProblem {
        const floats = try gpa.alloc(f32, m * k + n * k + n + m * n);
        var prng = std.Random.DefaultPrng.init(seed);
        const random = prng.random();
        const a = floats[0 .. m * k];
        const b = floats[m * k ..][0 .. n * k];
        const bias = floats[m * k + n * k ..][0..n];
        const c = floats[m * k + n * k + n ..];
        for (floats[0 .. m * k + n * k + n]) |*x| x.* = random.floatNorm(f32);
        for (c) |*x| x.* = if (layout.accumulate) random.floatNorm(f32) else std.math.nan(f32);
        return .{ .floats = floats, .problem = .{
            .m = m,
            .n = n,
            .k = k,
            .a = if (layout.a_transposed) .{ .ptr = a.ptr, .row_stride = 1, .k_stride = m } else .{ .ptr = a.ptr, .row_stride = k, .k_stride = 1 },
            .b = if (layout.b_transposed) .{ .ptr = b.ptr, .row_stride = 1, .k_stride = n } else .{ .ptr = b.ptr, .row_stride = k, .k_stride = 1 },
            .c = c.ptr,
            .ldc = n,
            .accumulate = layout.accumulate,
            .bias = if (layout.with_bias) bias.ptr else null,
            .precision = precision,
        } };
    }

    fn output(self: *const TestProblem) []const f32 {
        return self.floats[self.floats.len - self.problem.m * self.problem.n ..];
    }

    fn deinit(self: *const TestProblem, gpa: std.mem.Allocator) void {
        gpa.free(self.floats);
    }
};

fn checkShape(m: usize, n: usize, k: usize, a_transposed: bool, b_transposed: bool, accumulate: bool, with_bias: bool, blocking: *const Blocking) !void {
    const gpa = std.testing.allocator;
    const layout = TestProblem.Layout{ .a_transposed = a_transposed, .b_transposed = b_transposed, .accumulate = accumulate, .with_bias = with_bias };
    const t = try TestProblem.init(gpa, m * 1_000_003 + n * 1009 + k, m, n, k, layout, .fp32);
    defer t.deinit(gpa);
    const want = try gpa.alloc(f64, m * n);
    defer gpa.free(want);
    reference(&t.problem, want);
    runBlocked(&t.problem, blocking);
    // Entries are N(0,1) products: |error| of a K-term float32 sum is far below 1e-5·(K+2)·4σ;
    // a wrong or missing term is of order 1.
    const tolerance = 1e-5 * @as(f64, @floatFromInt(k + 2)) * 4;
    for (t.output(), want) |got, expected| try std.testing.expectApproxEqAbs(expected, @as(f64, got), tolerance);
}

test "gemm matches a float64 reference at every edge: M/N/K remainders, size 1, all layouts" {
    try pool.init(2);
    defer pool.deinit();
    // Tiny blocks exercise the N-block, M-block and K-block loops on small shapes.
    const tiny = Blocking{ .kc = 5, .k_chunk = 10, .task_panels = 2, .task_panels_a = 2, .shared_pack_floats = nr * 2 * 10 };
    const shapes = [_][3]usize{
        .{ 1, 1, 1 },            .{ 1, 1, 7 },                    .{ mr, nr, 1 },         .{ mr - 1, nr - 1, 3 },
        .{ mr + 1, nr + 1, 11 }, .{ 2 * mr + 5, 3 * nr + 7, 13 }, .{ 1, 5 * nr + 3, 17 }, .{ 7 * mr + 1, 1, 9 },
    };
    for (shapes) |s| {
        for ([_]bool{ false, true }) |at| for ([_]bool{ false, true }) |bt| {
            try checkShape(s[0], s[1], s[2], at, bt, false, true, &tiny);
            try checkShape(s[0], s[1], s[2], at, bt, true, false, &tiny);
            try checkShape(s[0], s[1], s[2], at, bt, false, false, &default_blocking);
            try checkShape(s[0], s[1], s[2], at, bt, true, false, &default_blocking);
        };
    }
    // Beyond one default K block and with several N sub-blocks per task grid.
    try checkShape(37, 3 * nr + 5, default_blocking.kc + 3, false, true, false, true, &default_blocking);
    try checkShape(2 * mr * default_blocking.task_panels_a + 1, 70, 2 * default_blocking.kc + 1, true, false, true, false, &default_blocking);
}

test "gemm is bit-identical across thread counts" {
    const gpa = std.testing.allocator;
    const m, const n, const k = .{ 45, 77, 300 };
    var prng = std.Random.DefaultPrng.init(7);
    const random = prng.random();
    const a = try gpa.alloc(f32, m * k);
    defer gpa.free(a);
    const b = try gpa.alloc(f32, n * k);
    defer gpa.free(b);
    for (a) |*x| x.* = random.floatNorm(f32);
    for (b) |*x| x.* = random.floatNorm(f32);
    var results: [3][m * n]f32 = undefined;
    for ([_]usize{ 1, 2, 3 }, 0..) |threads, r| {
        try pool.init(threads);
        const problem = Problem{ .m = m, .n = n, .k = k, .a = .{ .ptr = a.ptr, .row_stride = k, .k_stride = 1 }, .b = .{ .ptr = b.ptr, .row_stride = k, .k_stride = 1 }, .c = &results[r], .ldc = n, .accumulate = false };
        run(&problem);
    }
    pool.deinit();
    try std.testing.expectEqualSlices(f32, &results[0], &results[1]);
    try std.testing.expectEqualSlices(f32, &results[0], &results[2]);
}

// ---- bf16 tests: the kernel against a scalar emulation of vdpbf16ps, bit for bit ----

fn bf16At(o: Operand, row: usize, p: usize, k: usize) u16 {
    return if (p < k) bf16Bits(o.ptr[row * o.row_stride + p * o.k_stride]) else 0;
}

/// The bf16 GEMM as the kernel defines it, in scalar f32: per output, per K chunk and K block, an
/// accumulator starting at the bias (first block of a fresh C) or 0, one emulated vdpbf16ps lane per
/// pair of K values (k, k+1) from the chunk's start (the last pair of an odd chunk padded with 0),
/// then added to C after the block.
fn referenceBf16(g: *const Problem, blocking: *const Blocking, order: simd.DotOrder, out: []f32) void {
    const kk_max = @min(blocking.k_chunk, g.k);
    for (0..g.m) |i| for (0..g.n) |j| {
        var c: f32 = if (g.accumulate) g.c[i * g.ldc + j] else 0;
        var pk: usize = 0;
        while (pk < g.k) : (pk += kk_max) {
            const chunk_end = @min(g.k, pk + kk_max);
            var pc = pk;
            while (pc < chunk_end) : (pc += blocking.kc) {
                const fresh = pc == 0 and !g.accumulate;
                var acc: f32 = if (fresh) (if (g.bias) |b| b[j] else 0) else 0;
                var p = pc;
                while (p < @min(chunk_end, pc + blocking.kc)) : (p += 2) {
                    acc = simd.dotBf16Lane(acc, bf16At(g.a, i, p, chunk_end), bf16At(g.a, i, p + 1, chunk_end), bf16At(g.b, j, p, chunk_end), bf16At(g.b, j, p + 1, chunk_end), order);
                }
                c = if (fresh) acc else acc + c;
            }
        }
        out[i * g.n + j] = c;
    };
}

fn checkShapeBf16(m: usize, n: usize, k: usize, a_transposed: bool, b_transposed: bool, accumulate: bool, with_bias: bool, blocking: *const Blocking, order: simd.DotOrder) !void {
    const gpa = std.testing.allocator;
    const layout = TestProblem.Layout{ .a_transposed = a_transposed, .b_transposed = b_transposed, .accumulate = accumulate, .with_bias = with_bias };
    const t = try TestProblem.init(gpa, m * 7_000_003 + n * 1013 + k, m, n, k, layout, .bf16);
    defer t.deinit(gpa);
    const want = try gpa.alloc(f32, m * n);
    defer gpa.free(want);
    referenceBf16(&t.problem, blocking, order, want);
    runBlocked(&t.problem, blocking);
    for (t.output(), want) |got, expected| try std.testing.expectEqual(@as(u32, @bitCast(expected)), @as(u32, @bitCast(got)));
}

test "bf16 gemm equals its scalar emulation bit for bit: every edge and layout (skipped: build target or CPU lacks AVX512_BF16)" {
    if (comptime !simd.has_avx512bf16) return error.SkipZigTest;
    if (!bf16Available()) return error.SkipZigTest;
    const order = simd.probeDotBf16Order() orelse return error.TestUnexpectedResult;
    try pool.init(2);
    defer pool.deinit();
    const tiny = Blocking{ .kc = 6, .k_chunk = 12, .task_panels = 2, .task_panels_a = 2, .shared_pack_floats = nr * 2 * 12 };
    const shapes = [_][3]usize{
        .{ 1, 1, 1 },            .{ 1, 1, 7 },                    .{ mr, nr, 1 },         .{ mr - 1, nr - 1, 3 },
        .{ mr + 1, nr + 1, 11 }, .{ 2 * mr + 5, 3 * nr + 7, 13 }, .{ 1, 5 * nr + 3, 17 }, .{ 7 * mr + 1, 1, 9 },
        .{ 2 * mr, 2 * nr, 26 },
    };
    for (shapes) |s| {
        for ([_]bool{ false, true }) |at| for ([_]bool{ false, true }) |bt| {
            try checkShapeBf16(s[0], s[1], s[2], at, bt, false, true, &tiny, order);
            try checkShapeBf16(s[0], s[1], s[2], at, bt, true, false, &tiny, order);
            try checkShapeBf16(s[0], s[1], s[2], at, bt, false, false, &default_blocking, order);
            try checkShapeBf16(s[0], s[1], s[2], at, bt, true, false, &default_blocking, order);
        };
    }
    try checkShapeBf16(37, 3 * nr + 5, default_blocking.kc + 3, false, true, false, true, &default_blocking, order);
    try checkShapeBf16(2 * mr + 1, 70, 2 * default_blocking.kc + 1, true, false, true, false, &default_blocking, order);
}

test "bf16Bits rounds to nearest even, keeps NaN quiet and overflows to infinity" {
    try std.testing.expectEqual(@as(u16, 0x3f80), bf16Bits(1.0));
    // 1 + 2^-8 is halfway between bf16 1.0 and 1.0078125: ties go to the even significand (1.0).
    try std.testing.expectEqual(@as(u16, 0x3f80), bf16Bits(1.0 + 1.0 / 256.0));
    try std.testing.expectEqual(@as(u16, 0x3f82), bf16Bits(1.0 + 3.0 / 256.0)); // tie, up to even
    try std.testing.expectEqual(@as(u16, 0x3f81), bf16Bits(1.0 + 1.0 / 256.0 + 1.0 / 65536.0));
    try std.testing.expectEqual(@as(u16, 0x7f80), bf16Bits(std.math.floatMax(f32)));
    try std.testing.expectEqual(@as(u16, 0xff80), bf16Bits(-std.math.inf(f32)));
    try std.testing.expect(bf16Bits(std.math.nan(f32)) & 0x7fc0 == 0x7fc0);
    const v = bf16BitsV(@splat(-2.5));
    try std.testing.expectEqual(@as(u32, bf16Bits(-2.5)), v[0]);
}
