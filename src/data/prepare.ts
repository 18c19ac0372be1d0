// Text files → llm.c token shards.
//
// Every input file is one document; each document is preceded by <|endoftext|> (as llm.c's
// prepare scripts do), so the model sees document boundaries. Folders are walked recursively in
// sorted path order (hidden entries skipped), so the output does not depend on directory order.
//
// Split: the documents are concatenated into one token stream and validation is its LAST
// `valFraction` of tokens (rounded to a whole token). We cut by tokens rather than by whole
// documents because the common case is a single book (Moby-Dick is one file): a whole-document
// split would leave nothing for one side. With many documents the val side is the last documents
// in path order plus the tail of one. The whole stream is held in memory at 2 bytes per token.
//
// Output: <out>/train_000000.bin, …, <out>/val_000000.bin, … each at most `shardTokens` tokens,
// each written atomically; then <out>/gpt2_tokenizer.bin (llm.c's tokenizer file, for samplers
// that need it) and last <out>/prepare.json (a summary whose presence marks a complete output).
// Shards with our names left over from an earlier, larger run in the same folder are removed.
import { InputError } from "../base/errors.ts";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { join, resolve } from "node:path";
import { makeFolder, removeFile, writeFileAtomic } from "../io/atomic.ts";
import { writeTokenFile } from "./token_file.ts";
import { writeTokenizerFile } from "./tokenizer_file.ts";
import { encode, EOT_TOKEN } from "./tokenizer.ts";

export class PrepareError extends InputError {
  override name = "PrepareError";
}

export interface PrepareOptions {
  /** files or folders */
  inputs: string[];
  outDir: string;
  /** fraction of tokens (the last ones) that go to val files, in [0, 1) */
  valFraction: number;
  /** tokens per shard file, ≥ 1 */
  shardTokens: number;
  /** progress messages (one line each, no newline) */
  onProgress?: (message: string) => void;
}

export interface PrepareSummary {
  documents: number;
  bytes: number;
  tokens: number;
  trainTokens: number;
  valTokens: number;
  trainFiles: string[];
  valFiles: string[];
  /** time spent encoding (the tokenizer's one-time table load excluded: loadSeconds) */
  tokenizeSeconds: number;
  loadSeconds: number;
  seconds: number;
}

export const SHARD_PATTERN = /^(train|val)_(\d{6})\.bin$/;
export const SUMMARY_FILE = "prepare.json";
export const TOKENIZER_FILE = "gpt2_tokenizer.bin";

/** Expands files and folders into a sorted list of regular files, with clear errors. */
export function collectInputFiles(inputs: string[]): string[] {
  if (inputs.length === 0) throw new PrepareError("no input files or folders given");
  const files: string[] = [];
  const walk = (dir: string) => {
    for (const name of readdirSync(dir).sort()) {
      if (name.startsWith(".")) continue;
      const path = join(dir, name);
      const stat = statSync(path);
      if (stat.isDirectory()) walk(path);
      else if (stat.isFile()) files.push(path);
    }
  };
  for (const input of inputs) {
    if (!existsSync(input)) throw new PrepareError(`${input}: no such file or folder`);
    const stat = statSync(input);
    if (stat.isDirectory()) {
      const before = files.length;
      walk(input);
      if (files.length === before) throw new PrepareError(`${input}: the folder holds no files`);
    } else if (stat.isFile()) {
      files.push(input);
    } else {
      throw new PrepareError(`${input}: not a regular file or folder`);
    }
  }
  return files;
}

/** Growable uint16 buffer. */
class TokenStream {
  data = new Uint16Array(1 << 16);
  length = 0;
  push(tokens: ArrayLike<number>, source: string): void {
    if (this.length + tokens.length > this.data.length) {
      let capacity = this.data.length;
      while (capacity < this.length + tokens.length) capacity *= 2;
      const grown = new Uint16Array(capacity);
      grown.set(this.data.subarray(0, this.length));
      this.data = grown;
    }
    for (let i = 0; i < tokens.length; i++) {
      const t = tokens[i];
      if (t > 65535) throw new PrepareError(`${source}: token id ${t} does not fit the uint16 token file`);
      this.data[this.length + i] = t;
    }
    this.length += tokens.length;
  }
}

export function prepareDataset(options: PrepareOptions): PrepareSummary {
  const started = performance.now();
  const { outDir, valFraction, shardTokens } = options;
  const progress = options.onProgress ?? (() => {});
  if (!(valFraction >= 0 && valFraction < 1)) throw new PrepareError(`valFraction must be in [0, 1), got ${valFraction}`);
  if (!Number.isInteger(shardTokens) || shardTokens < 1) throw new PrepareError(`shardTokens must be a positive integer, got ${shardTokens}`);
  const files = collectInputFiles(options.inputs);

  // Load the BPE tables first, so tokenizeSeconds measures encoding alone.
  const loadStart = performance.now();
  encode("");
  const loadSeconds = (performance.now() - loadStart) / 1000;
  const stream = new TokenStream();
  const decoder = new TextDecoder("utf-8", { fatal: true });
  let bytes = 0;
  let tokenizeMs = 0;
  let lastReport = 0;
  for (let i = 0; i < files.length; i++) {
    const raw = readFileSync(files[i]);
    let text: string;
    try {
      text = decoder.decode(raw);
    } catch {
      throw new PrepareError(`${files[i]}: not UTF-8 text`);
    }
    bytes += raw.length;
    const t0 = performance.now();
    const tokens = encode(text);
    tokenizeMs += performance.now() - t0;
    stream.push([EOT_TOKEN], files[i]);
    stream.push(tokens, files[i]);
    const now = performance.now();
    if (now - lastReport > 500 || i === files.length - 1) {
      lastReport = now;
      progress(`tokenized ${i + 1}/${files.length} files, ${(bytes / 1e6).toFixed(1)} MB → ${stream.length.toLocaleString("en-US")} tokens`);
    }
  }

  const all = stream.data.subarray(0, stream.length);
  const valTokens = Math.round(all.length * valFraction);
  const train = all.subarray(0, all.length - valTokens);
  const val = all.subarray(all.length - valTokens);
  makeFolder(outDir);
  // The summary marks a complete folder: remove an earlier one first, so that a prepare killed
  // half-way never leaves old shards and new ones looking complete together.
  removeFile(join(outDir, SUMMARY_FILE));
  const trainFiles = writeShards(outDir, "train", train, shardTokens, progress);
  const valFiles = writeShards(outDir, "val", val, shardTokens, progress);
  removeStaleShards(outDir, new Set([...trainFiles, ...valFiles]), progress);
  writeTokenizerFile(join(outDir, TOKENIZER_FILE));

  const summary: PrepareSummary = {
    documents: files.length, bytes, tokens: all.length, trainTokens: train.length, valTokens,
    trainFiles, valFiles, tokenizeSeconds: tokenizeMs / 1000, loadSeconds, seconds: (performance.now() - started) / 1000,
  };
  const record = { ...summary, sources: files.map((f) => resolve(f)), valFraction, shardTokens, split: "val = last valFraction of the token stream" };
  writeFileAtomic(join(outDir, SUMMARY_FILE), [new TextEncoder().encode(JSON.stringify(record, null, 2) + "\n")]);
  return summary;
}

function writeShards(outDir: string, split: "train" | "val", tokens: Uint16Array, shardTokens: number, progress: (m: string) => void): string[] {
  const paths: string[] = [];
  for (let start = 0, index = 0; start < tokens.length; start += shardTokens, index++) {
    const path = join(outDir, `${split}_${String(index).padStart(6, "0")}.bin`);
    const shard = tokens.subarray(start, Math.min(tokens.length, start + shardTokens));
    writeTokenFile(path, shard);
    paths.push(path);
    progress(`wrote ${path} (${shard.length.toLocaleString("en-US")} tokens)`);
  }
  return paths;
}

function removeStaleShards(outDir: string, keep: Set<string>, progress: (m: string) => void): void {
  for (const name of readdirSync(outDir)) {
    const path = join(outDir, name);
    if (SHARD_PATTERN.test(name) && !keep.has(path)) {
      removeFile(path);
      progress(`removed stale ${path}`);
    }
  }
}
