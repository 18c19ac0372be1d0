const std = @import("std");

// Builds libllmts.so, the kernel library that src/ffi.ts loads with bun:ffi.
//   zig build                      optimize=fast (ReleaseFast), tuned for this machine's CPU
//   zig build -Dportable=true      the same for any x86_64_v3 CPU (AVX2 + FMA)
//   zig build test                 the kernels' unit tests
pub fn build(b: *std.Build) void {
    const portable = b.option(bool, "portable", "Target x86_64_v3 instead of the host CPU") orelse false;
    const optimize = b.option(std.builtin.Optimize, "optimize", "Optimization mode (default fast)") orelse .fast;
    const target = if (portable)
        b.resolveTargetQuery(.{
            .cpu_arch = .x86_64,
            .os_tag = .linux,
            .abi = .gnu,
            .cpu_model = .{ .explicit = &std.Target.x86.cpu.x86_64_v3 },
        })
    else
        b.graph.host;

    // Threads spawned from a dlopen'd library need libc's TLS set up, and the self-hosted x86
    // backend has miscompiled globals in such libraries: link libc and force LLVM.
    const kernels = b.createModule(.{
        .root_source_file = b.path("kernels/root.zig"),
        .target = target,
        .optimize = optimize,
        .link_libc = true,
    });
    const lib = b.addLibrary(.{
        .name = "llmts",
        .linkage = .dynamic,
        .root_module = kernels,
        .use_llvm = true,
    });
    b.installArtifact(lib);

    const test_module = b.createModule(.{
        .root_source_file = b.path("kernels/root.zig"),
        .target = target,
        .optimize = .safe,
        .link_libc = true,
    });
    const unit_tests = b.addTest(.{ .root_module = test_module, .use_llvm = true });
    const run_tests = b.addRunArtifact(unit_tests);
    const test_step = b.step("test", "Run the kernels' unit tests");
    test_step.dependOn(&run_tests.step);
}
