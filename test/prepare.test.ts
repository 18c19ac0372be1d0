// prepare: text → llm.c token shards → the same tokens back, with the documented split and sharding.
import { afterAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { prepareDataset } from "../src/data/prepare.ts";
import { readTokenFile } from "../src/data/token_file.ts";
import { decode, encode, EOT_TOKEN } from "../src/data/tokenizer.ts";
import { readTokenizerFile } from "../src/data/tokenizer_file.ts";

const dir = mkdtempSync(join(tmpdir(), "llmts-prepare-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const docs: Record<string, string> = {
  "b/second.txt": "Second document. Ünïcödé and 😀.\n\n",
  "a.txt": "Call me Ishmael. Some years ago—never mind how long precisely.\n",
  "b/c/third.md": "Third<|endoftext|>with a literal end-of-text inside. ".repeat(20),
  "b/.hidden": "never read",
};
const input = join(dir, "in");
for (const [name, text] of Object.entries(docs)) {
  mkdirSync(join(input, name, ".."), { recursive: true });
  writeFileSync(join(input, name), text);
}
// Sorted path order, hidden files skipped.
const order = ["a.txt", "b/c/third.md", "b/second.txt"];
const expected = order.flatMap((name) => [EOT_TOKEN, ...encode(docs[name])]);

const concat = (paths: string[]) => paths.flatMap((p) => Array.from(readTokenFile(p)));

describe("prepare", () => {
  test("round trip: train + val = EOT-separated documents in path order; val is the last fraction", () => {
    const out = join(dir, "out1");
    const s = prepareDataset({ inputs: [input], outDir: out, valFraction: 0.25, shardTokens: 1000 });
    expect(s.documents).toBe(3);
    expect(s.tokens).toBe(expected.length);
    const valTokens = Math.round(expected.length * 0.25);
    expect(s.valTokens).toBe(valTokens);
    expect(s.trainFiles).toEqual([join(out, "train_000000.bin")]);
    expect(s.valFiles).toEqual([join(out, "val_000000.bin")]);
    expect(concat(s.trainFiles)).toEqual(expected.slice(0, expected.length - valTokens));
    expect(concat(s.valFiles)).toEqual(expected.slice(expected.length - valTokens));
    expect(decode(concat([...s.trainFiles, ...s.valFiles]))).toBe(order.map((n) => `<|endoftext|>${docs[n]}`).join(""));
    expect(readTokenizerFile(join(out, "gpt2_tokenizer.bin")).vocab.length).toBe(50257);
    expect(JSON.parse(readFileSync(join(out, "prepare.json"), "utf8")).tokens).toBe(expected.length);
  });

  test("sharding by --shard-tokens, and stale shards from a bigger earlier run are removed", () => {
    const out = join(dir, "out2");
    const first = prepareDataset({ inputs: [input], outDir: out, valFraction: 0.1, shardTokens: 7 });
    expect(first.trainFiles.length).toBe(Math.ceil(first.trainTokens / 7));
    expect(first.trainFiles.every((p, i) => p.endsWith(`train_${String(i).padStart(6, "0")}.bin`))).toBe(true);
    for (const p of first.trainFiles.slice(0, -1)) expect(readTokenFile(p).length).toBe(7);
    expect(concat([...first.trainFiles, ...first.valFiles])).toEqual(expected);
    const second = prepareDataset({ inputs: [join(input, "a.txt")], outDir: out, valFraction: 0, shardTokens: 1000 });
    expect(second.valFiles).toEqual([]);
    expect(existsSync(join(out, "train_000001.bin"))).toBe(false);
    expect(existsSync(join(out, "val_000000.bin"))).toBe(false);
    expect(concat(second.trainFiles)).toEqual([EOT_TOKEN, ...encode(docs["a.txt"])]);
  });

  test("clear errors", () => {
    const out = join(dir, "out3");
    const binary = join(dir, "binary.dat");
    writeFileSync(binary, new Uint8Array([0xff, 0xfe, 0x00, 0x80]));
    expect(() => prepareDataset({ inputs: [binary], outDir: out, valFraction: 0.1, shardTokens: 10 })).toThrow(`${binary}: not UTF-8 text`);
    expect(() => prepareDataset({ inputs: [join(dir, "missing")], outDir: out, valFraction: 0.1, shardTokens: 10 })).toThrow(/no such file or folder/);
    mkdirSync(join(dir, "empty"));
    expect(() => prepareDataset({ inputs: [join(dir, "empty")], outDir: out, valFraction: 0.1, shardTokens: 10 })).toThrow(/holds no files/);
    expect(() => prepareDataset({ inputs: [input], outDir: out, valFraction: 1, shardTokens: 10 })).toThrow(/valFraction/);
    expect(() => prepareDataset({ inputs: [input], outDir: out, valFraction: 0.1, shardTokens: 0 })).toThrow(/shardTokens/);
  });

  test("CLI: bad flags exit 2 naming the flag; a good run prints a summary", () => {
    const run = (...args: string[]) => Bun.spawnSync(["bun", "src/cli/prepare.ts", ...args], { stderr: "pipe", stdout: "pipe" });
    const bad: Array<[string[], RegExp]> = [
      [[input, "--out", join(dir, "o"), "--val-fraction", "1.5"], /--val-fraction/],
      [[input, "--out", join(dir, "o"), "--val-fraction", "abc"], /--val-fraction/],
      [[input, "--out", join(dir, "o"), "--shard-tokens", "0"], /--shard-tokens/],
      [[input, "--out", join(dir, "o"), "--shard-tokens", "2.5"], /--shard-tokens/],
      [[input], /--out/],
      [["--out", join(dir, "o")], /no input/],
      [[input, "--out", join(dir, "o"), "--nope"], /nope/],
    ];
    for (const [args, message] of bad) {
      const r = run(...args);
      expect(r.exitCode).toBe(2);
      expect(r.stderr.toString()).toMatch(message);
    }
    const ok = run(input, "--out", join(dir, "o"));
    expect(ok.exitCode).toBe(0);
    expect(ok.stderr.toString()).toMatch(/prepared 3 documents/);
    expect(run("--help").stdout.toString()).toMatch(/--val-fraction X .*default 0\.1/);
  });
});
