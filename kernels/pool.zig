//! A persistent worker pool: threads are spawned once by `init` and then serve every kernel call
//! as a parallel-for. Work is handed out by an atomic counter over task indices, so a slow core
//! never holds the others up; the calling thread works too. Idle workers spin briefly (a kernel
//! call usually follows within microseconds) and then sleep on a futex.
//!
//! Determinism: a kernel must make each task write its own outputs and fix its reduction order
//! independently of which thread runs it. Then results do not depend on scheduling.
const std = @import("std");
const linux = std.os.linux;
const assert = std.debug.assert;

pub const max_threads = 64;
const spin_iterations_before_sleep = 1 << 16;

pub const TaskFn = *const fn (context: *const anyopaque, task_index: usize) void;

const Job = struct {
    task: TaskFn,
    context: *const anyopaque,
    task_count: usize,
};

var workers: [max_threads]std.Thread = undefined;
var thread_count: usize = 1; // workers + the calling thread
var job: Job = undefined;
// Bumped once per job; workers sleep on it. 32 bits because the futex word is a u32.
var generation = std.atomic.Value(u32).init(0);
var next_task = std.atomic.Value(usize).init(0);
var workers_busy = std.atomic.Value(usize).init(0);
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
    shutting_down.store(true, .release);
    _ = generation.fetchAdd(1, .acq_rel);
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
    run(.{ .task = Trampoline.call, .context = context, .task_count = task_count });
}

fn run(new_job: Job) void {
    if (new_job.task_count == 0) return;
    if (thread_count == 1 or new_job.task_count == 1) {
        for (0..new_job.task_count) |i| new_job.task(new_job.context, i);
        return;
    }
    assert(!in_job);
    in_job = true;
    defer in_job = false;

    job = new_job;
    next_task.store(0, .monotonic);
    workers_busy.store(thread_count - 1, .monotonic);
    // The release on `generation` publishes `job` and the counters to the workers.
    _ = generation.fetchAdd(1, .release);
    _ = linux.futex_3arg(&generation.raw, .{ .cmd = .WAKE, .private = true }, std.math.maxInt(i32));

    workOnJob();
    var spins: usize = 0;
    while (workers_busy.load(.acquire) != 0) : (spins += 1) {
        if (spins < spin_iterations_before_sleep) std.atomic.spinLoopHint() else std.Thread.yield() catch {};
    }
}

fn workOnJob() void {
    while (true) {
        const index = next_task.fetchAdd(1, .monotonic);
        if (index >= job.task_count) return;
        job.task(job.context, index);
    }
}

fn workerMain(start_generation: u32) void {
    var seen = start_generation;
    while (true) {
        seen = waitForGeneration(seen);
        if (shutting_down.load(.acquire)) return;
        workOnJob();
        _ = workers_busy.fetchSub(1, .release);
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
            _ = linux.futex_4arg(&generation.raw, .{ .cmd = .WAIT, .private = true }, seen, null);
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
