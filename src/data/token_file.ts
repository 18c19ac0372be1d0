// llm.c's token file (train_000000.bin and friends): 256 little-endian int32 header words —
// [0] magic 20240520, [1] version 1, [2] token count — then that many uint16 tokens.
import { closeSync, fstatSync, readFileSync } from "node:fs";
import { openForReading, writeFileAtomic } from "../io/atomic.ts";
import { InputError } from "../base/errors.ts";
import { readExactly } from "../base/read.ts";

export const TOKEN_FILE_MAGIC = 20240520;
export const TOKEN_FILE_VERSION = 1;
export const TOKEN_HEADER_BYTES = 256 * 4;
/** uint16 storage: ids must be below this */
export const MAX_TOKEN_ID = 65535;

export class TokenFileError extends InputError {
  override name = "TokenFileError";
}

export function tokenFileHeader(count: number): Int32Array {
  if (!Number.isInteger(count) || count < 0 || count > 0x7fffffff) throw new TokenFileError(`token count ${count} does not fit the int32 header`);
  const header = new Int32Array(256);
  header[0] = TOKEN_FILE_MAGIC;
  header[1] = TOKEN_FILE_VERSION;
  header[2] = count;
  return header;
}

/** Writes tokens (already checked to fit uint16) as an llm.c token file, atomically. */
export function writeTokenFile(path: string, tokens: Uint16Array): void {
  writeFileAtomic(path, [tokenFileHeader(tokens.length), tokens]);
}

/** Reads and checks the header of an open token file; returns the token count. */
function checkHeader(fd: number, path: string): number {
  const fileBytes = fstatSync(fd).size;
  if (fileBytes < TOKEN_HEADER_BYTES) throw new TokenFileError(`${path}: ${fileBytes} bytes is shorter than the 1024-byte token file header`);
  const header = new Int32Array(256);
  readExactly(fd, new Uint8Array(header.buffer), 0, path, "the header", (message) => new TokenFileError(message));
  if (header[0] !== TOKEN_FILE_MAGIC) throw new TokenFileError(`${path}: header magic is ${header[0]}, an llm.c token file has ${TOKEN_FILE_MAGIC}`);
  if (header[1] !== TOKEN_FILE_VERSION) throw new TokenFileError(`${path}: header version is ${header[1]}, expected ${TOKEN_FILE_VERSION}`);
  const count = header[2];
  if (count < 0) throw new TokenFileError(`${path}: header token count is negative (${count})`);
  const expected = TOKEN_HEADER_BYTES + 2 * count;
  if (fileBytes !== expected) {
    throw new TokenFileError(`${path}: the header says ${count} tokens (${expected} bytes), the file has ${fileBytes} bytes`);
  }
  return count;
}

/**
 * Reads a token file's tokens. Large files are memory-mapped (read-only, shared with the page
 * cache) so a multi-GB dataset costs no copy; small ones are read.
 */
export function readTokenFile(path: string): Uint16Array {
  const fd = openOrThrow(path);
  let count: number;
  try {
    count = checkHeader(fd, path);
  } finally {
    closeSync(fd);
  }
  const bytes = count * 2 >= 64 << 20 ? Bun.mmap(path, { shared: false }) : new Uint8Array(readFileSync(path));
  if (bytes.length !== TOKEN_HEADER_BYTES + 2 * count) throw new TokenFileError(`${path}: changed size while being read`);
  // 1024-byte header: the tokens start 2-byte aligned.
  return new Uint16Array(bytes.buffer, bytes.byteOffset + TOKEN_HEADER_BYTES, count);
}

function openOrThrow(path: string): number {
  return openForReading(path, (message) => new TokenFileError(message));
}
