//! Argument checks of the C ABI (root.zig) that hold in every build mode. The library ships
//! ReleaseFast, where std.debug.assert only tells the optimizer what to assume, so a bad size
//! reaching a kernel would be undefined behaviour (an out-of-bounds write, not an error). Each
//! export therefore checks its arguments with these helpers before it builds a slice; the kernels'
//! inner-loop asserts stay as they are.
//!
//! A failed check writes one line to stderr,
//!   llm.ts kernel llmts_matmul_forward: bt = -3, must be at least 1 (a call that bypassed src/ffi.ts)
//! and ends the process with exit status 70 (EX_SOFTWARE in sysexits.h: an internal error, since
//! src/ffi.ts refuses every such call before it reaches Zig). The exit is exit_group: no atexit or
//! signal handler of the host process (Bun) runs while other threads may be inside a kernel.
const std = @import("std");
const linux = std.os.linux;

pub const exit_status = 70;

/// The most elements any one array argument may have (2^40 floats = 4 TiB: beyond any real
/// buffer, far below where byte offsets overflow).
pub const max_elements: usize = 1 << 40;

/// The checks of one call of one exported symbol (named in every message).
pub const Call = struct {
    symbol: []const u8,

    pub fn of(comptime source: std.builtin.SourceLocation) Call {
        return .{ .symbol = source.fn_name };
    }

    pub fn fail(self: Call, comptime format: []const u8, args: anytype) noreturn {
        @branchHint(.cold);
        var buffer: [512]u8 = undefined;
        var writer: std.Io.Writer = .fixed(&buffer);
        const suffix = " (a call that bypassed src/ffi.ts)\n";
        writer.print("llm.ts kernel {s}: ", .{self.symbol}) catch {};
        writer.print(format, args) catch {};
        const text = writer.buffered();
        writeStderr(text[0..@min(text.len, buffer.len - suffix.len)]);
        writeStderr(suffix);
        linux.exit_group(exit_status);
    }

    pub fn require(self: Call, ok: bool, comptime format: []const u8, args: anytype) void {
        if (!ok) self.fail(format, args);
    }

    /// A size: at least 1.
    pub fn dim(self: Call, comptime name: []const u8, value: i32) usize {
        self.require(value >= 1, name ++ " = {d}, must be at least 1", .{value});
        return @intCast(value);
    }

    /// A position or an offset: at least 0.
    pub fn offset(self: Call, comptime name: []const u8, value: i32) usize {
        self.require(value >= 0, name ++ " = {d}, must be at least 0", .{value});
        return @intCast(value);
    }

    /// An element count: from 1 to max_elements.
    pub fn count(self: Call, comptime name: []const u8, value: i64) usize {
        self.require(value >= 1 and value <= max_elements, name ++ " = {d}, must be from 1 to 2^40", .{value});
        return @intCast(value);
    }

    /// The product of `factors` (a tuple of sizes), refused above max_elements (and so before it
    /// could overflow). `what` names the product, e.g. "b·t·3·c".
    pub fn elements(self: Call, comptime what: []const u8, factors: anytype) usize {
        return boundedProduct(factors) orelse self.fail(what ++ " = " ++ factorFormat(factors.len) ++ " elements, more than 2^40", factors);
    }

    pub fn floats(self: Call, comptime name: []const u8, ptr: ?[*]f32, len: usize) []f32 {
        return (ptr orelse self.fail(name ++ " is null", .{}))[0..len];
    }

    pub fn constFloats(self: Call, comptime name: []const u8, ptr: ?[*]const f32, len: usize) []const f32 {
        return (ptr orelse self.fail(name ++ " is null", .{}))[0..len];
    }

    /// Token ids or targets: every one in [0, limit).
    pub fn ids(self: Call, comptime name: []const u8, ptr: ?[*]const i32, len: usize, limit: usize, comptime limit_name: []const u8) []const i32 {
        const values = (ptr orelse self.fail(name ++ " is null", .{}))[0..len];
        for (values, 0..) |id, i| {
            if (id < 0 or id >= limit) self.fail(name ++ "[{d}] = {d}, outside [0, " ++ limit_name ++ " = {d})", .{ i, id, limit });
        }
        return values;
    }

    pub fn finite(self: Call, comptime name: []const u8, value: f32) f32 {
        self.require(std.math.isFinite(value), name ++ " = {d}, must be finite", .{value});
        return value;
    }
};

/// The product of the factors, or null above max_elements (never overflowing on the way).
fn boundedProduct(factors: anytype) ?usize {
    var product: usize = 1;
    inline for (factors) |factor| {
        product = std.math.mul(usize, product, factor) catch return null;
        if (product > max_elements) return null;
    }
    return product;
}

/// "{d}·{d}·…" for `count` factors.
fn factorFormat(comptime count: usize) []const u8 {
    comptime var format: []const u8 = "{d}";
    inline for (1..count) |_| format = format ++ "·{d}";
    return format;
}

fn writeStderr(text: []const u8) void {
    var rest = text;
    while (rest.len > 0) {
        const written = linux.write(2, rest.ptr, rest.len);
        switch (linux.errno(written)) {
            .SUCCESS => rest = rest[written..],
            .INTR => continue,
            else => return,
        }
    }
}

test "boundedProduct stops at 2^40 elements and never overflows" {
    const big: usize = std.math.maxInt(i32);
    try std.testing.expectEqual(@as(?usize, 6), boundedProduct(.{ 1, 2, 3 }));
    try std.testing.expectEqual(@as(?usize, max_elements), boundedProduct(.{ @as(usize, 1 << 20), @as(usize, 1 << 20) }));
    try std.testing.expectEqual(@as(?usize, null), boundedProduct(.{ @as(usize, 1 << 20), @as(usize, 1 << 20) + 1 }));
    try std.testing.expectEqual(@as(?usize, null), boundedProduct(.{ big, big, 3, big })); // 2^94: would wrap
    try std.testing.expectEqual(@as(?usize, null), boundedProduct(.{ std.math.maxInt(usize), @as(usize, 2) }));
}

test "factorFormat joins one {d} per factor" {
    try std.testing.expectEqualStrings("{d}", factorFormat(1));
    try std.testing.expectEqualStrings("{d}·{d}·{d}", factorFormat(3));
}
