// A fuzz case: a set of files (relative paths → bytes, or null for a directory) derived from a
// valid seed by a list of mutations, and what is known about how it was made.
import { mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { dirname, join, relative } from "node:path";

/** Relative path → file bytes, or null for an (empty) directory at that path. */
export type CaseFiles = Map<string, Uint8Array | null>;

export interface FuzzCase {
  format: string;
  /** the case seed: the same format and seed regenerate the same case */
  seed: number;
  /** the valid seed file set it was derived from */
  base: string;
  files: CaseFiles;
  /** what was done to the base, in order */
  mutations: string[];
}

export function cloneFiles(files: CaseFiles): CaseFiles {
  const out: CaseFiles = new Map();
  for (const [name, bytes] of files) out.set(name, bytes === null ? null : bytes.slice());
  return out;
}

/** Writes the case's files under `dir` (which must not hold them yet). */
export function writeCaseFiles(dir: string, files: CaseFiles): void {
  mkdirSync(dir, { recursive: true });
  // Directories first, so a file inside a directory entry can still be written.
  for (const [name, bytes] of files) if (bytes === null) mkdirSync(join(dir, name), { recursive: true });
  for (const [name, bytes] of files) {
    if (bytes === null) continue;
    mkdirSync(dirname(join(dir, name)), { recursive: true });
    writeFileSync(join(dir, name), bytes);
  }
}

/** Reads every file and directory under `dir` back into a CaseFiles map (`skip` names are left out). */
export function readCaseFiles(dir: string, skip: (name: string) => boolean = () => false): CaseFiles {
  const out: CaseFiles = new Map();
  const walk = (folder: string) => {
    for (const entry of readdirSync(folder).sort()) {
      const path = join(folder, entry);
      const name = relative(dir, path);
      if (skip(name)) continue;
      if (statSync(path).isDirectory()) {
        const before = out.size;
        walk(path);
        if (out.size === before) out.set(name, null);
      } else {
        out.set(name, new Uint8Array(readFileSync(path)));
      }
    }
  };
  walk(dir);
  return out;
}
