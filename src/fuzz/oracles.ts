// Independent decoders: what an accepted file must have been read as. They share no code with the
// readers under test (src/io, src/data) and check only what the format itself fixes, so a reader
// that accepts a file and returns anything else — other shapes, other values, bf16 bits taken for
// fp32, a tensor from the wrong offset — is caught as a misread.
import type { GPT2Config } from "../model/config.ts";

/** The file's meaning, or the reason no reader may accept it. */
export type Expected<T> = { ok: true; value: T } | { ok: false; why: string };

const ok = <T>(value: T): Expected<T> => ({ ok: true, value });
const no = <T>(why: string): Expected<T> => ({ ok: false, why });

function view(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** GPT-2's parameter count, from the tensor shapes (wte, wpe, 12C²+13C per layer, final layernorm). */
export function gpt2ParameterCount(c: GPT2Config): number {
  return c.Vp * c.C + c.maxT * c.C + c.L * (12 * c.C * c.C + 13 * c.C) + 2 * c.C;
}

/** The shape facts any GPT-2 config must satisfy whatever a reader's own limits are. */
export function configProblem(c: GPT2Config): string | null {
  for (const [key, value] of Object.entries(c)) if (!Number.isSafeInteger(value) || value < 1) return `${key} = ${value} is not a positive integer`;
  if (c.Vp < c.V) return `Vp ${c.Vp} < V ${c.V}`;
  if (c.C % c.NH !== 0) return `C ${c.C} is not a multiple of NH ${c.NH}`;
  return null;
}

function f32At(bytes: Uint8Array, offset: number, count: number): Float32Array {
  return new Float32Array(bytes.buffer.slice(bytes.byteOffset + offset, bytes.byteOffset + offset + 4 * count));
}

function bf16At(bytes: Uint8Array, offset: number, count: number): Float32Array {
  const out = new Float32Array(count);
  const bits = new Uint32Array(out.buffer);
  const v = view(bytes);
  for (let i = 0; i < count; i++) bits[i] = v.getUint16(offset + 2 * i, true) << 16;
  return out;
}

/** IEEE binary16 → float32 bits, by moving the fields (subnormals renormalised). */
function f16Bits(h: number): number {
  const sign = (h & 0x8000) << 16;
  let exponent = (h >> 10) & 0x1f;
  let mantissa = h & 0x3ff;
  if (exponent === 0x1f) return (sign | 0x7f800000 | (mantissa << 13)) >>> 0;
  if (exponent === 0) {
    if (mantissa === 0) return sign >>> 0;
    let shift = 0;
    while ((mantissa & 0x400) === 0) {
      mantissa <<= 1;
      shift++;
    }
    mantissa &= 0x3ff;
    exponent = 1 - shift;
  }
  return (sign | ((exponent - 15 + 127) << 23) | (mantissa << 13)) >>> 0;
}

function f16At(bytes: Uint8Array, offset: number, count: number): Float32Array {
  const out = new Float32Array(count);
  const bits = new Uint32Array(out.buffer);
  const v = view(bytes);
  for (let i = 0; i < count; i++) bits[i] = f16Bits(v.getUint16(offset + 2 * i, true));
  return out;
}

/** Index of the first element whose bits differ (any NaN equals any NaN: payloads carry nothing), or -1. */
export function firstDifference(a: Float32Array, b: Float32Array): number {
  if (a.length !== b.length) return 0;
  const x = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const y = new Uint32Array(b.buffer, b.byteOffset, b.length);
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i] && !(Number.isNaN(a[i]) && Number.isNaN(b[i]))) return i;
  return -1;
}

export function firstNonFinite(a: Float32Array): number {
  for (let i = 0; i < a.length; i++) if (!Number.isFinite(a[i])) return i;
  return -1;
}

// ---- llm.c model file ----

export interface LlmcMeaning {
  version: number;
  config: GPT2Config;
  params: Float32Array;
}

export function llmcMeaning(bytes: Uint8Array): Expected<LlmcMeaning> {
  if (bytes.length < 1024) return no(`${bytes.length} bytes, shorter than the 1024-byte header`);
  const v = view(bytes);
  const word = (i: number) => v.getInt32(4 * i, true);
  if (word(0) !== 20240326) return no(`magic ${word(0)}`);
  const version = word(1);
  if (version !== 3 && version !== 5) return no(`version ${version} is neither 3 (fp32) nor 5 (bf16)`);
  const config: GPT2Config = { maxT: word(2), V: word(3), L: word(4), NH: word(5), C: word(6), Vp: word(7) };
  const problem = configProblem(config);
  if (problem !== null) return no(problem);
  const count = gpt2ParameterCount(config);
  const width = version === 3 ? 4 : 2;
  if (bytes.length !== 1024 + width * count) return no(`${bytes.length} bytes, version ${version} with these shapes needs ${1024 + width * count}`);
  return ok({ version, config, params: version === 3 ? f32At(bytes, 1024, count) : bf16At(bytes, 1024, count) });
}

// ---- llm.ts checkpoint ----

export interface LlmtsMeaning {
  config: GPT2Config;
  step: number;
  params: Float32Array;
  m: Float32Array | null;
  v: Float32Array | null;
  header: Record<string, unknown>;
}

export function llmtsMeaning(bytes: Uint8Array): Expected<LlmtsMeaning> {
  if (bytes.length < 16) return no("shorter than the 16-byte preamble");
  if (String.fromCharCode(...bytes.subarray(0, 8)) !== "LLMTSCKP") return no("wrong magic");
  const v = view(bytes);
  if (v.getUint32(8, true) !== 1) return no(`version ${v.getUint32(8, true)}`);
  const length = v.getUint32(12, true);
  if (16 + length > bytes.length) return no("JSON runs past the end");
  let header: Record<string, unknown>;
  try {
    header = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes.subarray(16, 16 + length)));
  } catch (error) {
    return no(`JSON: ${(error as Error).message}`);
  }
  if (header === null || typeof header !== "object" || Array.isArray(header)) return no("JSON is not an object");
  const c = header.config as Record<string, unknown> | null;
  if (c === null || typeof c !== "object") return no("no config");
  const config = { maxT: c.maxT, V: c.V, Vp: c.Vp, L: c.L, NH: c.NH, C: c.C } as GPT2Config;
  const problem = configProblem(config);
  if (problem !== null) return no(problem);
  const count = gpt2ParameterCount(config);
  const tensors = header.tensors as Record<string, { offset?: unknown; count?: unknown }> | null;
  if (tensors === null || typeof tensors !== "object") return no("no tensors");
  const tensor = (name: string): Expected<Float32Array | null> => {
    const t = tensors[name];
    if (t === undefined) return ok(null);
    if (t === null || typeof t !== "object") return no(`${name} is not an object`);
    const { offset, count: n } = t;
    if (typeof offset !== "number" || !Number.isSafeInteger(offset) || offset < 16 + length) return no(`${name} offset ${offset}`);
    if (n !== count) return no(`${name} count ${n}, config needs ${count}`);
    if (offset + 4 * count > bytes.length) return no(`${name} runs past the end`);
    return ok(f32At(bytes, offset, count));
  };
  const params = tensor("params");
  const m = tensor("adam_m");
  const vv = tensor("adam_v");
  if (!params.ok) return params;
  if (!m.ok) return m;
  if (!vv.ok) return vv;
  if (params.value === null) return no("no params tensor");
  const step = header.step;
  if (typeof step !== "number" || !Number.isSafeInteger(step) || step < 0) return no(`step ${JSON.stringify(step)}`);
  return ok({ config, step, params: params.value, m: m.value, v: vv.value, header });
}

// ---- llm.c token file ----

export function tokenFileMeaning(bytes: Uint8Array): Expected<Uint16Array> {
  if (bytes.length < 1024) return no("shorter than the header");
  const v = view(bytes);
  if (v.getInt32(0, true) !== 20240520) return no("wrong magic");
  if (v.getInt32(4, true) !== 1) return no("wrong version");
  const count = v.getInt32(8, true);
  if (count < 0 || bytes.length !== 1024 + 2 * count) return no(`count ${count} does not match ${bytes.length} bytes`);
  return ok(new Uint16Array(bytes.buffer.slice(bytes.byteOffset + 1024, bytes.byteOffset + 1024 + 2 * count)));
}

// ---- llm.c tokenizer file ----

export interface TokenizerMeaning {
  version: number;
  eot: number | null;
  vocab: Uint8Array[];
}

export function tokenizerMeaning(bytes: Uint8Array): Expected<TokenizerMeaning> {
  if (bytes.length < 1024) return no("shorter than the header");
  const v = view(bytes);
  if (v.getUint32(0, true) !== 20240328) return no("wrong magic");
  const version = v.getUint32(4, true);
  if (version !== 1 && version !== 2) return no(`version ${version}`);
  const size = v.getUint32(8, true);
  const eot = version === 2 ? v.getUint32(12, true) : null;
  if (eot !== null && eot >= size) return no("eot outside the vocabulary");
  const vocab: Uint8Array[] = [];
  let at = 1024;
  for (let id = 0; id < size; id++) {
    if (at >= bytes.length) return no(`ends before token ${id}`);
    const n = bytes[at];
    if (n === 0 || at + 1 + n > bytes.length) return no(`token ${id} of ${n} bytes does not fit`);
    vocab.push(bytes.slice(at + 1, at + 1 + n));
    at += 1 + n;
  }
  if (at !== bytes.length) return no(`${bytes.length - at} bytes after the last token`);
  return ok({ version, eot, vocab });
}

// ---- safetensors + config.json ----

/** Keys in the parsed tree (iteratively: trees may be nested 100 000 deep). */
function keyCount(root: unknown): number {
  let n = 0;
  const stack: unknown[] = [root];
  while (stack.length > 0) {
    const v = stack.pop();
    if (v === null || typeof v !== "object") continue;
    if (Array.isArray(v)) for (const x of v) stack.push(x);
    else {
      const entries = Object.entries(v);
      n += entries.length;
      for (const [, x] of entries) stack.push(x);
    }
  }
  return n;
}

/** Whether some object of the text repeats a key: the text holds more keys (strings before a colon) than the parsed tree. */
function hasRepeatedKey(text: string, parsed: unknown): boolean {
  // Strings matched left to right tile well-formed JSON exactly (no quote appears outside one).
  let written = 0;
  for (const m of text.matchAll(/"(?:[^"\\]|\\.)*"/g)) {
    let after = m.index! + m[0].length;
    while (after < text.length && " \t\n\r".includes(text[after])) after++;
    if (text[after] === ":") written++;
  }
  return written !== keyCount(parsed);
}

export interface SafetensorsTensor {
  dtype: string;
  shape: number[];
  values: Float32Array;
}

export function safetensorsMeaning(bytes: Uint8Array): Expected<Map<string, SafetensorsTensor>> {
  if (bytes.length < 8) return no("shorter than the length prefix");
  const length = Number(view(bytes).getBigUint64(0, true));
  if (length > bytes.length - 8) return no("header runs past the end");
  let header: Record<string, unknown>;
  try {
    header = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes.subarray(8, 8 + length)));
  } catch (error) {
    return no(`header JSON: ${(error as Error).message}`);
  }
  if (header === null || typeof header !== "object" || Array.isArray(header)) return no("header is not an object");
  if (hasRepeatedKey(new TextDecoder().decode(bytes.subarray(8, 8 + length)), header)) return no("a key is repeated (the reference implementation refuses that)");
  const dataStart = 8 + length;
  const tensors = new Map<string, SafetensorsTensor>();
  for (const [name, raw] of Object.entries(header)) {
    if (name === "__metadata__") continue;
    const e = raw as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    if (e === null || typeof e !== "object") return no(`${name}: not an object`);
    const width = { F32: 4, F16: 2, BF16: 2 }[e.dtype as string];
    if (width === undefined) return no(`${name}: dtype ${JSON.stringify(e.dtype)} cannot hold weights`);
    if (!Array.isArray(e.shape) || !e.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) return no(`${name}: shape`);
    const offsets = e.data_offsets;
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every((o) => Number.isSafeInteger(o) && o >= 0)) return no(`${name}: offsets`);
    const count = (e.shape as number[]).reduce((a, b) => a * b, 1);
    const [begin, end] = offsets as number[];
    if (end - begin !== count * width || dataStart + end > bytes.length) return no(`${name}: offsets [${begin}, ${end}] do not hold ${count} ${e.dtype}`);
    const decode = e.dtype === "F32" ? f32At : e.dtype === "BF16" ? bf16At : f16At;
    tensors.set(name, { dtype: e.dtype as string, shape: e.shape as number[], values: decode(bytes, dataStart + begin, count) });
  }
  return ok(tensors);
}

export function hfConfigMeaning(text: Uint8Array): Expected<GPT2Config> {
  let json: Record<string, unknown>;
  try {
    json = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(text));
  } catch (error) {
    return no(`config.json: ${(error as Error).message}`);
  }
  if (json === null || typeof json !== "object" || Array.isArray(json)) return no("config.json is not an object");
  const V = json.vocab_size as number;
  const config = { maxT: (json.n_positions ?? json.n_ctx) as number, V, Vp: Math.ceil(V / 128) * 128, L: json.n_layer as number, NH: json.n_head as number, C: json.n_embd as number };
  const problem = configProblem(config);
  return problem === null ? ok(config) : no(problem);
}
