//! The machine, as the kernels see it: the vector width they are compiled for, the vector type and
//! its load/store helpers, and the CPU features found at run time.
//!
//! Width: 16 f32 lanes when the build target has AVX-512F (one zmm register), else 8 (one ymm
//! register of AVX2). Every kernel takes its vector type and load/store helpers from `native`
//! (= Width(lanes)); a kernel measured faster at a narrower width picks `Width(8)` and says why
//! where it does (decode.zig).
//!
//! Features: the build target's (`target_features`, fixed at compile time) and the running CPU's
//! (`cpuFeatures`, from cpuid). A feature counts only if the CPU has it AND the OS saves the
//! registers it uses across context switches (XCR0, read with xgetbv once OSXSAVE says it may be):
//! a CPU with AVX-512 under an OS that does not save zmm state must not run AVX-512 code.
const std = @import("std");
const builtin = @import("builtin");
const assert = std.debug.assert;

const is_x86_64 = builtin.cpu.arch == .x86_64;

fn targetHas(comptime feature: std.Target.x86.Feature) bool {
    return is_x86_64 and std.Target.x86.featureSetHas(builtin.cpu.features, feature);
}

/// Whether the build target has these; code using the instructions is compiled only if so.
pub const has_avx512f = targetHas(.avx512f);
pub const has_avx512bf16 = targetHas(.avx512bf16);

/// f32 lanes per vector register of the build target.
pub const lanes = if (has_avx512f) 16 else 8;

/// A vector type of `width` f32 lanes with its helpers.
pub fn Width(comptime width: usize) type {
    // Inside, the vector type is spelled out as Vector and the width as `width`: using the
    // members' own names would be ambiguous with the file-level `lanes`.
    const Vector = @Vector(width, f32);
    return struct {
        pub const lanes = width;
        pub const V = Vector;
        /// The alignment of V: an aligned load or store may use vmovaps.
        pub const vector_bytes = @alignOf(Vector);

        pub inline fn splat(x: f32) Vector {
            return @splat(x);
        }
        /// s[at .. at+width) as a vector; any alignment.
        pub inline fn load(s: []const f32, at: usize) Vector {
            return s[at..][0..width].*;
        }
        /// s[at .. at+width) = v; any alignment.
        pub inline fn store(s: []f32, at: usize, v: Vector) void {
            s[at..][0..width].* = v;
        }
        /// p[0 .. width) as a vector; p must be aligned to vector_bytes (checked in safe builds).
        pub inline fn loadAligned(p: [*]const f32) Vector {
            const vector: *const Vector = @ptrCast(@alignCast(p));
            return vector.*;
        }
        /// p[0 .. width) = v; p must be aligned to vector_bytes (checked in safe builds).
        pub inline fn storeAligned(p: [*]f32, v: Vector) void {
            const vector: *Vector = @ptrCast(@alignCast(p));
            vector.* = v;
        }
    };
}

/// The default of every kernel: `const vec = simd.native;`, then vec.V, vec.load, vec.store, ….
pub const native = Width(lanes);

// ---- CPU features ----

/// The features the kernels care about, as a bitmask (bit 0 = avx2, …) in the C ABI.
/// amx_bf16 is reported for information only: no kernel uses AMX.
pub const Features = packed struct(u32) {
    avx2: bool = false,
    fma: bool = false,
    avx512f: bool = false,
    avx512bf16: bool = false,
    amx_bf16: bool = false,
    _unused: u27 = 0,

    pub fn bits(self: Features) u32 {
        return @bitCast(self);
    }
    /// The features of `self` that `other` lacks.
    pub fn without(self: Features, other: Features) Features {
        return @bitCast(self.bits() & ~other.bits());
    }
};

/// What the library was compiled to require. Never amx_bf16: no kernel uses AMX, so a CPU or OS
/// without it can run any build.
pub const target_features = Features{
    .avx2 = targetHas(.avx2),
    .fma = targetHas(.fma),
    .avx512f = has_avx512f,
    .avx512bf16 = has_avx512bf16,
};

const Cpuid = struct { eax: u32, ebx: u32, ecx: u32, edx: u32 };

fn cpuid(leaf: u32, subleaf: u32) Cpuid {
    var eax: u32 = undefined;
    var ebx: u32 = undefined;
    var ecx: u32 = undefined;
    var edx: u32 = undefined;
    asm volatile ("cpuid"
        : [_] "={eax}" (eax),
          [_] "={ebx}" (ebx),
          [_] "={ecx}" (ecx),
          [_] "={edx}" (edx),
        : [_] "{eax}" (leaf),
          [_] "{ecx}" (subleaf),
    );
    return .{ .eax = eax, .ebx = ebx, .ecx = ecx, .edx = edx };
}

/// Extended control register 0: which register states the OS saves. Only valid when
/// cpuid(1).ecx.OSXSAVE is set (otherwise xgetbv faults).
fn xcr0() u64 {
    var low: u32 = undefined;
    var high: u32 = undefined;
    asm volatile ("xgetbv"
        : [_] "={eax}" (low),
          [_] "={edx}" (high),
        : [_] "{ecx}" (@as(u32, 0)),
    );
    return @as(u64, high) << 32 | low;
}

fn bit(word: anytype, index: u6) bool {
    return (@as(u64, word) >> index) & 1 == 1;
}

/// Which register states XCR0 says the OS saves.
const SavedState = struct {
    avx: bool, // xmm (bit 1) and the upper ymm halves (bit 2)
    avx512: bool, // opmask (5), upper zmm halves (6), zmm16–31 (7)
    amx: bool, // tile configuration (17) and tile data (18)

    fn of(xcr: u64) SavedState {
        return .{
            .avx = bit(xcr, 1) and bit(xcr, 2),
            .avx512 = bit(xcr, 1) and bit(xcr, 2) and bit(xcr, 5) and bit(xcr, 6) and bit(xcr, 7),
            .amx = bit(xcr, 17) and bit(xcr, 18),
        };
    }
};

/// The running CPU's features that the OS has also enabled (cpuid and xgetbv, a few hundred
/// cycles: callers ask once).
pub fn cpuFeatures() Features {
    if (!is_x86_64) return .{};
    const max_leaf = cpuid(0, 0).eax;
    if (max_leaf < 1) return .{};
    const leaf1 = cpuid(1, 0);
    const osxsave = bit(leaf1.ecx, 27);
    const saved = if (osxsave) SavedState.of(xcr0()) else SavedState.of(0);
    const avx = bit(leaf1.ecx, 28) and saved.avx;
    var features = Features{ .fma = avx and bit(leaf1.ecx, 12) };
    if (max_leaf < 7) return features;
    const leaf7 = cpuid(7, 0);
    features.avx2 = avx and bit(leaf7.ebx, 5);
    features.avx512f = saved.avx512 and bit(leaf7.ebx, 16);
    features.amx_bf16 = saved.amx and bit(leaf7.edx, 22);
    if (leaf7.eax >= 1) features.avx512bf16 = features.avx512f and bit(cpuid(7, 1).eax, 5);
    return features;
}

// ---- bf16 dot products ----

/// bf16 values as the instruction takes them: 32 per zmm register (the upper half of an f32).
pub const Bf16x32 = @Vector(32, u16);
pub const F32x16 = @Vector(16, f32);

/// vdpbf16ps: acc[i] + a[2i]·b[2i] + a[2i+1]·b[2i+1] for i in [0, 16), 32 multiplies and 32 adds.
/// Only where the build target has AVX512_BF16 (the assembler refuses the instruction otherwise);
/// callers must also check cpuFeatures().avx512bf16 before running it.
pub inline fn dotBf16(acc: F32x16, a: Bf16x32, b: Bf16x32) F32x16 {
    if (!has_avx512bf16) @compileError("dotBf16 needs a build target with AVX512_BF16");
    return asm ("vdpbf16ps %[b], %[a], %[acc]"
        : [acc] "=v" (-> F32x16),
        : [_] "0" (acc),
          [a] "v" (a),
          [b] "v" (b),
    );
}

/// bf16 → f32 is exact: the bf16 bits are the upper 16 bits of the f32.
pub fn bf16ToF32(x: u16) f32 {
    return @bitCast(@as(u32, x) << 16);
}

/// The orders in which an implementation of vdpbf16ps may add one lane's two products to the
/// accumulator (the products of two bf16 values are exact in f32; only the additions round).
/// Intel's SDM specifies odd_first; other vendors are found by probing (probeDotBf16Order).
pub const DotOrder = enum { odd_first, even_first, products_first };

/// Denormals-are-zero / flush-to-zero, as the instruction does on its inputs and its result.
fn flushDenormal(x: f32) f32 {
    return if (x != 0 and @abs(x) < std.math.floatMin(f32)) std.math.copysign(@as(f32, 0), x) else x;
}

/// One lane of vdpbf16ps in scalar f32: acc + a_lo·b_lo + a_hi·b_hi in `order`, each addition
/// rounded to nearest even, denormal inputs and results flushed to zero. The test reference of the
/// bf16 GEMM (kernels/gemm.zig), bit for bit.
pub fn dotBf16Lane(acc: f32, a_lo: u16, a_hi: u16, b_lo: u16, b_hi: u16, order: DotOrder) f32 {
    const even = flushDenormal(bf16ToF32(a_lo)) * flushDenormal(bf16ToF32(b_lo));
    const odd = flushDenormal(bf16ToF32(a_hi)) * flushDenormal(bf16ToF32(b_hi));
    const start = flushDenormal(acc);
    return switch (order) {
        .odd_first => flushDenormal(flushDenormal(start + odd) + even),
        .even_first => flushDenormal(flushDenormal(start + even) + odd),
        .products_first => flushDenormal(start + flushDenormal(even + odd)),
    };
}

/// Which DotOrder this CPU's vdpbf16ps follows (null: none of them), from 4000 random lanes whose
/// roundings tell the orders apart. Needs the instruction (build target and CPU).
pub fn probeDotBf16Order() ?DotOrder {
    if (!has_avx512bf16) @compileError("probeDotBf16Order needs a build target with AVX512_BF16");
    var prng = std.Random.DefaultPrng.init(0xbf16);
    const random = prng.random();
    var possible = [_]bool{ true, true, true };
    for (0..250) |_| {
        var acc: [16]f32 = undefined;
        var a: [32]u16 = undefined;
        var b: [32]u16 = undefined;
        for (&acc) |*x| x.* = random.floatNorm(f32);
        for (&a) |*x| x.* = @truncate(@as(u32, @bitCast(random.floatNorm(f32))) >> 16);
        for (&b) |*x| x.* = @truncate(@as(u32, @bitCast(random.floatNorm(f32))) >> 16);
        const got: [16]f32 = dotBf16(acc, a, b);
        for (0..16) |i| {
            for (std.enums.values(DotOrder), 0..) |order, o| {
                const want = dotBf16Lane(acc[i], a[2 * i], a[2 * i + 1], b[2 * i], b[2 * i + 1], order);
                if (@as(u32, @bitCast(want)) != @as(u32, @bitCast(got[i]))) possible[o] = false;
            }
        }
    }
    for (std.enums.values(DotOrder), 0..) |order, o| if (possible[o]) return order;
    return null;
}

// ---- tests ----

const testing = std.testing;

test "the build target's features are present on the CPU running the tests" {
    const cpu = cpuFeatures();
    try testing.expectEqual(@as(u32, 0), target_features.without(cpu).bits());
    // Implications the detection must respect (the CPU cannot report them otherwise).
    if (cpu.avx512bf16) try testing.expect(cpu.avx512f);
    if (cpu.avx512f) try testing.expect(cpu.fma);
    try testing.expectEqual(lanes == 16, has_avx512f);
}

test "SavedState reads the XCR0 bits" {
    try testing.expect(!SavedState.of(0).avx);
    try testing.expect(SavedState.of(0b110).avx and !SavedState.of(0b110).avx512);
    // AVX-512 needs all of opmask, zmm upper halves and zmm16–31, on top of AVX.
    try testing.expect(SavedState.of(0b1110_0110).avx512);
    try testing.expect(!SavedState.of(0b0110_0110).avx512);
    try testing.expect(!SavedState.of(0b1110_0000).avx512);
    try testing.expect(SavedState.of(0b110 << 16).amx and !SavedState.of(0b010 << 16).amx);
}

test "load and store at any offset, aligned load and store at vector alignment" {
    const vec = native;
    var buffer: [3 * lanes]f32 align(vec.vector_bytes) = undefined;
    for (&buffer, 0..) |*x, i| x.* = @floatFromInt(i);
    const v: [lanes]f32 = vec.load(&buffer, 3);
    for (0..lanes) |i| try testing.expectEqual(@as(f32, @floatFromInt(i + 3)), v[i]);
    vec.store(&buffer, 1, vec.splat(-1));
    try testing.expectEqual(@as(f32, 0), buffer[0]);
    for (buffer[1 .. lanes + 1]) |x| try testing.expectEqual(@as(f32, -1), x);
    try testing.expectEqual(@as(f32, lanes + 1), buffer[lanes + 1]);
    const w = vec.loadAligned(buffer[lanes..].ptr);
    vec.storeAligned(buffer[2 * lanes ..].ptr, w);
    try testing.expectEqualSlices(f32, buffer[lanes .. 2 * lanes], buffer[2 * lanes ..]);
}

/// The instruction as the Intel SDM defines it, in scalar f32: per lane the odd pair's product is
/// added first, then the even pair's, each sum rounded to nearest even. The products of two bf16
/// values (8-bit significands) are exact in f32, so only the two additions round.
fn dotBf16Scalar(acc: [16]f32, a: [32]u16, b: [32]u16) [16]f32 {
    var out: [16]f32 = undefined;
    for (0..16) |i| {
        var sum = acc[i] + bf16ToF32(a[2 * i + 1]) * bf16ToF32(b[2 * i + 1]);
        sum += bf16ToF32(a[2 * i]) * bf16ToF32(b[2 * i]);
        out[i] = sum;
    }
    return out;
}

fn isIntel() bool {
    if (!is_x86_64) return false;
    const leaf0 = cpuid(0, 0);
    const vendor: [3]u32 = .{ leaf0.ebx, leaf0.edx, leaf0.ecx };
    return std.mem.eql(u8, std.mem.asBytes(&vendor), "GenuineIntel");
}

test "vdpbf16ps follows one of the known addition orders (skipped: build target or CPU lacks AVX512_BF16)" {
    if (!has_avx512bf16) return error.SkipZigTest;
    if (!cpuFeatures().avx512bf16) return error.SkipZigTest;
    const order = probeDotBf16Order() orelse return error.TestUnexpectedResult;
    // Intel's SDM defines the order; a CPU of another vendor only has to follow one of them.
    if (isIntel()) try testing.expectEqual(DotOrder.odd_first, order);
    // The probe can tell the orders apart: on random lanes they disagree somewhere.
    var differ = false;
    for (0..1000) |i| {
        const acc: f32 = @floatFromInt(i);
        const x: u16 = @truncate((0x3f80 + i * 7) & 0x7fff);
        const y: u16 = @truncate((0x3b00 + i * 13) & 0x7fff);
        const odd = dotBf16Lane(acc, x, y, y, x, .odd_first);
        differ = differ or odd != dotBf16Lane(acc, x, y, y, x, .products_first) or dotBf16Lane(acc, x, x, y, y, .odd_first) != dotBf16Lane(acc, x, x, y, y, .even_first);
    }
    try testing.expect(differ);
}

test "vdpbf16ps matches its definition (skipped: build target or CPU lacks AVX512_BF16)" {
    if (!has_avx512bf16) return error.SkipZigTest;
    if (!cpuFeatures().avx512bf16) return error.SkipZigTest;
    // Bit for bit on Intel, whose SDM defines the order; elsewhere within the two roundings of
    // any order: |error| ≤ 2·2^-24·(|acc| + |p_odd| + |p_even|), while a wrong pairing or a
    // dropped product errs by a whole product.
    const exact = isIntel();
    var prng = std.Random.DefaultPrng.init(5);
    const random = prng.random();
    for (0..1000) |_| {
        var acc: [16]f32 = undefined;
        var a: [32]u16 = undefined;
        var b: [32]u16 = undefined;
        // Normal numbers only (the instruction flushes subnormals): truncated f32s of moderate size.
        for (&acc) |*x| x.* = random.floatNorm(f32) * 4;
        for (&a) |*x| x.* = @truncate(@as(u32, @bitCast(random.floatNorm(f32))) >> 16);
        for (&b) |*x| x.* = @truncate(@as(u32, @bitCast(random.floatNorm(f32))) >> 16);
        const got: [16]f32 = dotBf16(acc, a, b);
        const want = dotBf16Scalar(acc, a, b);
        for (want, got, 0..) |w, g, i| {
            if (exact) {
                try testing.expectEqual(@as(u32, @bitCast(w)), @as(u32, @bitCast(g)));
            } else {
                const p_odd = @as(f64, bf16ToF32(a[2 * i + 1])) * bf16ToF32(b[2 * i + 1]);
                const p_even = @as(f64, bf16ToF32(a[2 * i])) * bf16ToF32(b[2 * i]);
                const bound = 2 * std.math.pow(f64, 2, -24) * (@abs(acc[i]) + @abs(p_odd) + @abs(p_even));
                try testing.expect(@abs(@as(f64, g) - (acc[i] + p_odd + p_even)) <= bound);
            }
        }
    }
}
