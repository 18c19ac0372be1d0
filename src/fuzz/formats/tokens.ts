// llm.c token files: header (magic, version, count) and uint16 ids. Read by readTokenFile and the
// training loader (which must refuse ids ≥ V of the model it feeds), and by train --train-data
// and --val-data.
import { readTokenFile, tokenFileHeader } from "../../data/token_file.ts";
import { TokenLoader } from "../../data/loader.ts";
import type { Format } from "../format.ts";
import { binaryMutators, fileMutators, type Mutator, type Seed } from "../mutate_bytes.ts";
import { tokenFileMeaning } from "../oracles.ts";
import { type CheckResult, judgeError, worse } from "../outcome.ts";
import { concat, SEED_DATA_FILE, seedTokenData } from "../seeds.ts";
import type { FileModel } from "../structure.ts";
import { fileBytes } from "../weights_check.ts";

const INPUT = "tokens.bin";
/** the loader's model: NAMED_CONFIGS.tiny (V = 100), B = 2, T = 8 */
const V = 100;
const B = 2;
const T = 8;

function tokenFile(tokens: Uint16Array): Uint8Array {
  return concat([new Uint8Array(tokenFileHeader(tokens.length).buffer), new Uint8Array(tokens.buffer)]);
}

function model(count: number): FileModel {
  return {
    fields: [
      { name: "magic", offset: 0, type: "i32" }, { name: "version", offset: 4, type: "i32" }, { name: "count", offset: 8, type: "i32" },
      { name: "reserved[3]", offset: 12, type: "i32" },
    ],
    regions: [{ name: "header", start: 0, end: 1024, kind: "header" }, { name: "tokens", start: 1024, end: 1024 + 2 * count, kind: "u16" }],
  };
}

function seed(name: string, tokens: Uint16Array): Seed {
  return { name, files: new Map([[INPUT, tokenFile(tokens)], [SEED_DATA_FILE, seedTokenData()]]), models: new Map([[INPUT, model(tokens.length)]]) };
}

const OUT_OF_RANGE: Mutator = {
  name: "token-out-of-range", weight: 2,
  apply(ctx) {
    const bytes = ctx.files.get(INPUT);
    if (bytes === undefined || bytes === null || bytes.length < 1026) return null;
    const out = bytes.slice();
    const n = Math.floor((out.length - 1024) / 2);
    const index = ctx.rng.below(n);
    const id = ctx.rng.pick([V, V + 1, 127, 128, 50256, 50257, 65535]);
    new DataView(out.buffer).setUint16(1024 + 2 * index, id, true);
    ctx.files.set(INPUT, out);
    return `${INPUT}: token ${index} = ${id} (the model's V is ${V})`;
  },
};

export const TOKENS: Format = {
  name: "tokens",
  description: "llm.c token file (uint16 ids)",
  seeds: async () => [
    seed("2000-tokens", Uint16Array.from({ length: 2000 }, (_, i) => (i * 37 + 11) % V)),
    seed("one-batch", Uint16Array.from({ length: B * T + 1 }, (_, i) => (i * 5) % V)),
    seed("empty", new Uint16Array(0)),
    seed("top-id", Uint16Array.from({ length: 64 }, (_, i) => (i % 2 === 0 ? V - 1 : 0))),
  ],
  mutators: [...binaryMutators(INPUT), OUT_OF_RANGE, ...fileMutators(INPUT, 0.3)],
  async check(dir) {
    const path = `${dir}/${INPUT}`;
    let read: CheckResult;
    try {
      const tokens = readTokenFile(path);
      const meaning = tokenFileMeaning(fileBytes(path));
      if (!meaning.ok) read = { verdict: "misread", detail: `readTokenFile accepted what cannot be read: ${meaning.why}` };
      else if (tokens.length !== meaning.value.length || tokens.some((t, i) => t !== meaning.value[i])) read = { verdict: "misread", detail: "tokens differ from the file's" };
      else read = { verdict: "accepted", detail: "" };
    } catch (error) {
      read = judgeError(error, dir);
    }
    let loaded: CheckResult;
    try {
      const loader = new TokenLoader({ files: path, B, T, vocabSize: V, shuffle: true, seed: 1, label: "train" });
      loaded = { verdict: "accepted", detail: "" };
      for (let i = 0; i < Math.min(8, loader.batchesPerEpoch * 2); i++) {
        loader.next();
        const bad = [...loader.inputs, ...loader.targets].find((t) => t < 0 || t >= V);
        if (bad !== undefined) {
          loaded = { verdict: "misread", detail: `the loader served token ${bad}, outside the model's vocabulary [0, ${V})` };
          break;
        }
      }
    } catch (error) {
      loaded = judgeError(error, dir);
    }
    // Accepted means the loader took it for a V = 100 model; a bare readTokenFile refusal is a clean refusal.
    if (read.verdict === "clean" && loaded.verdict === "accepted") return { verdict: "misread", detail: "the loader accepted a file readTokenFile refuses" };
    return worse(loaded, read.verdict === "accepted" ? { verdict: "clean", detail: "" } : read);
  },
  cli: [
    {
      name: "train-data",
      args: (dir) => trainArgs(dir, ["--train-data", `${dir}/${INPUT}`]),
    },
    {
      name: "val-data",
      args: (dir) => trainArgs(dir, ["--train-data", `${dir}/${SEED_DATA_FILE}`, "--val-data", `${dir}/${INPUT}`]),
    },
  ],
};

function trainArgs(dir: string, data: string[]): string[] {
  return [
    "src/cli/train.ts", "--model", "tiny", ...data, "--steps", "1", "--batch", String(B), "--seq", String(T), "--ckpt-dir", `${dir}/ckpt`,
    "--sample-tokens", "0", "--val-every", "0", "--val-batches", "1", "--threads", "1", "--peak-gflops", "1",
  ];
}
