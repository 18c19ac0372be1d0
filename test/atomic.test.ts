// Atomic writes (src/io/atomic.ts) and the llm.c checkpoint writer built on them: the new file
// replaces the old one by rename (a reader holding the old file keeps seeing it whole), a failed
// write leaves the old file and no temp file behind. And the readers' shared open.
import { afterAll, describe, expect, test } from "bun:test";
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, readSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { readTokenFile, TokenFileError } from "../src/data/token_file.ts";
import { readTokenizerFile, TokenizerFileError } from "../src/data/tokenizer_file.ts";
import { openForReading, writeFileAtomic } from "../src/io/atomic.ts";
import { CheckpointError } from "../src/io/checks.ts";
import { readLlmcCheckpoint, writeLlmcCheckpoint } from "../src/io/llmc.ts";
import { readLlmtsCheckpoint } from "../src/io/llmts_checkpoint.ts";
import { SafetensorsError, SafetensorsFile } from "../src/io/safetensors.ts";
import type { GPT2Config } from "../src/model/config.ts";
import { GPT2 } from "../src/model/gpt2.ts";

const dir = mkdtempSync(join(tmpdir(), "llmts-atomic-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const bytes = (...values: number[]) => Uint8Array.from(values);

describe("writeFileAtomic", () => {
  test("writes the chunks in order and leaves no temp file", () => {
    const path = join(dir, "a.bin");
    writeFileAtomic(path, [bytes(1, 2), new Int32Array([0x01020304]), bytes()]);
    expect([...readFileSync(path)]).toEqual([1, 2, 4, 3, 2, 1]);
    expect(readdirSync(dir)).toEqual(["a.bin"]);
  });

  test("replaces by rename: a reader holding the old file still sees the old bytes, whole", () => {
    const path = join(dir, "b.bin");
    writeFileSync(path, bytes(9, 9, 9, 9));
    const fd = openSync(path, "r");
    try {
      writeFileAtomic(path, [bytes(1, 2, 3)]);
      const old = new Uint8Array(8);
      expect(readSync(fd, old, 0, 8, 0)).toBe(4); // an in-place rewrite would have truncated it
      expect([...old.subarray(0, 4)]).toEqual([9, 9, 9, 9]);
    } finally {
      closeSync(fd);
    }
    expect([...readFileSync(path)]).toEqual([1, 2, 3]);
  });

  test("a write that fails midway leaves the old file and removes the temp file", () => {
    const path = join(dir, "c.bin");
    writeFileSync(path, bytes(7, 7));
    const failing = { get buffer(): ArrayBuffer { throw new Error("disk full (simulated)"); }, byteOffset: 0, byteLength: 4 } as ArrayBufferView;
    expect(() => writeFileAtomic(path, [bytes(1, 2, 3), failing])).toThrow("disk full (simulated)");
    expect([...readFileSync(path)]).toEqual([7, 7]);
    expect(readdirSync(dir).filter((f) => f.includes("c.bin"))).toEqual(["c.bin"]);
  });

  test("a missing folder throws and creates nothing", () => {
    expect(() => writeFileAtomic(join(dir, "no", "such", "d.bin"), [bytes(1)])).toThrow();
    expect(existsSync(join(dir, "no"))).toBe(false);
  });
});

describe("writeLlmcCheckpoint is atomic", () => {
  const config: GPT2Config = { maxT: 8, V: 20, Vp: 128, L: 1, NH: 2, C: 4 };
  test("overwriting a checkpoint goes through a rename: a reader holding the old file still reads it whole", () => {
    const path = join(dir, "model.bin");
    const first = GPT2.init(config, 1), second = GPT2.init(config, 2);
    writeLlmcCheckpoint(path, first.weights);
    const fd = openSync(path, "r");
    try {
      writeLlmcCheckpoint(path, second.weights);
      const head = new Int32Array(2);
      readSync(fd, new Uint8Array(head.buffer), 0, 8, 0);
      expect([...head]).toEqual([20240326, 3]);
      const oldBody = new Float32Array(first.params.length);
      readSync(fd, new Uint8Array(oldBody.buffer), 0, oldBody.byteLength, 1024);
      expect(Buffer.from(oldBody.buffer).equals(Buffer.from(first.params.buffer))).toBe(true);
    } finally {
      closeSync(fd);
    }
    expect(Buffer.from(readLlmcCheckpoint(path).params.buffer).equals(Buffer.from(second.params.buffer))).toBe(true);
    expect(readdirSync(dir).filter((f) => f.includes("model.bin"))).toEqual(["model.bin"]);
  });
});

// Found by the fuzzer: a directory where a file was expected opened fine and then every reader
// threw a raw "EISDIR: illegal operation on a directory" from its first read.
describe("openForReading", () => {
  test("a directory (or a missing file) is refused by every reader, naming the path", () => {
    const folder = join(dir, "not-a-file.bin");
    mkdirSync(folder);
    const readers: Array<[string, (path: string) => unknown, new (message: string) => Error]> = [
      ["llm.c model", readLlmcCheckpoint, CheckpointError],
      ["llm.ts checkpoint", readLlmtsCheckpoint, CheckpointError],
      ["token file", readTokenFile, TokenFileError],
      ["tokenizer file", readTokenizerFile, TokenizerFileError],
      ["safetensors", (p) => SafetensorsFile.open(p), SafetensorsError],
    ];
    for (const [, read, type] of readers) {
      expect(() => read(folder)).toThrow(type);
      expect(() => read(folder)).toThrow(`${folder}: cannot open (not a regular file)`);
      expect(() => read(join(dir, "absent.bin"))).toThrow(`${join(dir, "absent.bin")}: cannot open (ENOENT)`);
    }
    expect(() => openForReading(folder, (m) => new Error(m))).toThrow(/not a regular file/);
  });
});
