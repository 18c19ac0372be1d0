// src/dist without MPI: launcher detection, a plain process never loading libmpi, the error under
// a launcher when libmpi cannot be loaded, and the ZeRO-1 shard layout.
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { startDistributed, timeoutFromEnvironment } from "../src/dist/distributed.ts";
import { detectMpiLaunch, MpiArgumentError } from "../src/dist/mpi.ts";
import { ShardLayout } from "../src/dist/shards.ts";

const ROOT = resolve(import.meta.dir, "..");

describe("launcher detection", () => {
  test("Open MPI's mpirun, PMIx and PMI-2 launchers; a plain process", () => {
    expect(detectMpiLaunch({})).toBeNull();
    expect(detectMpiLaunch({ OMPI_COMM_WORLD_SIZE: "3", OMPI_COMM_WORLD_RANK: "2" })).toEqual({ rank: 2, size: 3, source: "OMPI_COMM_WORLD_SIZE/OMPI_COMM_WORLD_RANK" });
    expect(detectMpiLaunch({ PMIX_RANK: "1" })).toEqual({ rank: 1, size: -1, source: "PMIX_RANK" });
    expect(detectMpiLaunch({ PMI_SIZE: "4", PMI_RANK: "0" })).toEqual({ rank: 0, size: 4, source: "PMI_SIZE/PMI_RANK" });
  });
  test("malformed values are errors naming the variable", () => {
    expect(() => detectMpiLaunch({ OMPI_COMM_WORLD_SIZE: "two", OMPI_COMM_WORLD_RANK: "0" })).toThrow(/OMPI_COMM_WORLD_SIZE is "two", not a non-negative integer/);
    expect(() => detectMpiLaunch({ OMPI_COMM_WORLD_SIZE: "2", OMPI_COMM_WORLD_RANK: "2" })).toThrow(/OMPI_COMM_WORLD_SIZE is 2 but OMPI_COMM_WORLD_RANK is 2/);
    expect(() => detectMpiLaunch({ OMPI_COMM_WORLD_SIZE: "2" })).toThrow(MpiArgumentError);
  });
  test("LLMTS_MPI_TIMEOUT_S", () => {
    expect(timeoutFromEnvironment({})).toBe(600);
    expect(timeoutFromEnvironment({ LLMTS_MPI_TIMEOUT_S: "2.5" })).toBe(2.5);
    expect(() => timeoutFromEnvironment({ LLMTS_MPI_TIMEOUT_S: "0" })).toThrow(/LLMTS_MPI_TIMEOUT_S must be a number of seconds > 0, got "0"/);
  });
});

describe("loading", () => {
  test("a plain process gets null and never maps libmpi", () => {
    const launched = ["OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_SIZE"].some((k) => process.env[k] !== undefined);
    if (launched) return; // bun test itself run under a launcher: nothing to check
    expect(startDistributed()).toBeNull();
    expect(readFileSync("/proc/self/maps", "utf8")).not.toContain("libmpi");
  });

  test("under a launcher without a loadable libmpi, the error says what to install", () => {
    const script = `import { startDistributed } from ${JSON.stringify(`${ROOT}/src/dist/distributed.ts`)}; startDistributed();`;
    const proc = Bun.spawnSync([process.execPath, "-e", script], {
      env: { ...process.env, OMPI_COMM_WORLD_SIZE: "2", OMPI_COMM_WORLD_RANK: "0", LLMTS_LIBMPI: "/nonexistent/libmpi.so.40" },
      stdout: "pipe",
      stderr: "pipe",
    });
    expect(proc.exitCode).not.toBe(0);
    const err = proc.stderr.toString();
    expect(err).toContain("started by an MPI launcher (OMPI_COMM_WORLD_SIZE/OMPI_COMM_WORLD_RANK), but /nonexistent/libmpi.so.40 could not be loaded");
    expect(err).toContain("apt-get install openmpi-bin libopenmpi-dev");
  });
});

describe("ZeRO-1 shard layout", () => {
  test("contiguous shards of ceil(P/N), the last one shorter, covering [0, P) in rank order", () => {
    for (const [P, N] of [[10, 3], [12, 3], [10007, 2], [4, 3], [1, 4], [5, 5]]) {
      const layout = new ShardLayout(P, N);
      expect(layout.shardSize).toBe(Math.ceil(P / N));
      let at = 0;
      for (let r = 0; r < N; r++) {
        expect(layout.start(r)).toBe(at);
        expect(layout.length(r)).toBe(Math.max(0, Math.min(layout.shardSize, P - at)));
        at = layout.end(r);
      }
      expect(at).toBe(P);
      for (let i = 0; i < P; i++) expect(i >= layout.start(layout.ownerOf(i)) && i < layout.end(layout.ownerOf(i))).toBe(true);
    }
    expect(new ShardLayout(4, 3).countsIn(0, 4)).toEqual([2, 2, 0]);
  });

  test("a range's per-rank counts and pieces", () => {
    const layout = new ShardLayout(10, 3); // shards [0,4) [4,8) [8,10)
    expect(layout.countsIn(3, 9)).toEqual([1, 4, 1]);
    expect(layout.piecesOf(3, 9)).toEqual([{ rank: 0, start: 3, end: 4 }, { rank: 1, start: 4, end: 8 }, { rank: 2, start: 8, end: 9 }]);
    expect(layout.piecesOf(4, 8)).toEqual([{ rank: 1, start: 4, end: 8 }]);
    expect(layout.piecesOf(5, 5)).toEqual([]);
    // Pieces of any range tile it, each inside its owner's shard.
    for (let a = 0; a <= 10; a++) {
      for (let b = a; b <= 10; b++) {
        const pieces = layout.piecesOf(a, b);
        expect(pieces.reduce((n, p) => n + p.end - p.start, 0)).toBe(b - a);
        for (const p of pieces) expect(p.start >= layout.start(p.rank) && p.end <= layout.end(p.rank)).toBe(true);
        expect(pieces.map((p) => p.end - p.start)).toEqual(layout.countsIn(a, b).filter((c) => c > 0));
      }
    }
    expect(() => layout.piecesOf(3, 11)).toThrow(/range \[3, 11\) is not inside \[0, 10\)/);
    expect(() => new ShardLayout(0, 2)).toThrow(/count must be a positive integer/);
  });
});
