// The data loader: llm.c's unshuffled layout window by window, seeded shuffling, resumable state,
// and the errors a user sees before training starts.
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DataError, TokenLoader } from "../src/data/loader.ts";
import { tokenFileHeader, writeTokenFile } from "../src/data/token_file.ts";
import { Rng } from "../src/base/rng.ts";

const dir = mkdtempSync(join(tmpdir(), "llmts-loader-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A token file whose token at position i is (offset + i): windows are easy to check. */
function ramp(name: string, n: number, offset = 0): string {
  const path = join(dir, name);
  writeTokenFile(path, Uint16Array.from({ length: n }, (_, i) => offset + i));
  return path;
}

const loader = (files: string | string[], B: number, T: number, shuffle = false, seed = 1, vocabSize = 65536) =>
  new TokenLoader({ files, B, T, vocabSize, shuffle, seed, label: "train" });

describe("unshuffled: llm.c's layout", () => {
  test("batch k is tokens [k·B·T, k·B·T + B·T] of one file, wrapping at the end", () => {
    const path = ramp("one.bin", 1000);
    const B = 2, T = 8, BT = 16;
    const l = loader(path, B, T);
    const perEpoch = Math.floor((1000 - 1) / BT); // 62: the last window needs B·T+1 tokens
    expect(l.batchesPerEpoch).toBe(perEpoch);
    for (let k = 0; k < 2 * perEpoch + 3; k++) {
      l.next();
      const start = (k % perEpoch) * BT;
      expect(Array.from(l.inputs)).toEqual(Array.from({ length: BT }, (_, i) => start + i));
      expect(Array.from(l.targets)).toEqual(Array.from({ length: BT }, (_, i) => start + i + 1));
    }
  });

  test("exactly k·B·T+1 tokens give k batches, the last one ending at the last token", () => {
    const l = loader(ramp("exact.bin", 3 * 12 + 1), 3, 4);
    expect(l.batchesPerEpoch).toBe(3);
    l.next(); l.next(); l.next();
    expect(l.targets[11]).toBe(36);
    l.next();
    expect(l.inputs[0]).toBe(0);
  });

  test("several shards: each in turn, windows never straddle, then back to the first", () => {
    const a = ramp("multi_000000.bin", 100, 0);
    const b = ramp("multi_000001.bin", 50, 1000);
    const l = loader(join(dir, "multi_*.bin"), 2, 8);
    expect(l.files).toEqual([a, b]);
    const starts: number[] = [];
    for (let k = 0; k < 6 + 3 + 2; k++) {
      l.next();
      starts.push(l.inputs[0]);
      for (let i = 0; i < 16; i++) expect(l.targets[i]).toBe(l.inputs[i] + 1);
    }
    expect(starts).toEqual([0, 16, 32, 48, 64, 80, 1000, 1016, 1032, 0, 16]);
  });
});

describe("shuffled", () => {
  const path = ramp("shuf.bin", 16 * 40 + 1);
  const starts = (l: TokenLoader, n: number) => Array.from({ length: n }, () => (l.next(), l.inputs[0]));

  test("each epoch visits every window once, in a seeded order", () => {
    const l = loader(path, 4, 4, true, 7);
    const epoch1 = starts(l, 40);
    const epoch2 = starts(l, 40);
    const all = Array.from({ length: 40 }, (_, k) => 16 * k);
    expect([...epoch1].sort((x, y) => x - y)).toEqual(all);
    expect([...epoch2].sort((x, y) => x - y)).toEqual(all);
    expect(epoch1).not.toEqual(all);
    expect(epoch2).not.toEqual(epoch1);
    for (let i = 0; i < 16; i++) expect(l.targets[i]).toBe(l.inputs[i] + 1);
  });

  test("same seed → same batches; another seed → different", () => {
    expect(starts(loader(path, 4, 4, true, 7), 100)).toEqual(starts(loader(path, 4, 4, true, 7), 100));
    expect(starts(loader(path, 4, 4, true, 8), 100)).not.toEqual(starts(loader(path, 4, 4, true, 7), 100));
  });

  test("state survives JSON and resumes exactly, across an epoch boundary", () => {
    for (const shuffle of [true, false]) {
      const straight = loader(path, 4, 4, shuffle, 3);
      const want = starts(straight, 130);
      const first = loader(path, 4, 4, shuffle, 3);
      const got = starts(first, 37);
      const saved = JSON.parse(JSON.stringify(first.state()));
      const resumed = loader(path, 4, 4, shuffle, 999); // the seed comes from the state
      resumed.restore(saved);
      got.push(...starts(resumed, 130 - 37));
      expect(got).toEqual(want);
    }
  });

  test("restore refuses other data or another shuffle setting", () => {
    const saved = loader(path, 4, 4, true, 3).state();
    expect(() => loader(path, 4, 4, false).restore(saved)).toThrow(/--no-shuffle/);
    expect(() => loader(path, 2, 4, true).restore(saved)).toThrow(/data differs/);
    expect(() => loader(path, 4, 4, true).restore(null)).toThrow(/no loader state/);
  });

  // Found by the fuzzer (a checkpoint's loader state mutated): the errors named no checkpoint, a
  // non-boolean "shuffle" was reported as "the checkpoint was shuffled, this run is shuffled", a
  // bad epochRng threw a plain Error, files: 5 threw a TypeError, and a position inside a batch
  // was resumed from.
  test("restore refuses every malformed field, naming the checkpoint and the field", () => {
    for (const shuffle of [true, false]) {
      const saved = loader(path, 4, 4, shuffle, 3).state();
      const cases: Array<[Record<string, unknown>, RegExp]> = [
        [{ shuffle: "yes" }, /"shuffle" is "yes", not true or false/],
        [{ files: 5 }, /"files" is 5, not a list of paths/],
        [{ files: [[["a"]]] }, /"files" is \[\[\["a"\]\]\], not a list of paths/],
        [{ windows: "40" }, /the data differs/],
        [{ epoch: -1 }, /epoch\/cursor -1\/\d+ out of range/],
        [{ cursor: 41 }, /epoch\/cursor \d+\/41 out of range/],
        [{ shard: 1 }, /shard\/position 1\/\d+ is not a batch start/],
        [{ position: 17 }, /shard\/position 0\/17 is not a batch start/],
      ];
      if (shuffle) cases.push([{ epochRng: [1, 2, 3, "x"] }, /"epochRng" is \[1,2,3,"x"\], not four uint32 words/], [{ epochRng: [0, 0, 0, 0] }, /"epochRng" is \[0,0,0,0\]/]);
      for (const [edit, message] of cases) {
        const resumed = loader(path, 4, 4, shuffle, 3);
        let error: unknown;
        try {
          resumed.restore({ ...saved, ...edit }, "/runs/x/ckpt_00000002.llmts");
        } catch (e) {
          error = e;
        }
        expect(error).toBeInstanceOf(DataError);
        expect((error as Error).message).toStartWith("/runs/x/ckpt_00000002.llmts: cannot resume the data loader: ");
        expect((error as Error).message).toMatch(message);
      }
    }
  });

  test("file patterns that are not strings are refused by name", () => {
    expect(() => loader(5 as unknown as string, 4, 4)).toThrow(/train data: 5 is not a list of file patterns/);
    expect(() => loader([path, 7] as unknown as string[], 4, 4)).toThrow(DataError);
  });
});

describe("errors before training, naming the file", () => {
  test("token id ≥ vocabulary", () => {
    const path = ramp("big_ids.bin", 200, 0);
    expect(() => loader(path, 2, 4, false, 1, 150)).toThrow(new RegExp(`${path} holds token id 150 at position 150`));
  });
  test("file shorter than one batch", () => {
    const path = ramp("short.bin", 16);
    expect(() => loader(path, 2, 8)).toThrow(new RegExp(`${path} has 16 tokens, fewer than one batch needs \\(B·T\\+1 = 2·8\\+1 = 17\\)`));
  });
  test("wrong header and sizes that disagree with it", () => {
    const badMagic = join(dir, "magic.bin");
    const h = tokenFileHeader(10);
    h[0] = 20240326;
    writeFileSync(badMagic, Buffer.concat([Buffer.from(h.buffer), Buffer.alloc(20)]));
    expect(() => loader(badMagic, 1, 1)).toThrow(new RegExp(`${badMagic}: header magic is 20240326`));
    const badVersion = join(dir, "version.bin");
    const hv = tokenFileHeader(10);
    hv[1] = 2;
    writeFileSync(badVersion, Buffer.concat([Buffer.from(hv.buffer), Buffer.alloc(20)]));
    expect(() => loader(badVersion, 1, 1)).toThrow(/header version is 2/);
    const sized = join(dir, "sized.bin");
    writeFileSync(sized, Buffer.concat([Buffer.from(tokenFileHeader(10).buffer), Buffer.alloc(18)]));
    expect(() => loader(sized, 1, 1)).toThrow(new RegExp(`${sized}: the header says 10 tokens \\(1044 bytes\\), the file has 1042 bytes`));
    const tiny = join(dir, "tiny.bin");
    writeFileSync(tiny, Buffer.alloc(100));
    expect(() => loader(tiny, 1, 1)).toThrow(/shorter than the 1024-byte/);
  });
  test("a pattern matching nothing", () => {
    expect(() => loader(join(dir, "nothing_*.bin"), 1, 1)).toThrow(DataError);
    expect(() => loader(join(dir, "nothing_*.bin"), 1, 1)).toThrow(/matches no files/);
  });
});

describe("rng", () => {
  test("state round trip and uniformity of below()", () => {
    const a = new Rng(42);
    for (let i = 0; i < 10; i++) a.nextU32();
    const b = Rng.fromState(a.state());
    for (let i = 0; i < 100; i++) expect(b.nextU32()).toBe(a.nextU32());
    const counts = new Array(7).fill(0);
    for (let i = 0; i < 70000; i++) counts[a.below(7)]++;
    // Each bucket expects 10000 with σ ≈ 93: 6σ bounds never fail for a correct generator.
    for (const c of counts) expect(Math.abs(c - 10000)).toBeLessThan(560);
    expect(new Rng(1).state()).not.toEqual(new Rng(2).state());
  });
});
