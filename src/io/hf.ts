// Hugging Face GPT-2 folders (config.json + model.safetensors) ⇄ llm.c's parameter layout.
// HF names come with or without a "transformer." prefix; its Conv1D layers (attn.c_attn,
// attn.c_proj, mlp.c_fc, mlp.c_proj) store weights as (in, out), the transpose of llm.c's (out, in);
// the lm_head is tied to wte (lm_head.weight, when present, must equal it); h.N.attn.bias and
// h.N.attn.masked_bias are causal-mask buffers, not parameters. The vocabulary is padded to Vp with
// zero rows. Tensors are read straight into the one Float32Array of the llm.c layout (a transposed
// or converted tensor passes through one temporary the size of that tensor).
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { EOT_TOKEN, type GPT2Config, padVocab, validateConfig } from "../model/config.ts";
import { type BlockTensorName, GPT2Weights, type ParameterName } from "../model/weights.ts";
import { makeFolder, removeFile, writeFileAtomic } from "./atomic.ts";
import { CheckpointError, checkFinite } from "./checks.ts";
import { describeJson } from "../base/describe_json.ts";
import { SafetensorsError, SafetensorsFile, type TensorToWrite, writeSafetensors } from "./safetensors.ts";

export const HF_CONFIG_FILE = "config.json";
export const HF_WEIGHTS_FILE = "model.safetensors";

/** One HF tensor and where it goes: llm.ts tensor `target` (layer `layer`'s slice, or whole), transposed or not. */
type Mapping = { hfName: string; hfShape: number[]; transpose: boolean } & (
  | { layer: null; target: ParameterName }
  | { layer: number; target: BlockTensorName }
);

function mappings(config: GPT2Config): Mapping[] {
  const { C, L, V, maxT } = config;
  const list: Mapping[] = [
    { hfName: "wte.weight", target: "wte", layer: null, hfShape: [V, C], transpose: false },
    { hfName: "wpe.weight", target: "wpe", layer: null, hfShape: [maxT, C], transpose: false },
  ];
  for (let l = 0; l < L; l++) {
    const m = (suffix: string, target: BlockTensorName, hfShape: number[], transpose = false) => list.push({ hfName: `h.${l}.${suffix}`, target, layer: l, hfShape, transpose });
    m("ln_1.weight", "ln1w", [C]);
    m("ln_1.bias", "ln1b", [C]);
    m("attn.c_attn.weight", "qkvw", [C, 3 * C], true);
    m("attn.c_attn.bias", "qkvb", [3 * C]);
    m("attn.c_proj.weight", "attprojw", [C, C], true);
    m("attn.c_proj.bias", "attprojb", [C]);
    m("ln_2.weight", "ln2w", [C]);
    m("ln_2.bias", "ln2b", [C]);
    m("mlp.c_fc.weight", "fcw", [C, 4 * C], true);
    m("mlp.c_fc.bias", "fcb", [4 * C]);
    m("mlp.c_proj.weight", "fcprojw", [4 * C, C], true);
    m("mlp.c_proj.bias", "fcprojb", [C]);
  }
  list.push({ hfName: "ln_f.weight", target: "lnfw", layer: null, hfShape: [C], transpose: false });
  list.push({ hfName: "ln_f.bias", target: "lnfb", layer: null, hfShape: [C], transpose: false });
  return list;
}

/** The view of `weights` that mapping `m` fills (wte: its first V rows; the padding rows stay 0). */
function destination(weights: GPT2Weights, m: Mapping): Float32Array {
  const view = m.layer === null ? weights.tensors[m.target] : weights.layers[m.layer][m.target];
  return view.subarray(0, m.hfShape.reduce((a, b) => a * b, 1));
}

/** (rows, cols) row-major → (cols, rows) row-major. */
function transposeInto(out: Float32Array, inp: Float32Array, rows: number, cols: number): void {
  for (let r = 0; r < rows; r++) {
    const row = r * cols;
    for (let c = 0; c < cols; c++) out[c * rows + r] = inp[row + c];
  }
}

function readConfigJson(dir: string): GPT2Config {
  const path = join(dir, HF_CONFIG_FILE);
  if (!existsSync(path)) throw new CheckpointError(`${dir}: no ${HF_CONFIG_FILE} (a Hugging Face GPT-2 folder has config.json and model.safetensors)`);
  let json: Record<string, unknown>;
  try {
    // Strict UTF-8 (as transformers opens it): a lenient decode would read a damaged file's
    // invalid bytes as U+FFFD and accept it.
    json = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(readFileSync(path)));
  } catch (error) {
    throw new CheckpointError(`${path}: not valid UTF-8 JSON (${(error as Error).message})`);
  }
  if (json === null || typeof json !== "object" || Array.isArray(json)) throw new CheckpointError(`${path}: not a JSON object (${json === null ? "null" : Array.isArray(json) ? "an array" : typeof json})`);
  const field = (...names: string[]): number => {
    for (const name of names) if (json[name] !== undefined) {
      const value = json[name];
      if (typeof value !== "number" || !Number.isInteger(value) || value < 1) throw new CheckpointError(`${path}: ${name} must be a positive integer, got ${describeJson(value)}`);
      return value;
    }
    throw new CheckpointError(`${path}: missing ${names.join(" or ")}`);
  };
  const activation = json.activation_function;
  if (activation !== undefined && activation !== "gelu_new") throw new CheckpointError(`${path}: activation_function ${describeJson(activation)} is not supported (GPT-2 uses gelu_new, the tanh GELU)`);
  const eps = json.layer_norm_epsilon;
  if (eps !== undefined && (typeof eps !== "number" || Math.abs(eps - 1e-5) > 1e-12)) throw new CheckpointError(`${path}: layer_norm_epsilon ${describeJson(eps)} is not supported (llm.ts uses 1e-5)`);
  for (const flag of ["scale_attn_by_inverse_layer_idx", "reorder_and_upcast_attn"]) {
    if (json[flag] === true) throw new CheckpointError(`${path}: ${flag} = true is not supported`);
  }
  if (json.scale_attn_weights === false) throw new CheckpointError(`${path}: scale_attn_weights = false is not supported`);
  const V = field("vocab_size");
  const config: GPT2Config = { maxT: field("n_positions", "n_ctx"), V, Vp: padVocab(V), L: field("n_layer"), NH: field("n_head"), C: field("n_embd") };
  try {
    validateConfig(config, path);
  } catch (error) {
    throw new CheckpointError((error as Error).message);
  }
  return config;
}

/** The file's name for `hfName`: bare or "transformer."-prefixed, not both. */
function resolveName(file: SafetensorsFile, hfName: string): string {
  const prefixed = `transformer.${hfName}`;
  const bare = file.tensors.has(hfName), withPrefix = file.tensors.has(prefixed);
  if (bare && withPrefix) throw new CheckpointError(`${file.path}: both "${hfName}" and "${prefixed}" are present`);
  if (!bare && !withPrefix) throw new CheckpointError(`${file.path}: missing tensor "${hfName}" (or "${prefixed}")`);
  return bare ? hfName : prefixed;
}

const IGNORED = /^(transformer\.)?h\.\d+\.attn\.(bias|masked_bias)$/;
const LM_HEAD = "lm_head.weight";

export function readHuggingFaceFolder(dir: string): GPT2Weights {
  const config = readConfigJson(dir);
  const weightsPath = join(dir, HF_WEIGHTS_FILE);
  if (!existsSync(weightsPath)) throw new CheckpointError(`${dir}: no ${HF_WEIGHTS_FILE} (sharded or .bin checkpoints are not supported)`);
  let file: SafetensorsFile;
  try {
    file = SafetensorsFile.open(weightsPath);
  } catch (error) {
    throw error instanceof SafetensorsError ? new CheckpointError(error.message) : error;
  }
  try {
    // Every name and shape first: the file's header is bounded by its size, config.json is not, so
    // nothing is allocated for config.json's shapes before the file is known to hold them.
    const used = new Set<string>();
    const names = new Map<Mapping, string>();
    for (const m of mappings(config)) {
      const name = resolveName(file, m.hfName);
      used.add(name);
      names.set(m, name);
      const info = file.info(name);
      if (info.shape.length !== m.hfShape.length || info.shape.some((d, i) => d !== m.hfShape[i])) {
        throw new CheckpointError(`${weightsPath}: tensor "${name}" has shape [${info.shape.join(", ")}], config.json implies [${m.hfShape.join(", ")}]`);
      }
    }
    const weights = new GPT2Weights(config); // zero: the padded wte rows stay zero
    let scratch = new Float32Array(0);
    for (const [m, name] of names) {
      const info = file.info(name);
      const target = destination(weights, m);
      if (!m.transpose) {
        file.readInto(name, target);
        continue;
      }
      if (scratch.length < info.numel) scratch = new Float32Array(info.numel);
      const temp = scratch.subarray(0, info.numel);
      file.readInto(name, temp);
      transposeInto(target, temp, m.hfShape[0], m.hfShape[1]);
    }
    checkTiedHead(file, weights, used);
    const unknown = [...file.tensors.keys()].filter((n) => !used.has(n) && !IGNORED.test(n));
    if (unknown.length > 0) throw new CheckpointError(`${weightsPath}: unexpected tensors for a GPT-2: ${unknown.slice(0, 5).map((n) => `"${n}"`).join(", ")}${unknown.length > 5 ? ` and ${unknown.length - 5} more` : ""}`);
    checkFinite(weights, weightsPath);
    return weights;
  } catch (error) {
    throw error instanceof SafetensorsError ? new CheckpointError(error.message) : error;
  } finally {
    file.close();
  }
}

/** An lm_head.weight, if present, must be wte itself: llm.ts ties the two. */
function checkTiedHead(file: SafetensorsFile, weights: GPT2Weights, used: Set<string>): void {
  if (!file.tensors.has(LM_HEAD)) return;
  used.add(LM_HEAD);
  const { V, C } = weights.config;
  const info = file.info(LM_HEAD);
  if (info.shape.length !== 2 || info.shape[0] !== V || info.shape[1] !== C) throw new CheckpointError(`${file.path}: tensor "${LM_HEAD}" has shape [${info.shape.join(", ")}], expected [${V}, ${C}]`);
  const head = file.read(LM_HEAD);
  const wte = weights.tensors.wte.subarray(0, V * C);
  for (let i = 0; i < head.length; i++) {
    if (head[i] !== wte[i]) throw new CheckpointError(`${file.path}: "${LM_HEAD}" differs from wte (element ${i}): untied output heads are not supported`);
  }
}

/** Writes `dir`/config.json and `dir`/model.safetensors (F32, bare names, no lm_head), atomically each. */
export function writeHuggingFaceFolder(dir: string, weights: GPT2Weights): void {
  const { config } = weights;
  makeFolder(dir);
  // config.json is written last and marks a complete folder: a write cut short leaves no config
  // (refused by the reader), never a config beside weights it does not describe.
  removeFile(join(dir, HF_CONFIG_FILE));
  const tensors: TensorToWrite[] = mappings(config).map((m) => {
    const numel = m.hfShape.reduce((a, b) => a * b, 1);
    const source = destination(weights, m);
    if (!m.transpose) return { name: m.hfName, shape: m.hfShape, data: source };
    // llm.c's (out, in) = (hfShape[1], hfShape[0]) → HF's (in, out)
    return { name: m.hfName, shape: m.hfShape, data: () => {
      const out = new Float32Array(numel);
      transposeInto(out, source, m.hfShape[1], m.hfShape[0]);
      return out;
    } };
  });
  writeSafetensors(join(dir, HF_WEIGHTS_FILE), tensors, { format: "pt" });
  const json = {
    architectures: ["GPT2LMHeadModel"], model_type: "gpt2", activation_function: "gelu_new", layer_norm_epsilon: 1e-5,
    n_embd: config.C, n_layer: config.L, n_head: config.NH, n_positions: config.maxT, n_ctx: config.maxT, vocab_size: config.V,
    tie_word_embeddings: true, torch_dtype: "float32",
    ...(config.V > EOT_TOKEN ? { bos_token_id: EOT_TOKEN, eos_token_id: EOT_TOKEN } : {}),
  };
  writeFileAtomic(join(dir, HF_CONFIG_FILE), [new TextEncoder().encode(`${JSON.stringify(json, null, 2)}\n`)]);
}
