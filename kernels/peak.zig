//! The machine's arithmetic ceilings: every pool thread runs 12 independent chains of one vector
//! instruction (enough to cover its latency × the number of pipes that execute it), with no memory
//! traffic. Matmul benchmarks and the trainer's MFU quote their speed as a fraction of these
//! figures, measured in the same process.
//!   fp32   @mulAdd on `width` f32 lanes: 2·width FLOP per instruction.
//!   bf16   vdpbf16ps on zmm (16 f32 accumulators, 32 bf16 pairs): 64 FLOP per instruction
//!          (32 products + 32 additions). Only where the build target and the CPU have AVX512_BF16.
const std = @import("std");
const pool = @import("pool.zig");
const simd = @import("simd.zig");
const linux = std.os.linux;
const assert = std.debug.assert;

const chains = 12;
const iterations_per_task = 50_000;

/// Chains of `width`-lane f32 FMAs: acc = acc·m + a, with m < 1 so they stay bounded.
fn FmaChains(comptime width: usize) type {
    return struct {
        const W = @Vector(width, f32);
        pub const flop_per_instruction = 2 * width;
        multiplier: f32 = 0.999999,
        addend: f32 = 1e-3,

        pub fn run(self: *const @This()) f32 {
            var acc: [chains]W = undefined;
            inline for (0..chains) |j| acc[j] = @splat(@floatFromInt(j));
            const m: W = @splat(self.multiplier);
            const a: W = @splat(self.addend);
            for (0..iterations_per_task) |_| {
                inline for (0..chains) |j| acc[j] = @mulAdd(W, acc[j], m, a);
            }
            var total: f32 = 0;
            inline for (0..chains) |j| total += @reduce(.Add, acc[j]);
            return total;
        }
    };
}

/// Chains of vdpbf16ps: acc += Σ pairs of 2^-10·2^-10, so after 50 000 iterations each lane holds
/// about 0.1 (no overflow, no subnormals, nothing the hardware could shortcut).
const Bf16Chains = struct {
    pub const flop_per_instruction = 64;
    operand: u16 = 0x3a80, // bf16 2^-10

    pub fn run(self: *const @This()) f32 {
        var acc: [chains]simd.F32x16 = undefined;
        inline for (0..chains) |j| acc[j] = @splat(@floatFromInt(j));
        const a: simd.Bf16x32 = @splat(self.operand);
        const b: simd.Bf16x32 = @splat(self.operand);
        for (0..iterations_per_task) |_| {
            inline for (0..chains) |j| acc[j] = simd.dotBf16(acc[j], a, b);
        }
        var total: f32 = 0;
        inline for (0..chains) |j| total += @reduce(.Add, acc[j]);
        return total;
    }
};

fn Context(comptime Chains: type) type {
    return struct {
        chains: Chains = .{},
        sinks: []f32,
        fn task(self: *const @This(), index: usize) void {
            self.sinks[index % self.sinks.len] = self.chains.run(); // keeps the chains alive
        }
    };
}

fn nowNs() u64 {
    var ts: linux.timespec = undefined;
    assert(linux.clock_gettime(.MONOTONIC, &ts) == 0);
    return @as(u64, @intCast(ts.sec)) * std.time.ns_per_s + @as(u64, @intCast(ts.nsec));
}

/// GFLOP/s of `Chains` over all pool threads, measured for about `ms` milliseconds.
fn measureChains(comptime Chains: type, ms: u64) f64 {
    const C = Context(Chains);
    var sinks: [64]f32 = undefined;
    const context = C{ .sinks = &sinks };
    // Many small tasks per thread: the atomic counter balances a thread that starts late.
    const tasks = 16 * pool.threads();
    const flops_per_round = @as(f64, @floatFromInt(tasks * iterations_per_task * chains * Chains.flop_per_instruction));
    pool.parallelFor(C, &context, tasks, C.task); // warm-up (wakes workers, raises clocks)
    const start = nowNs();
    var rounds: usize = 0;
    while (true) {
        pool.parallelFor(C, &context, tasks, C.task);
        rounds += 1;
        if (nowNs() - start >= ms * std.time.ns_per_ms) break;
    }
    const seconds = @as(f64, @floatFromInt(nowNs() - start)) / std.time.ns_per_s;
    std.mem.doNotOptimizeAway(sinks);
    return flops_per_round * @as(f64, @floatFromInt(rounds)) / seconds / 1e9;
}

/// GFLOP/s of `width`-lane FMAs (8, or simd.lanes) over all pool threads, for about `ms` ms.
pub fn fma(comptime width: usize, ms: u64) f64 {
    comptime assert(width == 8 or width == simd.lanes);
    return measureChains(FmaChains(width), ms);
}

/// Whether bf16 can be measured here: the build target has AVX512_BF16 and so does the CPU.
pub fn bf16Available() bool {
    return simd.has_avx512bf16 and simd.cpuFeatures().avx512bf16;
}

/// GFLOP/s of vdpbf16ps zmm over all pool threads, for about `ms` ms; null where unavailable.
pub fn bf16(ms: u64) ?f64 {
    if (!simd.has_avx512bf16) return null;
    if (!bf16Available()) return null;
    return measureChains(Bf16Chains, ms);
}

test "peaks are positive on one and two threads (their ratio is a benchmark figure, not a test: the machine is shared)" {
    try pool.init(1);
    const one = fma(8, 20);
    try pool.init(2);
    defer pool.deinit();
    const two = fma(8, 20);
    try std.testing.expect(one > 1 and two > 1);
    if (simd.lanes == 16) try std.testing.expect(fma(16, 20) > 1);
    if (bf16(20)) |gflops| try std.testing.expect(gflops > 1) else try std.testing.expect(!bf16Available());
}

test "the bf16 chains compute what their comment says (skipped: no AVX512_BF16)" {
    if (!simd.has_avx512bf16) return error.SkipZigTest;
    if (!bf16Available()) return error.SkipZigTest;
    // One task: 12 chains of 16 lanes, lane j starting at j, each gaining 50 000·2·2^-20.
    const total = (Bf16Chains{}).run();
    const gain: f64 = iterations_per_task * 2.0 * std.math.pow(f64, 2, -20);
    const want = 16 * (66 + 12 * gain); // Σ_j 16·(j + gain), j = 0..11
    try std.testing.expectApproxEqRel(want, @as(f64, total), 1e-3);
}
