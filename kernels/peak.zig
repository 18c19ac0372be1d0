//! The machine's FMA ceiling: every pool thread runs 12 independent chains of vector FMAs (enough
//! to cover FMA latency × the number of FMA pipes), with no memory traffic. Matmul benchmarks
//! quote their speed as a fraction of this figure, measured in the same process.
const std = @import("std");
const builtin = @import("builtin");
const pool = @import("pool.zig");
const linux = std.os.linux;
const assert = std.debug.assert;

const chains = 12;
const iterations_per_task = 50_000;

pub const max_width = if (builtin.cpu.arch == .x86_64 and std.Target.x86.featureSetHas(builtin.cpu.features, .avx512f)) 16 else 8;

fn Context(comptime width: usize) type {
    return struct {
        const Self = @This();
        const W = @Vector(width, f32);
        multiplier: f32,
        addend: f32,
        sinks: []f32,
        fn task(self: *const Self, index: usize) void {
            var acc: [chains]W = undefined;
            inline for (0..chains) |j| acc[j] = @splat(@floatFromInt(j));
            const m: W = @splat(self.multiplier);
            const a: W = @splat(self.addend);
            for (0..iterations_per_task) |_| {
                inline for (0..chains) |j| acc[j] = @mulAdd(W, acc[j], m, a);
            }
            var total: f32 = 0;
            inline for (0..chains) |j| total += @reduce(.Add, acc[j]);
            self.sinks[index % self.sinks.len] = total; // keeps the chains alive
        }
    };
}

fn nowNs() u64 {
    var ts: linux.timespec = undefined;
    assert(linux.clock_gettime(.MONOTONIC, &ts) == 0);
    return @as(u64, @intCast(ts.sec)) * std.time.ns_per_s + @as(u64, @intCast(ts.nsec));
}

/// GFLOP/s of `width`-lane FMAs over all pool threads, measured for about `ms` milliseconds.
pub fn measure(comptime width: usize, ms: u64) f64 {
    const C = Context(width);
    var sinks: [64]f32 = undefined;
    // multiplier < 1 keeps the chains bounded however long they run.
    const context = C{ .multiplier = 0.999999, .addend = 1e-3, .sinks = &sinks };
    // Many small tasks per thread: the atomic counter balances a thread that starts late.
    const tasks = 16 * pool.threads();
    const flops_per_round = @as(f64, @floatFromInt(tasks * iterations_per_task * chains * width * 2));
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

test "peak is positive and two threads are not slower than one" {
    try pool.init(1);
    const one = measure(8, 20);
    try pool.init(2);
    defer pool.deinit();
    const two = measure(8, 20);
    try std.testing.expect(one > 1 and two > 1);
    if (max_width == 16) try std.testing.expect(measure(16, 20) > 1);
}
