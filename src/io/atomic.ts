// Atomic file writes: write a temp file beside the target, fsync it, rename it over the target,
// fsync the directory. A crash at any point leaves either the old file or the new one, whole; a
// failed write (full disk, read-only folder) throws a WriteError naming the file and the cause and
// removes its temp file. A process killed mid-write leaves a temp file (".<name>.<pid>.<ms>.tmp")
// that no reader takes for the real one; removeStaleTemps() clears those of dead processes.
//
// Fault injection for the tests (tests/reliability): LLMTS_FAULT_KILL_WRITE="<regex>@<n>@<point>"
// makes the process SIGKILL itself during the n-th (1-based) atomic write of a file whose name
// matches <regex>, at <point>: a byte count of the data written so far, "fsync" (all data written,
// before the fsync), "rename" (before the rename) or "renamed" (after it, before the directory sync).
import { appendFileSync, closeSync, existsSync, fstatSync, fsyncSync, mkdirSync, openSync, readdirSync, renameSync, unlinkSync, writeSync } from "node:fs";
import { basename, dirname, join } from "node:path";

/** A file could not be written (a failure during the work, not bad input: exit 1). */
export class WriteError extends Error {
  override name = "WriteError";
}

function describeFsError(error: unknown): string {
  const e = error as NodeJS.ErrnoException;
  const reason = (e.message ?? String(error)).replace(/^[A-Z]+: /, "").replace(/, (open|write|fsync|rename|close) .*$/, "").replace(/, (open|write|fsync|rename|close)$/, "");
  return e.code !== undefined ? `${e.code}: ${reason}` : reason;
}

/** mkdir -p, or a WriteError naming the folder and the cause. */
export function makeFolder(dir: string): void {
  try {
    mkdirSync(dir, { recursive: true });
  } catch (error) {
    throw new WriteError(`${dir}: cannot create the folder (${describeFsError(error)})`);
  }
}

/** Appends to a log-like file (not atomic: a crash can cut the last line short, readers skip it). */
export function appendText(path: string, text: string): void {
  try {
    appendFileSync(path, text);
  } catch (error) {
    throw new WriteError(`${path}: cannot append (${describeFsError(error)})`);
  }
}

/** Removes `path` if it exists, or throws a WriteError naming it. */
export function removeFile(path: string): void {
  try {
    unlinkSync(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return;
    throw new WriteError(`${path}: cannot remove (${describeFsError(error)})`);
  }
}

/** Writes the chunks in order to `path`, atomically. */
export function writeFileAtomic(path: string, chunks: ArrayBufferView[]): void {
  writeStreamAtomic(path, (write) => {
    for (const chunk of chunks) write(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength));
  });
}

const TEMP_NAME = /^\.(.+)\.(\d+)\.(\d+)\.tmp$/;

function tempPath(path: string): string {
  return join(dirname(path), `.${basename(path)}.${process.pid}.${Date.now()}.tmp`);
}

/** Like writeFileAtomic, for content produced piece by piece (`produce` calls `write` in order). */
export function writeStreamAtomic(path: string, produce: (write: (bytes: Uint8Array) => void) => void): void {
  const temp = tempPath(path);
  const fault = faultFor(path);
  let fd: number;
  try {
    fd = openSync(temp, "w", 0o644);
  } catch (error) {
    throw new WriteError(`${path}: cannot write (${describeFsError(error)})`);
  }
  let written = 0;
  try {
    produce((bytes) => {
      let done = 0;
      // Large views are written in pieces: a single write() is capped near 2 GiB on Linux.
      while (done < bytes.length) {
        let piece = Math.min(bytes.length - done, 1 << 30);
        if (fault !== null && typeof fault.at === "number" && fault.at >= written && fault.at < written + piece) {
          piece = fault.at - written;
          if (piece > 0) done += writeSync(fd, bytes, done, piece);
          killSelf();
        }
        const n = writeSync(fd, bytes, done, piece);
        done += n;
        written += n;
      }
    });
    if (fault?.at === "fsync") killSelf();
    fsyncSync(fd);
  } catch (error) {
    closeQuietly(fd);
    removeQuietly(temp);
    if ((error as NodeJS.ErrnoException).code === undefined) throw error; // the producer's own error
    throw new WriteError(`${path}: cannot write (${describeFsError(error)}); the previous file, if any, is unchanged`);
  }
  try {
    closeSync(fd);
  } catch (error) {
    removeQuietly(temp);
    throw new WriteError(`${path}: cannot write (${describeFsError(error)}); the previous file, if any, is unchanged`);
  }
  if (fault?.at === "rename") killSelf();
  try {
    renameSync(temp, path);
  } catch (error) {
    removeQuietly(temp);
    throw new WriteError(`${path}: cannot write (${describeFsError(error)}); the previous file, if any, is unchanged`);
  }
  if (fault?.at === "renamed") killSelf();
  syncDirectory(dirname(path));
}

function closeQuietly(fd: number): void {
  try {
    closeSync(fd);
  } catch {
    // the write already failed; its error is the one to report
  }
}

function removeQuietly(path: string): void {
  try {
    unlinkSync(path);
  } catch {
    // already gone, or the folder itself went away
  }
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

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** Removes the temp files of atomic writes into `dir` left by processes that died mid-write. */
export function removeStaleTemps(dir: string): string[] {
  if (!existsSync(dir)) return [];
  const removed: string[] = [];
  for (const name of readdirSync(dir)) {
    const match = TEMP_NAME.exec(name);
    if (match === null || Number(match[2]) === process.pid || processAlive(Number(match[2]))) continue;
    removeQuietly(join(dir, name));
    removed.push(join(dir, name));
  }
  return removed;
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

// ---- fault injection (tests only; see the header) ----

interface Fault {
  at: number | "fsync" | "rename" | "renamed";
}

const faultWrites = new Map<string, number>();

function faultFor(path: string): Fault | null {
  const spec = process.env.LLMTS_FAULT_KILL_WRITE;
  if (spec === undefined || spec === "") return null;
  const [pattern, nth, point] = spec.split("@");
  if (!new RegExp(pattern).test(basename(path))) return null;
  const count = (faultWrites.get(pattern) ?? 0) + 1;
  faultWrites.set(pattern, count);
  if (count !== Number(nth)) return null;
  if (point === "fsync" || point === "rename" || point === "renamed") return { at: point };
  return { at: Number(point) };
}

function killSelf(): never {
  process.kill(process.pid, "SIGKILL");
  throw new Error("unreachable: SIGKILL did not end the process");
}
