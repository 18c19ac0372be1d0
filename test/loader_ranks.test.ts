// Data-parallel sharding of the loader (no MPI needed): rank r of N at batch B must see exactly the
// rows one process sees at batch N·B — rank r's B rows are rows [r·B, (r+1)·B) of the single
// process's batch — in both orders, across shard boundaries and epochs, with the same state.
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { TokenLoader } from "../src/data/loader.ts";
import { writeTokenFile } from "../src/data/token_file.ts";

const dir = mkdtempSync(join(tmpdir(), "llmts-loader-ranks-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A token file whose token at position i is (offset + i) mod 60000: windows are easy to check. */
function ramp(name: string, n: number, offset = 0): string {
  const path = join(dir, name);
  writeTokenFile(path, Uint16Array.from({ length: n }, (_, i) => (offset + i) % 60000));
  return path;
}

const loader = (files: string | string[], B: number, T: number, shuffle: boolean, rank = 0, worldSize = 1, seed = 5) =>
  new TokenLoader({ files, B, T, vocabSize: 65536, shuffle, seed, label: "train", rank, worldSize });

// Three shards of uneven lengths, none a multiple of any global window, so ranks must switch
// shards together (on the global window) and wrap together.
const shards = [ramp("r_000000.bin", 1000, 0), ramp("r_000001.bin", 517, 20000), ramp("r_000002.bin", 301, 40000)];
const pattern = join(dir, "r_*.bin");

describe("rank r of N at batch B = rows [r·B, (r+1)·B) of one process at batch N·B", () => {
  for (const shuffle of [false, true]) {
    for (const N of [2, 3]) {
      test(`${shuffle ? "shuffled" : "unshuffled"}, ${N} ranks, over several epochs`, () => {
        const B = 2, T = 8, BT = B * T;
        const single = loader(pattern, N * B, T, shuffle);
        const ranks = Array.from({ length: N }, (_, r) => loader(pattern, B, T, shuffle, r, N));
        for (const l of ranks) expect(l.batchesPerEpoch).toBe(single.batchesPerEpoch);
        const steps = 3 * single.batchesPerEpoch + 2;
        for (let k = 0; k < steps; k++) {
          single.next();
          for (let r = 0; r < N; r++) {
            ranks[r].next();
            expect(Array.from(ranks[r].inputs)).toEqual(Array.from(single.inputs.subarray(r * BT, (r + 1) * BT)));
            expect(Array.from(ranks[r].targets)).toEqual(Array.from(single.targets.subarray(r * BT, (r + 1) * BT)));
          }
        }
        // The state is the same on every rank and equal to the single process's.
        for (const l of ranks) expect(l.state()).toEqual(single.state());
      });
    }
  }

  test("unshuffled: batch k of rank r starts at token (k·N + r)·B·T of the stream", () => {
    const path = ramp("flat.bin", 2000);
    const B = 3, T = 4, BT = 12, N = 3;
    const perEpoch = Math.floor((2000 - 1) / (N * BT)); // global windows of N·B·T+1 tokens
    for (let r = 0; r < N; r++) {
      const l = loader(path, B, T, false, r, N);
      expect(l.batchesPerEpoch).toBe(perEpoch);
      for (let k = 0; k < perEpoch + 2; k++) {
        l.next();
        const start = ((k % perEpoch) * N + r) * BT;
        expect(Array.from(l.inputs)).toEqual(Array.from({ length: BT }, (_, i) => start + i));
        expect(Array.from(l.targets)).toEqual(Array.from({ length: BT }, (_, i) => start + i + 1));
      }
    }
  });

  test("a rank resumes from another world size's state when the global batch is the same", () => {
    // 2 ranks at B=3 and 3 ranks at B=2 both have global batch 6: the state carries over.
    const two = loader(pattern, 3, 8, true, 1, 2);
    for (let k = 0; k < 23; k++) two.next();
    const saved = JSON.parse(JSON.stringify(two.state()));
    const single = loader(pattern, 6, 8, true);
    single.restore(saved);
    const three = Array.from({ length: 3 }, (_, r) => loader(pattern, 2, 8, true, r, 3, 999));
    for (const l of three) l.restore(saved);
    for (let k = 0; k < 40; k++) {
      single.next();
      for (let r = 0; r < 3; r++) {
        three[r].next();
        expect(Array.from(three[r].inputs)).toEqual(Array.from(single.inputs.subarray(r * 16, (r + 1) * 16)));
      }
    }
  });

  test("another global batch is refused on resume, naming the ranks", () => {
    const saved = loader(pattern, 2, 8, true, 0, 2).state();
    expect(() => loader(pattern, 2, 8, true, 0, 3).restore(saved)).toThrow(/data differs.*3·2×8 \(3 ranks\)/);
  });
});

describe("errors", () => {
  test("a shard shorter than one global window names the ranks", () => {
    const path = ramp("short_ranks.bin", 40);
    expect(() => loader(path, 2, 8, false, 0, 2)).not.toThrow(); // 33 tokens needed
    expect(() => loader(path, 2, 8, false, 1, 3)).toThrow(new RegExp(`${path} has 40 tokens, fewer than one global batch of 3 ranks needs \\(N·B·T\\+1 = 3·2·8\\+1 = 49\\)`));
  });
  test("rank outside [0, worldSize)", () => {
    expect(() => loader(shards[0], 1, 1, false, 2, 2)).toThrow(/got rank 2 of 2/);
    expect(() => loader(shards[0], 1, 1, false, -1, 2)).toThrow(/got rank -1 of 2/);
    expect(() => loader(shards[0], 1, 1, false, 0, 0)).toThrow(/got rank 0 of 0/);
    expect(() => loader(shards[0], 1, 1, false, 0.5, 2)).toThrow(/rank must be an integer/);
  });
});
