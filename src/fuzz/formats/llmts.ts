// llm.ts checkpoints: preamble, JSON header (config, tensors with absolute offsets, step, state),
// then the fp32 tensors. JSON edits keep the tensors where they are when the new text fits before
// them, or move them and fix every offset (as the writer would), or shift them without fixing.
import { readLlmtsCheckpoint } from "../../io/llmts_checkpoint.ts";
import { writeLlmtsCheckpoint } from "../../io/llmts_checkpoint.ts";
import type { GPT2Config } from "../../model/config.ts";
import { GPT2Weights } from "../../model/weights.ts";
import type { Format } from "../format.ts";
import { binaryMutators, fileMutators, type Seed } from "../mutate_bytes.ts";
import { jsonMutators } from "../mutate_json.ts";
import { firstDifference, llmtsMeaning } from "../oracles.ts";
import { type CheckResult, judgeError, worse } from "../outcome.ts";
import type { FuzzRandom } from "../random.ts";
import { concat, SEED_CONFIGS, SEED_DATA_FILE, seedParams, seedTokenData } from "../seeds.ts";
import type { FileModel, JsonPart, Region } from "../structure.ts";
import { checkWeights, fileBytes, weightsCliTargets } from "../weights_check.ts";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const INPUT = "model.llmts";
const align64 = (n: number) => Math.ceil(n / 64) * 64;
const decoder = new TextDecoder();

function jsonLength(bytes: Uint8Array): number {
  return bytes.length < 16 ? -1 : new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(12, true);
}

function withLength(preamble: Uint8Array, length: number): Uint8Array {
  const out = preamble.slice(0, 16);
  new DataView(out.buffer).setUint32(12, length >>> 0, true);
  return out;
}

type Tensors = Record<string, { offset?: unknown }>;

function tensorOffsets(json: Uint8Array): number[] | null {
  try {
    const tensors = JSON.parse(decoder.decode(json)).tensors as Tensors;
    const offsets = Object.values(tensors).map((t) => t.offset).filter((o): o is number => typeof o === "number");
    return offsets.length > 0 ? offsets : null;
  } catch {
    return null;
  }
}

/** The tensors moved by `shift` bytes and every offset in the JSON moved with them (a fixed point, as the writer does). */
function moveTensors(json: Uint8Array, shift: number, dataStart: number): Uint8Array | null {
  let header: { tensors?: Tensors };
  try {
    header = JSON.parse(decoder.decode(json));
    if (header === null || typeof header.tensors !== "object" || header.tensors === null) return null;
  } catch {
    return null;
  }
  const original = Object.fromEntries(Object.entries(header.tensors).map(([k, t]) => [k, t?.offset]));
  for (let total = shift, i = 0; i < 4; i++) {
    for (const [k, t] of Object.entries(header.tensors)) if (typeof original[k] === "number" && t) t.offset = (original[k] as number) + total;
    let text: Uint8Array;
    try {
      text = new TextEncoder().encode(JSON.stringify(header));
    } catch {
      return null; // nested too deep to serialise again
    }
    const needed = align64(16 + text.length) - dataStart;
    if (needed === total) return text;
    total = needed;
  }
  return null;
}

export const LLMTS_JSON: JsonPart = {
  locate(bytes) {
    const length = jsonLength(bytes);
    return length < 0 || 16 + length > bytes.length ? null : { start: 16, end: 16 + length };
  },
  replace(bytes, json, rng: FuzzRandom) {
    const oldEnd = 16 + jsonLength(bytes);
    const offsets = tensorOffsets(bytes.subarray(16, oldEnd));
    const dataStart = offsets === null ? align64(oldEnd) : Math.min(...offsets.filter((o) => o >= oldEnd), bytes.length);
    if (rng.chance(0.8) && dataStart <= bytes.length) {
      if (16 + json.length <= dataStart) {
        const padding = new Uint8Array(dataStart - 16 - json.length);
        return { bytes: concat([withLength(bytes, json.length), json, padding, bytes.subarray(dataStart)]), note: "" };
      }
      const moved = moveTensors(json, align64(16 + json.length) - dataStart, dataStart);
      if (moved !== null) {
        const start = align64(16 + moved.length);
        return { bytes: concat([withLength(bytes, moved.length), moved, new Uint8Array(start - 16 - moved.length), bytes.subarray(dataStart)]), note: "tensors moved, offsets fixed" };
      }
    }
    const keepLength = rng.chance(0.15);
    return { bytes: concat([withLength(bytes, keepLength ? oldEnd - 16 : json.length), json, bytes.subarray(oldEnd)]), note: keepLength ? "length field left stale, data shifted" : "data shifted, offsets not fixed" };
  },
  hotPaths: ["config.*", "tensors.*", "tensors.*.offset", "tensors.*.count", "step", "note"],
};

export function llmtsModel(bytes: Uint8Array): FileModel {
  const length = jsonLength(bytes);
  const header = JSON.parse(decoder.decode(bytes.subarray(16, 16 + length)));
  const regions: Region[] = [
    { name: "magic", start: 0, end: 8, kind: "header" },
    { name: "preamble", start: 8, end: 16, kind: "header" },
    { name: "json", start: 16, end: 16 + length, kind: "json" },
  ];
  for (const [name, t] of Object.entries(header.tensors as Record<string, { offset: number; count: number }>)) {
    regions.push({ name, start: t.offset, end: t.offset + 4 * t.count, kind: "f32" });
  }
  return { fields: [{ name: "version", offset: 8, type: "u32" }, { name: "json length", offset: 12, type: "u32" }], regions, json: LLMTS_JSON };
}

/** Bytes of a checkpoint written by the project's writer (through a temp file). */
export function llmtsBytes(config: GPT2Config, params: Float32Array, moments: boolean, step: number, state: Record<string, unknown>): Uint8Array {
  const dir = mkdtempSync(join(tmpdir(), "llmts-fuzz-seed-"));
  try {
    const path = join(dir, "seed.llmts");
    const m = moments ? params.map((x) => x * 0.1) : undefined;
    const v = moments ? params.map((x) => x * x) : undefined;
    writeLlmtsCheckpoint(path, { weights: new GPT2Weights(config, params), m, v, step, state });
    return new Uint8Array(readFileSync(path));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function seed(name: string, bytes: Uint8Array): Seed {
  return { name, files: new Map([[INPUT, bytes], [SEED_DATA_FILE, seedTokenData()]]), models: new Map([[INPUT, llmtsModel(bytes)]]) };
}

/** readLlmtsCheckpoint with the moments too (what --resume reads), judged against the independent decode. */
function checkWithMoments(dir: string, path: string): CheckResult {
  let checkpoint;
  try {
    checkpoint = readLlmtsCheckpoint(path, { optimizer: true });
  } catch (error) {
    return judgeError(error, dir);
  }
  const meaning = llmtsMeaning(fileBytes(path));
  if (!meaning.ok) return { verdict: "misread", detail: `readLlmtsCheckpoint accepted what cannot be read: ${meaning.why}` };
  const want = meaning.value;
  if (checkpoint.step !== want.step) return { verdict: "misread", detail: `step read as ${checkpoint.step}, the file says ${want.step}` };
  for (const [name, got, expected] of [["adam_m", checkpoint.m, want.m], ["adam_v", checkpoint.v, want.v]] as const) {
    if (got === undefined || expected === null) return { verdict: "misread", detail: `${name} returned without being in the file, or missing` };
    const diff = firstDifference(got, expected);
    if (diff >= 0) return { verdict: "misread", detail: `${name}[${diff}] read as ${got[diff]}, the file holds ${expected[diff]}` };
  }
  return { verdict: "accepted", detail: "" };
}

export const LLMTS: Format = {
  name: "llmts",
  description: "llm.ts checkpoint (.llmts)",
  seeds: async () =>
    SEED_CONFIGS.flatMap(({ name, config, weightsSeed }) => {
      const params = seedParams(config, weightsSeed);
      return [
        seed(`${name}-with-moments`, llmtsBytes(config, params, true, 5, { lr: 1e-4, note: "fuzz seed" })),
        seed(`${name}-params-only`, llmtsBytes(config, params, false, 0, {})),
      ];
    }),
  mutators: [...binaryMutators(INPUT), ...jsonMutators(INPUT, (ctx) => ctx.seed.models.get(INPUT)?.json, 1.5), ...fileMutators(INPUT, 0.3)],
  async check(dir) {
    const path = `${dir}/${INPUT}`;
    const weights = checkWeights(dir, path, () => {
      const meaning = llmtsMeaning(fileBytes(path));
      return meaning.ok ? { ok: true, value: meaning.value } : meaning;
    });
    const moments = checkWithMoments(dir, path);
    // The main verdict is loadWeights'; the optimizer read only adds failures.
    return moments.verdict === "clean" || moments.verdict === "accepted" ? weights : worse(weights, moments);
  },
  cli: weightsCliTargets(INPUT),
};
