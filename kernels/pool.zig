//! A persistent worker pool: threads are spawned once by `init` and then serve every kernel call
//! as a parallel-for. Work is handed out by an atomic counter over task indices, so a slow core
//! never holds the others up; the calling thread works too, and waits only for tasks that were
//! claimed (on a busy machine a worker may wake after the caller has done everything). Idle
//! workers spin briefly (a kernel call usually follows within microseconds), then sleep on a futex.
//!
//! Determinism: a kernel must make each task write its own outputs and fix its reduction order
//! independently of which thread runs it. Then results do not depend on scheduling.
const std = @import("std");
const linux = std.os.linux;
const assert = std.debug.assert;

pub const max_threads = 64;
const spin_iterations_before_sleep = 1 << 16;

pub const TaskFn = *const fn (context: *const anyopaque, task_index: usize) void;

/// A job, published in one of two slots (alternating by generation) so that a worker that wakes
/// late, holding the previous generation, never reads a slot being rewritten for the next one.
const Slot = struct {
    task: std.atomic.Value(usize) = .init(0),
    context: std.atomic.Value(usize) = .init(0),
    task_count: std.atomic.Value(usize) = .init(0),
};

var workers: [max_threads]std.Thread = undefined;
var thread_count: usize = 1; // workers + the calling thread
var slots: [2]Slot = .{ .{}, .{} };
// Bumped once per job; workers sleep on it. 32 bits because the futex word is a u32.
var generation = std.atomic.Value(u32).init(0);
// (generation << 32) | next task index. Claiming a task is a compare-and-swap on the whole word,
// so a claim only succeeds for the job that is current, whatever a slow worker believes.
var claim = std.atomic.Value(u64).init(0);
var tasks_done = std.atomic.Value(usize).init(0);
var sleepers = std.atomic.Value(u32).init(0);
var shutting_down = std.atomic.Value(bool).init(false);
var in_job: bool = false;

/// Number of threads that run a parallel-for, the caller included.
pub fn threads() usize {
    return thread_count;
}

/// Starts `count - 1` workers (the caller is the last thread). Replaces an earlier pool.
pub fn init(count: usize) !void {
    assert(count >= 1 and count <= max_threads);
    assert(!in_job);
    deinit();
    shutting_down.store(false, .release);
    var started: usize = 0;
    errdefer {
        thread_count = started + 1;
        deinit();
    }
    while (started < count - 1) : (started += 1) {
        workers[started] = try std.Thread.spawn(.{ .stack_size = 1 << 20 }, workerMain, .{generation.load(.acquire)});
    }
    thread_count = count;
}

/// Stops and joins the workers; the pool then runs everything on the calling thread.
pub fn deinit() void {
    if (thread_count <= 1) return;
    shutting_down.store(true, .seq_cst);
    _ = generation.fetchAdd(1, .seq_cst);
    _ = linux.futex_3arg(&generation.raw, .{ .cmd = .WAKE, .private = true }, std.math.maxInt(i32));
    for (workers[0 .. thread_count - 1]) |worker| worker.join();
    thread_count = 1;
    shutting_down.store(false, .release);
}

/// Runs `task(context, i)` for every i in [0, task_count), spread over the pool, and returns when
/// all have finished. Not reentrant: a task must not start another parallel-for.
pub fn parallelFor(comptime Context: type, context: *const Context, task_count: usize, comptime task: fn (*const Context, usize) void) void {
    const Trampoline = struct {
        fn call(raw: *const anyopaque, task_index: usize) void {
            task(@ptrCast(@alignCast(raw)), task_index);
        }
    };
    run(Trampoline.call, context, task_count);
}

fn run(task: TaskFn, context: *const anyopaque, task_count: usize) void {
    if (task_count == 0) return;
    if (thread_count == 1 or task_count == 1) {
        for (0..task_count) |i| task(context, i);
        return;
    }
    assert(task_count < 1 << 32);
    assert(!in_job);
    in_job = true;
    defer in_job = false;

    const gen = generation.load(.monotonic) +% 1;
    const slot = &slots[gen & 1];
    slot.task.store(@intFromPtr(task), .monotonic);
    slot.context.store(@intFromPtr(context), .monotonic);
    slot.task_count.store(task_count, .monotonic);
    tasks_done.store(0, .monotonic);
    // The release publishes the slot; from here on tasks of this generation can be claimed.
    claim.store(@as(u64, gen) << 32, .release);
    generation.store(gen, .seq_cst);
    if (sleepers.load(.seq_cst) > 0) {
        _ = linux.futex_3arg(&generation.raw, .{ .cmd = .WAKE, .private = true }, std.math.maxInt(i32));
    }

    workOn(gen);
    // Wait for tasks that were claimed, not for workers to show up: a worker the OS has not
    // scheduled yet simply finds nothing left to claim.
    var spins: usize = 0;
    while (tasks_done.load(.acquire) != task_count) : (spins += 1) {
        if (spins < spin_iterations_before_sleep) std.atomic.spinLoopHint() else std.Thread.yield() catch {};
    }
}

fn workOn(gen: u32) void {
    var current = claim.load(.acquire);
    if (current >> 32 != gen) return;
    const slot = &slots[gen & 1];
    const task: TaskFn = @ptrFromInt(slot.task.load(.acquire));
    const context: *const anyopaque = @ptrFromInt(slot.context.load(.acquire));
    const task_count = slot.task_count.load(.acquire);
    while (true) {
        if (current >> 32 != gen) return;
        const index: usize = @intCast(current & 0xffff_ffff);
        if (index >= task_count) return;
        if (claim.cmpxchgWeak(current, current + 1, .acq_rel, .acquire)) |actual| {
            current = actual;
            continue;
        }
        // The claim succeeded while this generation was current, so the slot was still valid.
        task(context, index);
        _ = tasks_done.fetchAdd(1, .release);
        current = claim.load(.acquire);
    }
}

fn workerMain(start_generation: u32) void {
    var seen = start_generation;
    while (true) {
        seen = waitForGeneration(seen);
        if (shutting_down.load(.acquire)) return;
        workOn(seen);
    }
}

fn waitForGeneration(seen: u32) u32 {
    var spins: usize = 0;
    while (true) : (spins += 1) {
        const current = generation.load(.acquire);
        if (current != seen) return current;
        if (spins < spin_iterations_before_sleep) {
            std.atomic.spinLoopHint();
        } else {
            _ = sleepers.fetchAdd(1, .seq_cst);
            _ = linux.futex_4arg(&generation.raw, .{ .cmd = .WAIT, .private = true }, seen, null);
            _ = sleepers.fetchSub(1, .seq_cst);
        }
    }
}

test "parallelFor visits every task exactly once" {
    try init(4);
    defer deinit();
    const Context = struct {
        hits: []std.atomic.Value(u32),
        fn visit(self: *const @This(), index: usize) void {
            _ = self.hits[index].fetchAdd(1, .monotonic);
        }
    };
    var hits: [1000]std.atomic.Value(u32) = undefined;
    for (&hits) |*h| h.* = std.atomic.Value(u32).init(0);
    const context = Context{ .hits = &hits };
    for (0..50) |_| parallelFor(Context, &context, hits.len, Context.visit);
    for (hits) |h| try std.testing.expectEqual(@as(u32, 50), h.load(.monotonic));
}

test "pool handles zero and one task, and re-initialisation" {
    const Context = struct {
        counter: *std.atomic.Value(u32),
        fn visit(self: *const @This(), _: usize) void {
            _ = self.counter.fetchAdd(1, .monotonic);
        }
    };
    var counter = std.atomic.Value(u32).init(0);
    const context = Context{ .counter = &counter };
    for ([_]usize{ 1, 2, 3, 1 }) |count| {
        try init(count);
        parallelFor(Context, &context, 0, Context.visit);
        parallelFor(Context, &context, 1, Context.visit);
        parallelFor(Context, &context, 7, Context.visit);
    }
    deinit();
    try std.testing.expectEqual(@as(u32, 32), counter.load(.monotonic));
}

test "a parallel-for right after another never runs a stale job" {
    try init(2);
    defer deinit();
    const Context = struct {
        sums: []std.atomic.Value(u64),
        id: u64,
        fn visit(self: *const @This(), index: usize) void {
            _ = self.sums[index].fetchAdd(self.id, .monotonic);
        }
    };
    var sums: [3]std.atomic.Value(u64) = undefined;
    for (&sums) |*x| x.* = std.atomic.Value(u64).init(0);
    var expected: u64 = 0;
    for (1..2001) |id| {
        const context = Context{ .sums = &sums, .id = id };
        parallelFor(Context, &context, 2 + id % 2, Context.visit);
        expected += id;
    }
    try std.testing.expectEqual(expected, sums[0].load(.monotonic));
    try std.testing.expectEqual(expected, sums[1].load(.monotonic));
}
