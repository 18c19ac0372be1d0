// Atomic file writes: write a temp file beside the target, fsync it, rename it over the target,
// fsync the directory. A crash at any point leaves either the old file or the new one, whole.
import { closeSync, fstatSync, fsyncSync, openSync, renameSync, unlinkSync, writeSync } from "node:fs";
import { basename, dirname, join } from "node:path";

/** Writes the chunks in order to `path`, atomically. */
export function writeFileAtomic(path: string, chunks: ArrayBufferView[]): void {
  writeStreamAtomic(path, (write) => {
    for (const chunk of chunks) write(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength));
  });
}

/** Like writeFileAtomic, for content produced piece by piece (`produce` calls `write` in order). */
export function writeStreamAtomic(path: string, produce: (write: (bytes: Uint8Array) => void) => void): void {
  const temp = join(dirname(path), `.${basename(path)}.${process.pid}.${Date.now()}.tmp`);
  const fd = openSync(temp, "w", 0o644);
  try {
    produce((bytes) => {
      let written = 0;
      // Large views are written in pieces: a single write() is capped near 2 GiB on Linux.
      while (written < bytes.length) written += writeSync(fd, bytes, written, Math.min(bytes.length - written, 1 << 30));
    });
    fsyncSync(fd);
  } catch (error) {
    closeSync(fd);
    unlinkSync(temp);
    throw error;
  }
  closeSync(fd);
  renameSync(temp, path);
  syncDirectory(dirname(path));
}

function syncDirectory(dir: string): void {
  try {
    const fd = openSync(dir, "r");
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  } catch {
    // Some filesystems refuse fsync on directories; the rename itself is still atomic.
  }
}

/**
 * Opens the regular file `path` for reading, or throws `makeError("<path>: cannot open (<code>)")`
 * (a directory opens on Linux, but every read of it fails with EISDIR: refused here, by name).
 */
export function openForReading(path: string, makeError: (message: string) => Error): number {
  let fd: number;
  try {
    fd = openSync(path, "r");
  } catch (error) {
    throw makeError(`${path}: cannot open (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`);
  }
  if (!fstatSync(fd).isFile()) {
    closeSync(fd);
    throw makeError(`${path}: cannot open (not a regular file)`);
  }
  return fd;
}
