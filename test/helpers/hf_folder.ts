// Writes a Hugging Face-style GPT-2 folder from llm.c-layout weights, independently of
// src/io/hf.ts and src/io/safetensors.ts (so the reader is checked against a second writer):
// Conv1D weights transposed to (in, out), optional "transformer." prefix, optional attn.bias /
// masked_bias buffers and lm_head.weight, F32, F16 or BF16 data, and hooks to break the file.
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { GPT2Config } from "../../src/model/config.ts";
import { GPT2Weights } from "../../src/model/weights.ts";

export type Dtype = "F32" | "F16" | "BF16";

export interface HfFolderOptions {
  prefix?: boolean;
  dtype?: Dtype;
  maskBuffers?: boolean;
  lmHead?: boolean;
  /** edits the tensor list before writing (drop one, reshape one, add one…) */
  edit?: (tensors: RawTensor[]) => RawTensor[];
  /** edits config.json before writing */
  editConfig?: (json: Record<string, unknown>) => void;
}

export interface RawTensor {
  name: string;
  shape: number[];
  values: Float32Array;
  dtype?: Dtype;
}

/** Rounds every value to the nearest value the dtype represents (ties away from zero is fine here). */
export function quantize(values: Float32Array, dtype: Dtype): Float32Array {
  if (dtype === "F32") return values.slice();
  if (dtype === "BF16") {
    const out = values.slice();
    const bits = new Uint32Array(out.buffer);
    for (let i = 0; i < bits.length; i++) bits[i] = ((bits[i] + 0x8000) & 0xffff0000) >>> 0;
    return out;
  }
  return values.map((v) => {
    if (Math.abs(v) < 2 ** -14) return 0; // keep to normal F16 numbers
    const step = 2 ** (Math.floor(Math.log2(Math.abs(v))) - 10);
    return Math.round(v / step) * step;
  });
}

function encode(values: Float32Array, dtype: Dtype): Uint8Array {
  if (dtype === "F32") return new Uint8Array(values.buffer.slice(values.byteOffset, values.byteOffset + values.byteLength));
  const out = new Uint16Array(values.length);
  const bits = new Uint32Array(Float32Array.from(values).buffer);
  for (let i = 0; i < values.length; i++) {
    const b = bits[i];
    if (dtype === "BF16") {
      if ((b & 0xffff) !== 0) throw new Error(`value ${values[i]} is not exact in BF16`);
      out[i] = b >>> 16;
      continue;
    }
    const sign = (b >>> 16) & 0x8000;
    if ((b & 0x7fffffff) === 0) { out[i] = sign; continue; }
    const exponent = ((b >>> 23) & 0xff) - 127 + 15;
    if (exponent < 1 || exponent > 30 || (b & 0x1fff) !== 0) throw new Error(`value ${values[i]} is not a normal F16 number`);
    out[i] = sign | (exponent << 10) | ((b >>> 13) & 0x3ff);
  }
  return new Uint8Array(out.buffer);
}

/** Bytes of a safetensors file holding `tensors` (each in its own dtype), header as given. */
export function safetensorsBytes(tensors: RawTensor[], defaultDtype: Dtype = "F32"): Uint8Array {
  const header: Record<string, unknown> = { __metadata__: { format: "pt" } };
  const chunks: Uint8Array[] = [];
  let offset = 0;
  for (const t of tensors) {
    const dtype = t.dtype ?? defaultDtype;
    const bytes = encode(t.values, dtype);
    header[t.name] = { dtype, shape: t.shape, data_offsets: [offset, offset + bytes.length] };
    chunks.push(bytes);
    offset += bytes.length;
  }
  return rawSafetensors(JSON.stringify(header), chunks);
}

/** An 8-byte length, the header text as given, then the data chunks. */
export function rawSafetensors(headerJson: string, chunks: Uint8Array[], headerLength?: bigint): Uint8Array {
  const json = new TextEncoder().encode(headerJson);
  const total = 8 + json.length + chunks.reduce((a, c) => a + c.length, 0);
  const out = new Uint8Array(total);
  new DataView(out.buffer).setBigUint64(0, headerLength ?? BigInt(json.length), true);
  out.set(json, 8);
  let at = 8 + json.length;
  for (const c of chunks) { out.set(c, at); at += c.length; }
  return out;
}

function transpose(values: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(values.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = values[r * cols + c];
  return out;
}

/** The HF tensors of llm.c-layout `params` (Conv1D weights transposed to (in, out)). */
export function hfTensors(config: GPT2Config, params: Float32Array, options: HfFolderOptions = {}): RawTensor[] {
  const { C, L, V, maxT } = config;
  const p = new GPT2Weights(config, params).tensors;
  const pre = options.prefix ? "transformer." : "";
  const layer = (t: Float32Array, l: number) => t.subarray((l * t.length) / L, ((l + 1) * t.length) / L);
  const tensors: RawTensor[] = [
    { name: `${pre}wte.weight`, shape: [V, C], values: p.wte.slice(0, V * C) },
    { name: `${pre}wpe.weight`, shape: [maxT, C], values: p.wpe.slice() },
  ];
  for (let l = 0; l < L; l++) {
    const h = `${pre}h.${l}.`;
    tensors.push(
      { name: `${h}ln_1.weight`, shape: [C], values: layer(p.ln1w, l).slice() },
      { name: `${h}ln_1.bias`, shape: [C], values: layer(p.ln1b, l).slice() },
      { name: `${h}attn.c_attn.weight`, shape: [C, 3 * C], values: transpose(layer(p.qkvw, l), 3 * C, C) },
      { name: `${h}attn.c_attn.bias`, shape: [3 * C], values: layer(p.qkvb, l).slice() },
      { name: `${h}attn.c_proj.weight`, shape: [C, C], values: transpose(layer(p.attprojw, l), C, C) },
      { name: `${h}attn.c_proj.bias`, shape: [C], values: layer(p.attprojb, l).slice() },
      { name: `${h}ln_2.weight`, shape: [C], values: layer(p.ln2w, l).slice() },
      { name: `${h}ln_2.bias`, shape: [C], values: layer(p.ln2b, l).slice() },
      { name: `${h}mlp.c_fc.weight`, shape: [C, 4 * C], values: transpose(layer(p.fcw, l), 4 * C, C) },
      { name: `${h}mlp.c_fc.bias`, shape: [4 * C], values: layer(p.fcb, l).slice() },
      { name: `${h}mlp.c_proj.weight`, shape: [4 * C, C], values: transpose(layer(p.fcprojw, l), C, 4 * C) },
      { name: `${h}mlp.c_proj.bias`, shape: [C], values: layer(p.fcprojb, l).slice() },
    );
    if (options.maskBuffers) {
      // HF stores the causal mask as a (1,1,maxT,maxT) buffer and masked_bias as a scalar.
      const mask = new Float32Array(maxT * maxT).map((_, i) => (i % maxT <= Math.floor(i / maxT) ? 1 : 0));
      tensors.push({ name: `${h}attn.bias`, shape: [1, 1, maxT, maxT], values: mask, dtype: "F32" });
      tensors.push({ name: `${h}attn.masked_bias`, shape: [], values: Float32Array.of(-1e4), dtype: "F32" });
    }
  }
  tensors.push({ name: `${pre}ln_f.weight`, shape: [C], values: p.lnfw.slice() }, { name: `${pre}ln_f.bias`, shape: [C], values: p.lnfb.slice() });
  if (options.lmHead) tensors.push({ name: "lm_head.weight", shape: [V, C], values: p.wte.slice(0, V * C) });
  return tensors;
}

export function hfConfigJson(config: GPT2Config): Record<string, unknown> {
  return {
    model_type: "gpt2", activation_function: "gelu_new", layer_norm_epsilon: 1e-5,
    n_embd: config.C, n_layer: config.L, n_head: config.NH, n_positions: config.maxT, n_ctx: config.maxT, vocab_size: config.V,
  };
}

/** Writes `dir`/config.json and `dir`/model.safetensors in HF's layout. */
export function writeHfFolder(dir: string, config: GPT2Config, params: Float32Array, options: HfFolderOptions = {}): void {
  mkdirSync(dir, { recursive: true });
  let tensors = hfTensors(config, params, options);
  if (options.edit) tensors = options.edit(tensors);
  writeFileSync(join(dir, "model.safetensors"), safetensorsBytes(tensors, options.dtype ?? "F32"));
  const json = hfConfigJson(config);
  options.editConfig?.(json);
  writeFileSync(join(dir, "config.json"), JSON.stringify(json));
}
