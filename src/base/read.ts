// Exact positional reads from an open file, with errors that name the file and what was being
// read. Every binary reader (llm.c files, llm.ts checkpoints, safetensors, token files) uses it.
import { readSync } from "node:fs";

/** Reads exactly `bytes.length` bytes at `position`, or throws makeError("<path>: truncated …"). */
export function readExactly(fd: number, bytes: Uint8Array, position: number, path: string, what: string, makeError: (message: string) => Error): void {
  let done = 0;
  while (done < bytes.length) {
    // One read() is capped near 2 GiB on Linux: large tensors come in pieces.
    const n = readSync(fd, bytes, done, Math.min(bytes.length - done, 1 << 30), position + done);
    if (n === 0) throw makeError(`${path}: truncated while reading ${what} (${done} of ${bytes.length} bytes)`);
    done += n;
  }
}
