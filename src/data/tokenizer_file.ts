// llm.c's tokenizer file (gpt2_tokenizer.bin), which its C sampler uses to turn ids into bytes:
//   256 little-endian uint32 header words: [0] magic 20240328, [1] version (1, or 2 which adds
//   [3] = the end-of-text id), [2] vocabulary size;
//   then, per token id in order, a uint8 byte length (1–255) and that many raw bytes.
// We generate it from tiktoken's vocabulary (the bytes of each single-token decode).
import { InputError } from "../base/errors.ts";
import { closeSync, fstatSync, readSync } from "node:fs";
import { openForReading, writeFileAtomic } from "../io/atomic.ts";
import { GPT2_VOCAB } from "../model/config.ts";
import { decodeBytes, EOT_TOKEN } from "./tokenizer.ts";

export const TOKENIZER_MAGIC = 20240328;
const HEADER_BYTES = 256 * 4;

export class TokenizerFileError extends InputError {
  override name = "TokenizerFileError";
}

export interface TokenizerFile {
  version: 1 | 2;
  /** raw bytes of each token id */
  vocab: Uint8Array[];
  /** the end-of-text id (version 2), or null (version 1) */
  eotToken: number | null;
}

let gpt2Vocab: Uint8Array[] | null = null;

/** The raw bytes of every GPT-2 token id, from tiktoken (cached: ~0.2 s the first time). */
export function gpt2Vocabulary(): Uint8Array[] {
  if (gpt2Vocab === null) {
    const vocab: Uint8Array[] = new Array(GPT2_VOCAB);
    for (let id = 0; id < GPT2_VOCAB; id++) vocab[id] = decodeBytes([id]);
    gpt2Vocab = vocab;
  }
  return gpt2Vocab;
}

/** Serialises a tokenizer file (version 2) in memory. */
export function encodeTokenizerFile(vocab: Uint8Array[], eotToken: number): Uint8Array {
  if (!Number.isInteger(eotToken) || eotToken < 0 || eotToken >= vocab.length) throw new TokenizerFileError(`end-of-text id ${eotToken} is outside the vocabulary [0, ${vocab.length})`);
  let bytes = HEADER_BYTES;
  for (let id = 0; id < vocab.length; id++) {
    const n = vocab[id].length;
    // A uint8 length cannot hold 0 usefully (llm.c asserts > 0) nor more than 255.
    if (n < 1 || n > 255) throw new TokenizerFileError(`token ${id} has ${n} bytes; the file format stores 1 to 255`);
    bytes += 1 + n;
  }
  const out = new Uint8Array(bytes);
  const header = new DataView(out.buffer, 0, HEADER_BYTES);
  header.setUint32(0, TOKENIZER_MAGIC, true);
  header.setUint32(4, 2, true);
  header.setUint32(8, vocab.length, true);
  header.setUint32(12, eotToken, true);
  let at = HEADER_BYTES;
  for (const token of vocab) {
    out[at++] = token.length;
    out.set(token, at);
    at += token.length;
  }
  return out;
}

/** Writes GPT-2's tokenizer file (or another vocabulary) atomically. */
export function writeTokenizerFile(path: string, vocab: Uint8Array[] = gpt2Vocabulary(), eotToken = EOT_TOKEN): void {
  writeFileAtomic(path, [encodeTokenizerFile(vocab, eotToken)]);
}

/** Parses a tokenizer file; `source` names it in errors. */
export function decodeTokenizerFile(bytes: Uint8Array, source: string): TokenizerFile {
  if (bytes.length < HEADER_BYTES) throw new TokenizerFileError(`${source}: ${bytes.length} bytes is shorter than the 1024-byte tokenizer header`);
  const header = new DataView(bytes.buffer, bytes.byteOffset, HEADER_BYTES);
  const magic = header.getUint32(0, true);
  if (magic !== TOKENIZER_MAGIC) throw new TokenizerFileError(`${source}: header magic is ${magic}, an llm.c tokenizer file has ${TOKENIZER_MAGIC}`);
  const version = header.getUint32(4, true);
  if (version !== 1 && version !== 2) throw new TokenizerFileError(`${source}: header version is ${version}, expected 1 or 2`);
  const size = header.getUint32(8, true);
  if (size < 1 || size > 1 << 20) throw new TokenizerFileError(`${source}: vocabulary size ${size} is not in [1, ${1 << 20}]`);
  let eotToken: number | null = null;
  if (version === 2) {
    eotToken = header.getUint32(12, true);
    if (eotToken >= size) throw new TokenizerFileError(`${source}: end-of-text id ${eotToken} is outside the vocabulary [0, ${size})`);
  }
  const vocab: Uint8Array[] = new Array(size);
  let at = HEADER_BYTES;
  for (let id = 0; id < size; id++) {
    if (at >= bytes.length) throw new TokenizerFileError(`${source}: truncated: the file ends before token ${id} of ${size}`);
    const n = bytes[at++];
    if (n === 0) throw new TokenizerFileError(`${source}: token ${id} has length 0`);
    if (at + n > bytes.length) throw new TokenizerFileError(`${source}: truncated inside token ${id} (needs ${n} bytes, ${bytes.length - at} left)`);
    vocab[id] = bytes.slice(at, at + n);
    at += n;
  }
  if (at !== bytes.length) throw new TokenizerFileError(`${source}: ${bytes.length - at} extra bytes after the ${size} tokens`);
  return { version: version as 1 | 2, vocab, eotToken };
}

export function readTokenizerFile(path: string): TokenizerFile {
  const fd = openForReading(path, (message) => new TokenizerFileError(message));
  try {
    const bytes = new Uint8Array(fstatSync(fd).size);
    let done = 0;
    while (done < bytes.length) {
      const n = readSync(fd, bytes, done, bytes.length - done, done);
      if (n === 0) break;
      done += n;
    }
    return decodeTokenizerFile(bytes.subarray(0, done), path);
  } finally {
    closeSync(fd);
  }
}

/** Decodes ids to bytes with a tokenizer file's vocabulary (as llm.c's sampler does). */
export function decodeWithVocabulary(file: TokenizerFile, tokens: ArrayLike<number>): Uint8Array {
  let total = 0;
  for (let i = 0; i < tokens.length; i++) {
    const t = tokens[i];
    if (!Number.isInteger(t) || t < 0 || t >= file.vocab.length) throw new TokenizerFileError(`token id ${t} at position ${i} is outside the vocabulary [0, ${file.vocab.length})`);
    total += file.vocab[t].length;
  }
  const out = new Uint8Array(total);
  let at = 0;
  for (let i = 0; i < tokens.length; i++) {
    out.set(file.vocab[tokens[i]], at);
    at += file.vocab[tokens[i]].length;
  }
  return out;
}
