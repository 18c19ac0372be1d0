// Bad input files given to a CLI: exit 2 (not 1, which means a failure during work), one line on
// stderr naming the file and the problem, no stack trace. Found by the fuzzer (bun run fuzz):
// train and prepare exited 1 for an unreadable --init, --train-data or text file.
import { afterAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { tokenFileHeader } from "../src/data/token_file.ts";

const dir = mkdtempSync(join(tmpdir(), "llmts-bad-input-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const garbage = join(dir, "garbage.bin");
writeFileSync(garbage, new Uint8Array(2000).map((_, i) => (i * 131 + 7) & 0xff));
const goodTokens = join(dir, "good_tokens.bin");
writeFileSync(goodTokens, Buffer.concat([Buffer.from(tokenFileHeader(100).buffer), Buffer.from(new Uint16Array(100).map((_, i) => i % 50).buffer)]));
const badVersion = join(dir, "bad_version.bin");
const header = tokenFileHeader(100);
header[1] = 7;
writeFileSync(badVersion, Buffer.concat([Buffer.from(header.buffer), Buffer.alloc(200)]));
const notUtf8 = join(dir, "latin1.txt");
writeFileSync(notUtf8, Uint8Array.of(0x63, 0x61, 0x66, 0xe9, 0x0a));
const hfNull = join(dir, "hf_null");
mkdirSync(hfNull);
writeFileSync(join(hfNull, "config.json"), "null");

function run(script: string, args: string[]) {
  const p = Bun.spawnSync(["bun", script, ...args], { stdout: "pipe", stderr: "pipe", env: { ...process.env, LLMTS_DEBUG: "" } });
  return { code: p.exitCode, stderr: p.stderr.toString() };
}

const TRAIN_COMMON = ["--steps", "1", "--batch", "1", "--seq", "4", "--sample-tokens", "0", "--val-every", "0", "--threads", "1", "--peak-gflops", "1"];

describe("bad input files exit 2 with one line naming the file", () => {
  const cases: Array<[string, string, string[], string, RegExp]> = [
    ["train --init of a file in no known format", "src/cli/train.ts", ["--init", garbage, "--train-data", goodTokens, "--ckpt-dir", join(dir, "c1"), ...TRAIN_COMMON], garbage, /not an llm\.c model file/],
    ["train --train-data with a bad header", "src/cli/train.ts", ["--model", "tiny", "--train-data", badVersion, "--ckpt-dir", join(dir, "c2"), ...TRAIN_COMMON], badVersion, /header version is 7/],
    ["train --init of a folder whose config.json is null", "src/cli/train.ts", ["--init", hfNull, "--train-data", goodTokens, "--ckpt-dir", join(dir, "c3"), ...TRAIN_COMMON], hfNull, /config\.json/],
    ["convert --from a folder whose config.json is null", "src/cli/convert.ts", ["--from", hfNull, "--to", join(dir, "out.bin")], hfNull, /config\.json/],
    ["prepare of a text file that is not UTF-8", "src/cli/prepare.ts", [notUtf8, "--out", join(dir, "prepared")], notUtf8, /not UTF-8/],
  ];
  for (const [name, script, args, file, problem] of cases) {
    test(name, () => {
      const r = run(script, args);
      const lines = r.stderr.trim().split("\n");
      expect(r.code).toBe(2);
      expect(lines).toHaveLength(1);
      expect(lines[0]).toContain(file);
      expect(lines[0]).toMatch(problem);
      expect(r.stderr).not.toMatch(/^\s+at /m);
    });
  }
});
