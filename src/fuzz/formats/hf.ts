// Hugging Face GPT-2 folders: config.json + model.safetensors, written by the tests' independent
// writer in four flavours (F32; F16; BF16; "transformer."-prefixed names with the attention mask
// buffers and a tied lm_head). Besides the generic mutations, the safetensors header gets the
// classic attacks: overlapping and out-of-range offsets, duplicate and missing names, wrong dtypes
// and shapes, a malformed __metadata__.
import { SafetensorsFile } from "../../io/safetensors.ts";
import type { GPT2Config } from "../../model/config.ts";
import { type Dtype, hfConfigJson, hfTensors, quantize, safetensorsBytes } from "../../../test/helpers/hf_folder.ts";
import type { Format } from "../format.ts";
import { binaryMutators, fileMutators, type MutationContext, type Mutator, type Seed } from "../mutate_bytes.ts";
import { jsonMutators } from "../mutate_json.ts";
import { type Expected, firstDifference, hfConfigMeaning, safetensorsMeaning } from "../oracles.ts";
import { type CheckResult, judgeError, worse } from "../outcome.ts";
import { concat, SEED_CONFIGS, SEED_DATA_FILE, seedParams, seedTokenData } from "../seeds.ts";
import { type FileModel, type JsonPart, type Region, WHOLE_FILE_JSON } from "../structure.ts";
import { checkWeights, fileBytes, weightsCliTargets } from "../weights_check.ts";

const FOLDER = "hf";
const WEIGHTS = `${FOLDER}/model.safetensors`;
const CONFIG = `${FOLDER}/config.json`;
const decoder = new TextDecoder();
const encoder = new TextEncoder();

function headerLength(bytes: Uint8Array): number {
  if (bytes.length < 8) return -1;
  const n = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getBigUint64(0, true);
  return n > BigInt(bytes.length - 8) ? -1 : Number(n);
}

function lengthPrefix(n: number): Uint8Array {
  const out = new Uint8Array(8);
  new DataView(out.buffer).setBigUint64(0, BigInt(n), true);
  return out;
}

const SAFETENSORS_JSON: JsonPart = {
  locate(bytes) {
    const n = headerLength(bytes);
    return n < 0 ? null : { start: 8, end: 8 + n };
  },
  replace(bytes, json, rng) {
    const n = headerLength(bytes);
    const stale = rng.chance(0.15);
    return { bytes: concat([lengthPrefix(stale ? n : json.length), json, bytes.subarray(8 + n)]), note: stale ? "length prefix left stale" : "" };
  },
  hotPaths: ["*.data_offsets", "*.data_offsets.*", "*.dtype", "*.shape", "*.shape.*", "__metadata__", "__metadata__.*"],
};

const CONFIG_JSON: JsonPart = {
  ...WHOLE_FILE_JSON,
  hotPaths: ["n_embd", "n_layer", "n_head", "n_positions", "n_ctx", "vocab_size", "activation_function", "layer_norm_epsilon", "scale_attn_weights", "reorder_and_upcast_attn"],
};

function safetensorsModel(bytes: Uint8Array): FileModel {
  const n = headerLength(bytes);
  const header = JSON.parse(decoder.decode(bytes.subarray(8, 8 + n))) as Record<string, { dtype: string; data_offsets: [number, number] }>;
  const regions: Region[] = [{ name: "length prefix", start: 0, end: 8, kind: "header" }, { name: "header", start: 8, end: 8 + n, kind: "json" }];
  for (const [name, e] of Object.entries(header)) {
    if (name === "__metadata__") continue;
    const kind = e.dtype === "F32" ? "f32" : e.dtype === "F16" ? "f16" : "bf16";
    regions.push({ name, kind, start: 8 + n + e.data_offsets[0], end: 8 + n + e.data_offsets[1] });
  }
  return { fields: [{ name: "header length", offset: 0, type: "u64" }], regions, json: SAFETENSORS_JSON };
}

function seed(name: string, config: GPT2Config, weightsSeed: number, dtype: Dtype, options: { prefix?: boolean; maskBuffers?: boolean; lmHead?: boolean } = {}): Seed {
  const tensors = hfTensors(config, seedParams(config, weightsSeed), options).map((t) => ({ ...t, values: t.dtype === undefined ? quantize(t.values, dtype) : t.values }));
  const weights = safetensorsBytes(tensors, dtype);
  const files = new Map<string, Uint8Array | null>([
    [WEIGHTS, weights],
    [CONFIG, encoder.encode(JSON.stringify(hfConfigJson(config)))],
    [SEED_DATA_FILE, seedTokenData()],
  ]);
  return { name, files, models: new Map([[WEIGHTS, safetensorsModel(weights)], [CONFIG, { fields: [], regions: [], json: CONFIG_JSON }]]) };
}

// ---- safetensors header attacks ----

type Entry = { dtype?: unknown; shape?: unknown; data_offsets?: unknown };

/** Applies `edit` to the parsed safetensors header; the edit returns a description, or null. */
function headerMutator(name: string, weight: number, edit: (header: Record<string, Entry>, ctx: MutationContext, dataBytes: number) => string | { text: string; description: string } | null): Mutator {
  return {
    name, weight,
    apply(ctx) {
      const bytes = ctx.files.get(WEIGHTS);
      if (bytes === undefined || bytes === null) return null;
      const n = headerLength(bytes);
      if (n < 0) return null;
      let header: Record<string, Entry>;
      try {
        header = JSON.parse(decoder.decode(bytes.subarray(8, 8 + n)));
        if (header === null || typeof header !== "object" || Array.isArray(header)) return null;
      } catch {
        return null;
      }
      let result: ReturnType<typeof edit>;
      let text: string;
      try {
        result = edit(header, ctx, bytes.length - 8 - n);
        if (result === null) return null;
        text = typeof result === "string" ? JSON.stringify(header) : result.text;
      } catch (error) {
        // An earlier mutation of this case nested a value too deep to serialise again: this
        // header edit does not apply (the deep value itself is what the case tests).
        if (error instanceof RangeError) return null;
        throw error;
      }
      const json = encoder.encode(text);
      ctx.files.set(WEIGHTS, concat([lengthPrefix(json.length), json, bytes.subarray(8 + n)]));
      return `${WEIGHTS}: ${typeof result === "string" ? result : result.description}`;
    },
  };
}

const tensorNames = (header: Record<string, Entry>) => Object.keys(header).filter((k) => k !== "__metadata__" && header[k] !== null && typeof header[k] === "object");
const offsetsOf = (e: Entry): [number, number] | null => (Array.isArray(e.data_offsets) && e.data_offsets.length === 2 && e.data_offsets.every((x) => typeof x === "number") ? (e.data_offsets as [number, number]) : null);

const SAFETENSORS_ATTACKS: Mutator[] = [
  headerMutator("overlapping-offsets", 2, (header, { rng }) => {
    const names = tensorNames(header);
    if (names.length < 2) return null;
    const a = rng.pick(names), b = rng.pick(names);
    const oa = offsetsOf(header[a]), ob = offsetsOf(header[b]);
    if (a === b || oa === null || ob === null) return null;
    const size = oa[1] - oa[0];
    const begin = rng.pick([ob[0], ob[0] + Math.floor((ob[1] - ob[0]) / 2), Math.max(0, ob[1] - 2)]);
    header[a].data_offsets = [begin, begin + size];
    return `"${a}" moved to [${begin}, ${begin + size}], over "${b}" [${ob.join(", ")}]`;
  }),
  headerMutator("out-of-range-offsets", 2, (header, { rng }, dataBytes) => {
    const names = tensorNames(header);
    if (names.length === 0) return null;
    const a = rng.pick(names);
    const o = offsetsOf(header[a]) ?? [0, 4];
    const size = o[1] - o[0];
    const choice = rng.pick<unknown[] | null>([
      [o[0], dataBytes + 4], [o[1], o[0]], [0, 2 ** 53], [-4, size - 4], [o[0] + 1, o[1] + 1], [dataBytes, dataBytes + size],
      [dataBytes - size + 2, dataBytes + 2], [2 ** 53 - size, 2 ** 53], [2 ** 64, 2 ** 64 + size], ["0", String(size)], [o[0]], [o[0], o[1], o[1]], [0.5, size + 0.5], null,
    ]);
    header[a].data_offsets = choice;
    return `"${a}" data_offsets ${JSON.stringify(o)} → ${JSON.stringify(choice)} (data section ${dataBytes} bytes)`;
  }),
  headerMutator("duplicate-name", 1.5, (header, { rng }) => {
    const names = tensorNames(header);
    if (names.length < 2) return null;
    const a = rng.pick(names), b = rng.pick(names);
    const marker = "\u0001duplicate\u0001";
    const copy = { ...header[b] };
    const first = rng.chance(0.5);
    const rebuilt = first ? { [marker]: copy, ...header } : { ...header, [marker]: copy };
    return { text: JSON.stringify(rebuilt).replace(JSON.stringify(marker), JSON.stringify(a)), description: `"${a}" listed twice (the ${first ? "first" : "second"} copy is "${b}"'s entry)` };
  }),
  headerMutator("missing-name", 1.5, (header, { rng }) => {
    const names = tensorNames(header);
    if (names.length === 0) return null;
    const a = rng.pick(names);
    delete header[a];
    return `"${a}" removed from the header`;
  }),
  headerMutator("renamed", 1, (header, { rng }) => {
    const names = tensorNames(header);
    if (names.length === 0) return null;
    const a = rng.pick(names);
    const to = rng.pick([
      a.startsWith("transformer.") ? a.slice("transformer.".length) : `transformer.${a}`, "h.99.ln_1.weight", "lm_head.weight", `${a} `, a.toUpperCase(), "__metadata__", "",
      a.replace(/h\.(\d+)\./, (_, l) => `h.${Number(l) + 1}.`),
    ]);
    const entry = header[a];
    delete header[a];
    (header as Record<string, unknown>)[to] = entry;
    return `"${a}" renamed "${to}"`;
  }),
  headerMutator("wrong-dtype", 2, (header, { rng }) => {
    const names = tensorNames(header);
    if (names.length === 0) return null;
    const a = rng.pick(names);
    const before = header[a].dtype;
    const dtype = rng.pick<unknown>(["I64", "F64", "U8", "BOOL", "F8_E4M3", "I32", "F16", "BF16", "F32", "f32", "XYZ", 32, null]);
    header[a].dtype = dtype;
    const o = offsetsOf(header[a]);
    const widths: Record<string, number> = { I64: 8, F64: 8, U8: 1, BOOL: 1, F8_E4M3: 1, I32: 4, F16: 2, BF16: 2, F32: 4 };
    const oldWidth = widths[before as string];
    const newWidth = widths[dtype as string];
    // Half the time the offsets are fixed to the new width, so only the dtype itself is wrong.
    if (o !== null && oldWidth && newWidth && rng.chance(0.5)) {
      header[a].data_offsets = [o[0], o[0] + ((o[1] - o[0]) / oldWidth) * newWidth];
      return `"${a}" dtype ${before} → ${JSON.stringify(dtype)}, offsets resized to match`;
    }
    return `"${a}" dtype ${before} → ${JSON.stringify(dtype)}`;
  }),
  headerMutator("wrong-shape", 2, (header, { rng }) => {
    const names = tensorNames(header);
    if (names.length === 0) return null;
    const a = rng.pick(names);
    const shape = Array.isArray(header[a].shape) ? (header[a].shape as number[]) : [1];
    const numel = shape.reduce((x, y) => x * y, 1);
    const i = rng.below(Math.max(1, shape.length));
    const choice = rng.pick<unknown>([
      shape.slice().reverse(), shape.map((d, j) => (j === i ? d + 1 : d)), shape.map((d, j) => (j === i ? d - 1 : d)), [...shape, 1], [1, ...shape], [],
      [0], [numel], [2 ** 31, 2 ** 31], [2 ** 53, 2 ** 53], [-1, ...shape.slice(1)], [1.5], shape.map(String), null,
    ]);
    header[a].shape = choice;
    return `"${a}" shape ${JSON.stringify(shape)} → ${JSON.stringify(choice)}`;
  }),
  headerMutator("bad-metadata", 0.5, (header, { rng }) => {
    const value = rng.pick<unknown>([{ format: 1 }, [], null, "pt", { a: { b: "c" } }, { format: "pt", extra: true }]);
    (header as Record<string, unknown>).__metadata__ = value;
    return `__metadata__ = ${JSON.stringify(value)}`;
  }),
];

// ---- the independent decode of an accepted folder ----

function hfMeaning(dir: string, loadedConfig: GPT2Config, loadedParams: Float32Array): Expected<{ config: GPT2Config; params: Float32Array }> {
  const config = hfConfigMeaning(fileBytes(`${dir}/${CONFIG}`));
  if (!config.ok) return config;
  const file = safetensorsMeaning(fileBytes(`${dir}/${WEIGHTS}`));
  if (!file.ok) return file;
  const c = config.value;
  const tensors = file.value;
  // What the loaded parameters say each HF tensor holds (the tests' writer's mapping) must be
  // what the file holds, name by name, bare or "transformer."-prefixed.
  const sameShape = loadedConfig.maxT === c.maxT && loadedConfig.V === c.V && loadedConfig.L === c.L && loadedConfig.NH === c.NH && loadedConfig.C === c.C;
  if (!sameShape) return { ok: true, value: { config: c, params: loadedParams } }; // judgeWeights reports the config mismatch
  const used = new Set<string>();
  for (const t of hfTensors(c, loadedParams)) {
    const bare = tensors.get(t.name), prefixed = tensors.get(`transformer.${t.name}`);
    if (bare !== undefined && prefixed !== undefined) return { ok: false, why: `both "${t.name}" and its prefixed name are present` };
    const inFile = bare ?? prefixed;
    if (inFile === undefined) return { ok: false, why: `no tensor "${t.name}"` };
    used.add(bare !== undefined ? t.name : `transformer.${t.name}`);
    if (inFile.shape.join(",") !== t.shape.join(",")) return { ok: false, why: `"${t.name}" has shape [${inFile.shape}], GPT-2 needs [${t.shape}]` };
    const diff = firstDifference(t.values, inFile.values);
    if (diff >= 0) return { ok: false, why: `"${t.name}"[${diff}] read as ${t.values[diff]}, the file holds ${inFile.values[diff]}` };
  }
  const head = tensors.get("lm_head.weight");
  if (head !== undefined) {
    used.add("lm_head.weight");
    const wte = loadedParams.subarray(0, c.V * c.C);
    if (head.values.length !== wte.length || firstDifference(head.values, wte) >= 0) return { ok: false, why: "lm_head.weight differs from wte" };
  }
  for (const name of tensors.keys()) {
    if (!used.has(name) && !/^(transformer\.)?h\.\d+\.attn\.(bias|masked_bias)$/.test(name)) return { ok: false, why: `unexpected tensor "${name}"` };
  }
  const padding = loadedParams.subarray(c.V * c.C, c.Vp * c.C);
  if (padding.some((x) => !Object.is(x, 0))) return { ok: false, why: "padded wte rows are not zero" };
  return { ok: true, value: { config: c, params: loadedParams } };
}

/** The generic safetensors reader on its own: open, then read every tensor. */
function checkSafetensors(dir: string): CheckResult {
  let file: SafetensorsFile;
  try {
    file = SafetensorsFile.open(`${dir}/${WEIGHTS}`);
  } catch (error) {
    return judgeError(error, dir);
  }
  try {
    const meaning = safetensorsMeaning(fileBytes(`${dir}/${WEIGHTS}`));
    if (!meaning.ok) return { verdict: "misread", detail: `SafetensorsFile.open accepted what cannot be read: ${meaning.why}` };
    for (const name of file.tensors.keys()) {
      const values = file.read(name);
      const want = meaning.value.get(name);
      if (want === undefined) return { verdict: "misread", detail: `tensor "${name}" listed by the reader is not in the header` };
      const diff = firstDifference(values, want.values);
      if (diff >= 0) return { verdict: "misread", detail: `"${name}"[${diff}] read as ${values[diff]}, the file holds ${want.values[diff]}` };
    }
    if (file.tensors.size !== meaning.value.size) return { verdict: "misread", detail: `the reader lists ${file.tensors.size} tensors, the header has ${meaning.value.size}` };
    return { verdict: "accepted", detail: "" };
  } catch (error) {
    return judgeError(error, dir);
  } finally {
    file.close();
  }
}

export const HF: Format = {
  name: "hf",
  description: "Hugging Face folder: config.json + model.safetensors",
  seeds: async () => {
    const [tiny, narrow] = SEED_CONFIGS;
    return [
      seed("tiny-f32", tiny.config, tiny.weightsSeed, "F32"),
      seed("narrow-f16", narrow.config, narrow.weightsSeed, "F16"),
      seed("tiny-bf16", tiny.config, 4, "BF16"),
      seed("narrow-prefixed-masks-lmhead", narrow.config, 5, "F32", { prefix: true, maskBuffers: true, lmHead: true }),
    ];
  },
  mutators: [
    ...binaryMutators(WEIGHTS),
    ...jsonMutators(WEIGHTS, (ctx) => ctx.seed.models.get(WEIGHTS)?.json, 1.5),
    ...SAFETENSORS_ATTACKS,
    ...jsonMutators(CONFIG, () => CONFIG_JSON, 1),
    ...binaryMutators(CONFIG, 0.15),
    ...fileMutators(WEIGHTS, 0.2),
    ...fileMutators(CONFIG, 0.2),
  ],
  async check(dir) {
    const weights = checkWeights(dir, `${dir}/${FOLDER}`, (loaded) => hfMeaning(dir, loaded.config, loaded.params));
    // The generic reader's own verdict only adds failures: its accepting a file the GPT-2 mapping refuses is fine.
    const generic = checkSafetensors(dir);
    return generic.verdict === "accepted" || generic.verdict === "clean" ? weights : worse(weights, generic);
  },
  cli: weightsCliTargets(FOLDER),
};
