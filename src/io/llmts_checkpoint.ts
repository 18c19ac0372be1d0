// llm.ts training checkpoint: everything needed to continue a run bit-identically, in one file.
//
//   bytes 0–7   ASCII "LLMTSCKP"
//   bytes 8–11  u32 LE format version (1)
//   bytes 12–15 u32 LE byte length J of the JSON header
//   bytes 16–   UTF-8 JSON: { "config": GPT2Config,
//                             "tensors": { "params": {"offset", "count"}, "adam_m"?: …, "adam_v"?: … },
//                             "step": n, …training state (hyperparameters, data position, RNG) }
//   then fp32 little-endian tensors, each at a 64-byte aligned ABSOLUTE file offset (bytes), the
//   file ending exactly where the last tensor ends.
// The JSON's offsets depend on the JSON's length, so the writer iterates to a fixed point (two
// passes at most in practice: only the number of digits can change).
import { closeSync, fstatSync } from "node:fs";
import { type GPT2Config, validateConfig } from "../model/config.ts";
import { GPT2Weights, parameterCount } from "../model/weights.ts";
import { openForReading, writeStreamAtomic } from "./atomic.ts";
import { CheckpointError, checkFinite, readCheckpointBytes } from "./checks.ts";
import { describeJson } from "../base/describe_json.ts";

export const LLMTS_MAGIC = "LLMTSCKP";
export const LLMTS_VERSION = 1;
const PREAMBLE_BYTES = 16;
const ALIGN_BYTES = 64;
/** A JSON header larger than this is certainly not ours (guards against reading garbage lengths). */
const MAX_JSON_BYTES = 64 << 20;
const TENSOR_NAMES = ["params", "adam_m", "adam_v"] as const;
type TensorName = (typeof TENSOR_NAMES)[number];

export interface TensorEntry {
  /** absolute byte offset in the file, a multiple of 64 */
  offset: number;
  /** number of float32 values */
  count: number;
}

/**
 * AdamW moments produced piece by piece instead of held whole (a data-parallel run's rank 0
 * receiving every rank's shard in turn): called once for "m", then once for "v", it must emit the
 * moment's values in index order, exactly the parameter count in all; each chunk is written
 * before the next is asked for, so it may be reused.
 */
export type MomentStream = (which: "m" | "v", emit: (chunk: Float32Array) => void) => void;

export interface LlmtsCheckpointInput {
  weights: GPT2Weights;
  /** AdamW first and second moments (both or neither), whole or as a stream */
  m?: Float32Array;
  v?: Float32Array;
  moments?: MomentStream;
  /** optimizer updates done so far */
  step: number;
  /** any JSON-serialisable training state: hyperparameters, data position, RNG state… */
  state?: Record<string, unknown>;
}

export interface LlmtsCheckpoint {
  weights: GPT2Weights;
  m?: Float32Array;
  v?: Float32Array;
  step: number;
  /** the JSON header without "config" and "tensors" (so it includes "step") */
  state: Record<string, unknown>;
}

const align = (n: number) => Math.ceil(n / ALIGN_BYTES) * ALIGN_BYTES;

/** Writes the checkpoint atomically (temp file, fsync, rename). */
export function writeLlmtsCheckpoint(path: string, checkpoint: LlmtsCheckpointInput): void {
  const { weights, m, v, step, moments } = checkpoint;
  const { config, params } = weights;
  const count = params.length;
  if ((m === undefined) !== (v === undefined)) throw new CheckpointError(`${path}: give both AdamW moments (m and v) or neither`);
  if (moments !== undefined && m !== undefined) throw new CheckpointError(`${path}: give the AdamW moments as arrays or as a stream, not both`);
  if (m !== undefined && m.length !== count) throw new CheckpointError(`${path}: AdamW m has ${m.length} values, the config needs ${count}`);
  if (v !== undefined && v.length !== count) throw new CheckpointError(`${path}: AdamW v has ${v.length} values, the config needs ${count}`);
  if (!Number.isSafeInteger(step) || step < 0) throw new CheckpointError(`${path}: step must be a non-negative integer, got ${step}`);
  for (const key of ["config", "tensors"]) {
    if (checkpoint.state !== undefined && key in checkpoint.state) throw new CheckpointError(`${path}: state may not contain the reserved key "${key}"`);
  }

  // Each tensor: its values whole, or a function emitting them chunk by chunk.
  type Source = Float32Array | ((emit: (chunk: Float32Array) => void) => void);
  const arrays: Array<[TensorName, Source]> = [["params", params]];
  if (m !== undefined && v !== undefined) arrays.push(["adam_m", m], ["adam_v", v]);
  if (moments !== undefined) arrays.push(["adam_m", (emit) => moments("m", emit)], ["adam_v", (emit) => moments("v", emit)]);
  const lengthOf = (source: Source) => (source instanceof Float32Array ? source.length : count);

  let dataStart = align(PREAMBLE_BYTES + 2);
  let json: Uint8Array;
  let tensors: Record<string, TensorEntry>;
  for (;;) {
    tensors = {};
    let offset = dataStart;
    for (const [name, source] of arrays) {
      tensors[name] = { offset, count: lengthOf(source) };
      offset = align(offset + lengthOf(source) * 4);
    }
    const header = { ...checkpoint.state, config: { ...config }, tensors, step };
    json = new TextEncoder().encode(JSON.stringify(header));
    const needed = align(PREAMBLE_BYTES + json.length);
    if (needed === dataStart) break;
    dataStart = needed;
  }

  const preamble = new Uint8Array(PREAMBLE_BYTES);
  preamble.set(new TextEncoder().encode(LLMTS_MAGIC), 0);
  const view = new DataView(preamble.buffer);
  view.setUint32(8, LLMTS_VERSION, true);
  view.setUint32(12, json.length, true);
  const bytesOf = (a: ArrayBufferView) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
  writeStreamAtomic(path, (write) => {
    write(preamble);
    write(json);
    write(new Uint8Array(dataStart - PREAMBLE_BYTES - json.length));
    let position = dataStart;
    for (const [name, source] of arrays) {
      if (position !== tensors[name].offset) throw new Error(`internal: ${name} at ${position}, header says ${tensors[name].offset}`);
      if (source instanceof Float32Array) write(bytesOf(source));
      else {
        let emitted = 0;
        source((chunk) => {
          if (emitted + chunk.length > count) throw new CheckpointError(`${path}: the ${name} stream gave more than the ${count} values the config needs`);
          write(bytesOf(chunk));
          emitted += chunk.length;
        });
        if (emitted !== count) throw new CheckpointError(`${path}: the ${name} stream gave ${emitted} values, the config needs ${count}`);
      }
      position += tensors[name].count * 4;
      const padded = align(position);
      // The last tensor is not padded: the file ends where it ends.
      if (name !== arrays[arrays.length - 1][0]) {
        write(new Uint8Array(padded - position));
        position = padded;
      }
    }
  });
}

/**
 * Reads a checkpoint, validating the preamble, the header, every tensor's placement and the file
 * size, and that the parameters are finite. `optimizer: false` skips reading the AdamW moments
 * (inference needs only the weights); `optimizer: true` requires them.
 */
export function readLlmtsCheckpoint(path: string, options: { optimizer?: boolean } = {}): LlmtsCheckpoint {
  const fd = openForReading(path, (message) => new CheckpointError(message));
  try {
    const fileBytes = fstatSync(fd).size;
    if (fileBytes < PREAMBLE_BYTES) throw new CheckpointError(`${path}: ${fileBytes} bytes is shorter than the 16-byte llm.ts checkpoint preamble`);
    const preamble = new Uint8Array(PREAMBLE_BYTES);
    readCheckpointBytes(fd, preamble, 0, path, "the preamble");
    const magic = new TextDecoder("latin1").decode(preamble.subarray(0, 8));
    if (magic !== LLMTS_MAGIC) throw new CheckpointError(`${path}: starts with ${JSON.stringify(magic)}, an llm.ts checkpoint starts with "${LLMTS_MAGIC}"`);
    const view = new DataView(preamble.buffer);
    const version = view.getUint32(8, true);
    if (version !== LLMTS_VERSION) throw new CheckpointError(`${path}: format version ${version}, this build reads version ${LLMTS_VERSION}`);
    const jsonBytes = view.getUint32(12, true);
    if (jsonBytes > MAX_JSON_BYTES || PREAMBLE_BYTES + jsonBytes > fileBytes) {
      throw new CheckpointError(`${path}: header length ${jsonBytes} does not fit in the ${fileBytes}-byte file`);
    }
    const jsonRaw = new Uint8Array(jsonBytes);
    readCheckpointBytes(fd, jsonRaw, PREAMBLE_BYTES, path, "the JSON header");
    let header: Record<string, unknown>;
    try {
      header = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(jsonRaw));
    } catch (error) {
      throw new CheckpointError(`${path}: the JSON header does not parse (${(error as Error).message})`);
    }
    if (header === null || typeof header !== "object" || Array.isArray(header)) throw new CheckpointError(`${path}: the JSON header is not an object`);
    const config = parseConfig(header.config, path);
    const count = parameterCount(config);
    const step = header.step;
    if (typeof step !== "number" || !Number.isSafeInteger(step) || step < 0) throw new CheckpointError(`${path}: header "step" must be a non-negative integer, got ${describeJson(step)}`);
    const entries = parseTensors(header.tensors, path, PREAMBLE_BYTES + jsonBytes, fileBytes, count);

    const readTensor = (name: TensorName): Float32Array => {
      const entry = entries[name];
      if (entry === undefined) throw new CheckpointError(`${path}: has no "${name}" tensor`);
      const array = new Float32Array(entry.count);
      readCheckpointBytes(fd, new Uint8Array(array.buffer), entry.offset, path, `tensor ${name}`);
      return array;
    };
    const weights = new GPT2Weights(config, readTensor("params"));
    checkFinite(weights, path);
    const result: LlmtsCheckpoint = { weights, step, state: stateOf(header) };
    const hasMoments = entries.adam_m !== undefined;
    if (options.optimizer === true && !hasMoments) throw new CheckpointError(`${path}: holds no AdamW moments (adam_m, adam_v), so it cannot resume training`);
    if (options.optimizer !== false && hasMoments) {
      result.m = readTensor("adam_m");
      result.v = readTensor("adam_v");
      checkMoments(result.m, result.v, path);
    }
    return result;
  } finally {
    closeSync(fd);
  }
}

/**
 * AdamW's moments must be finite and the second one non-negative (it is a running mean of squared
 * gradients): anything else turns the first update's parameters into NaN.
 */
function checkMoments(m: Float32Array, v: Float32Array, path: string): void {
  for (let i = 0; i < m.length; i++) {
    const x = m[i];
    if (x - x !== 0) throw new CheckpointError(`${path}: tensor adam_m has a non-finite value (${x}) at element ${i}`);
  }
  for (let i = 0; i < v.length; i++) {
    const x = v[i];
    if (!(x >= 0 && x < Infinity)) throw new CheckpointError(`${path}: tensor adam_v has ${x < 0 ? "a negative" : "a non-finite"} value (${x}) at element ${i}; AdamW's second moment is finite and ≥ 0`);
  }
}

function stateOf(header: Record<string, unknown>): Record<string, unknown> {
  const state: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(header)) if (key !== "config" && key !== "tensors") state[key] = value;
  return state;
}

function parseConfig(raw: unknown, path: string): GPT2Config {
  if (raw === null || typeof raw !== "object") throw new CheckpointError(`${path}: header has no "config" object`);
  const r = raw as Record<string, unknown>;
  const config = { maxT: r.maxT, V: r.V, Vp: r.Vp, L: r.L, NH: r.NH, C: r.C } as GPT2Config;
  // Types first: validateConfig prints the value, and an array nested deep enough overflows the stack.
  for (const [key, value] of Object.entries(config)) {
    if (typeof value !== "number") throw new CheckpointError(`${path}: header config ${key} must be an integer, got ${describeJson(value)}`);
  }
  try {
    validateConfig(config, `${path}: header config`);
  } catch (error) {
    throw new CheckpointError((error as Error).message);
  }
  return config;
}

function parseTensors(raw: unknown, path: string, jsonEnd: number, fileBytes: number, count: number): Partial<Record<TensorName, TensorEntry>> {
  if (raw === null || typeof raw !== "object") throw new CheckpointError(`${path}: header has no "tensors" object`);
  const r = raw as Record<string, unknown>;
  for (const key of Object.keys(r)) {
    if (!(TENSOR_NAMES as readonly string[]).includes(key)) throw new CheckpointError(`${path}: unknown tensor "${key}" (known: ${TENSOR_NAMES.join(", ")})`);
  }
  if (r.params === undefined) throw new CheckpointError(`${path}: header lists no "params" tensor`);
  if ((r.adam_m === undefined) !== (r.adam_v === undefined)) throw new CheckpointError(`${path}: header lists only one of adam_m and adam_v`);
  const entries: Partial<Record<TensorName, TensorEntry>> = {};
  const spans: Array<[number, number, string]> = [];
  for (const name of TENSOR_NAMES) {
    const e = r[name] as Record<string, unknown> | undefined;
    if (e === undefined) continue;
    const { offset, count: n } = e ?? {};
    if (typeof offset !== "number" || !Number.isSafeInteger(offset) || offset % ALIGN_BYTES !== 0 || offset < jsonEnd) {
      throw new CheckpointError(`${path}: tensor ${name} offset ${describeJson(offset)} must be a multiple of ${ALIGN_BYTES} at or after the header's end (${jsonEnd})`);
    }
    if (n !== count) throw new CheckpointError(`${path}: tensor ${name} has ${describeJson(n)} values, the config needs ${count}`);
    if (offset + count * 4 > fileBytes) throw new CheckpointError(`${path}: truncated: tensor ${name} ends at byte ${offset + count * 4}, the file has ${fileBytes}`);
    entries[name] = { offset, count };
    spans.push([offset, offset + count * 4, name]);
  }
  spans.sort((a, b) => a[0] - b[0]);
  for (let i = 1; i < spans.length; i++) {
    if (spans[i][0] < spans[i - 1][1]) throw new CheckpointError(`${path}: tensors ${spans[i - 1][2]} and ${spans[i][2]} overlap`);
  }
  const end = spans[spans.length - 1][1];
  if (end !== fileBytes) throw new CheckpointError(`${path}: ${fileBytes} bytes, but the tensors end at byte ${end} (${fileBytes - end} extra)`);
  return entries;
}
