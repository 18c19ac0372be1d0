// The safetensors format (Hugging Face): an 8-byte little-endian header length N, N bytes of JSON
// {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__"?: {string: string}}, then the
// raw little-endian tensor data; offsets are relative to the end of the header.
// The reader validates everything before any data is trusted (header length against the file
// size, the JSON, every dtype, shape and offset range, overlaps) and reads tensors straight into a
// caller's Float32Array, converting F16 and BF16 to F32. The writer writes F32, atomically.
import { closeSync, fstatSync } from "node:fs";
import { InputError } from "../base/errors.ts";
import { readExactly as readExactlyOr } from "../base/read.ts";
import { openForReading, writeStreamAtomic } from "./atomic.ts";
import { describeJson } from "../base/describe_json.ts";

export class SafetensorsError extends InputError {
  override name = "SafetensorsError";
}

export type SupportedDtype = "F32" | "F16" | "BF16";
const DTYPE_BYTES: Record<string, number> = {
  BOOL: 1, U8: 1, I8: 1, F8_E5M2: 1, F8_E4M3: 1, I16: 2, U16: 2, F16: 2, BF16: 2, I32: 4, U32: 4, F32: 4, I64: 8, U64: 8, F64: 8,
};
const SUPPORTED: readonly string[] = ["F32", "F16", "BF16"];
/** The reference implementation refuses headers above 100 MB; so do we. */
const MAX_HEADER_BYTES = 100_000_000;

export interface TensorInfo {
  name: string;
  dtype: SupportedDtype;
  shape: number[];
  numel: number;
  /** absolute byte range in the file */
  begin: number;
  end: number;
}

export class SafetensorsFile {
  private closed = false;
  private constructor(
    readonly path: string,
    private readonly fd: number,
    readonly tensors: Map<string, TensorInfo>,
    readonly metadata: Record<string, string> | null,
  ) {}

  /** Opens and validates `path`; the caller must close() it. */
  static open(path: string): SafetensorsFile {
    const fd = openForReading(path, (message) => new SafetensorsError(message));
    try {
      const { tensors, metadata } = readHeader(fd, path);
      return new SafetensorsFile(path, fd, tensors, metadata);
    } catch (error) {
      closeSync(fd);
      throw error;
    }
  }

  close(): void {
    if (!this.closed) closeSync(this.fd);
    this.closed = true;
  }

  info(name: string): TensorInfo {
    const info = this.tensors.get(name);
    if (info === undefined) throw new SafetensorsError(`${this.path}: no tensor named "${name}"`);
    return info;
  }

  /** Reads tensor `name` into `out` (exactly numel floats), converting to F32. */
  readInto(name: string, out: Float32Array): void {
    const info = this.info(name);
    if (out.length !== info.numel) throw new SafetensorsError(`${this.path}: tensor "${name}" has ${info.numel} elements, the destination ${out.length}`);
    if (info.dtype === "F32") {
      readExactly(this.fd, new Uint8Array(out.buffer, out.byteOffset, out.byteLength), info.begin, this.path, name);
      return;
    }
    const half = new Uint16Array(info.numel);
    readExactly(this.fd, new Uint8Array(half.buffer), info.begin, this.path, name);
    if (info.dtype === "BF16") {
      const bits = new Uint32Array(out.buffer, out.byteOffset, out.length);
      for (let i = 0; i < half.length; i++) bits[i] = half[i] << 16;
    } else {
      for (let i = 0; i < half.length; i++) out[i] = f16ToF32(half[i]);
    }
  }

  read(name: string): Float32Array {
    const out = new Float32Array(this.info(name).numel);
    this.readInto(name, out);
    return out;
  }
}

function readExactly(fd: number, bytes: Uint8Array, position: number, path: string, what: string): void {
  readExactlyOr(fd, bytes, position, path, what, (message) => new SafetensorsError(message));
}

const F16_SUBNORMAL_SCALE = 2 ** -24;
export function f16ToF32(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exponent = (h >> 10) & 0x1f;
  const mantissa = h & 0x3ff;
  if (exponent === 0) return sign * mantissa * F16_SUBNORMAL_SCALE;
  if (exponent === 0x1f) return mantissa === 0 ? sign * Infinity : NaN;
  return sign * (1 + mantissa / 1024) * 2 ** (exponent - 15);
}

function readHeader(fd: number, path: string): { tensors: Map<string, TensorInfo>; metadata: Record<string, string> | null } {
  const fileBytes = fstatSync(fd).size;
  if (fileBytes < 8) throw new SafetensorsError(`${path}: ${fileBytes} bytes, too short for the 8-byte header length`);
  const lengthBytes = new Uint8Array(8);
  readExactly(fd, lengthBytes, 0, path, "the header length");
  const headerLength = new DataView(lengthBytes.buffer).getBigUint64(0, true);
  if (headerLength < 2n || headerLength > BigInt(fileBytes - 8) || headerLength > BigInt(MAX_HEADER_BYTES)) {
    throw new SafetensorsError(`${path}: header length ${headerLength} is impossible for a file of ${fileBytes} bytes (it must be 2..${Math.min(fileBytes - 8, MAX_HEADER_BYTES)})`);
  }
  const headerBytes = new Uint8Array(Number(headerLength));
  readExactly(fd, headerBytes, 8, path, "the header");
  let header: unknown;
  try {
    header = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(headerBytes));
  } catch (error) {
    throw new SafetensorsError(`${path}: header is not valid UTF-8 JSON (${(error as Error).message})`);
  }
  if (!isObject(header)) throw new SafetensorsError(`${path}: header is not a JSON object`);
  const repeated = repeatedKey(new TextDecoder().decode(headerBytes));
  if (repeated !== null) {
    // JSON.parse keeps the last copy; other readers (the reference implementation among them) refuse.
    throw new SafetensorsError(`${path}: header lists the key ${JSON.stringify(repeated)} twice in one object, so which entry counts is ambiguous`);
  }
  const dataStart = 8 + Number(headerLength);
  const dataBytes = fileBytes - dataStart;
  const tensors = new Map<string, TensorInfo>();
  let metadata: Record<string, string> | null = null;
  for (const [name, entry] of Object.entries(header)) {
    if (name === "__metadata__") {
      metadata = parseMetadata(entry, path);
      continue;
    }
    tensors.set(name, parseEntry(name, entry, path, dataStart, dataBytes));
  }
  checkNoOverlap([...tensors.values()], path);
  return { tensors, metadata };
}

/**
 * The first key written twice in one object of `text` (JSON that parsed, so well-formed), or null.
 * A scan with an explicit stack: headers nested thousands deep do not recurse.
 */
function repeatedKey(text: string): string | null {
  const stack: Array<Set<string> | null> = []; // a Set per open object, null per open array
  let expectKey = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '"') {
      let end = i + 1;
      while (text[end] !== '"') end += text[end] === "\\" ? 2 : 1;
      if (expectKey) {
        const key = JSON.parse(text.slice(i, end + 1)) as string;
        const keys = stack[stack.length - 1]!;
        if (keys.has(key)) return key;
        keys.add(key);
        expectKey = false;
      }
      i = end;
    } else if (c === "{") {
      stack.push(new Set());
      expectKey = true;
    } else if (c === "[") {
      stack.push(null);
      expectKey = false;
    } else if (c === "}" || c === "]") {
      stack.pop();
      expectKey = false;
    } else if (c === ",") {
      expectKey = stack.length > 0 && stack[stack.length - 1] !== null;
    }
  }
  return null;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function parseMetadata(entry: unknown, path: string): Record<string, string> {
  if (!isObject(entry) || !Object.values(entry).every((v) => typeof v === "string")) {
    throw new SafetensorsError(`${path}: __metadata__ must map strings to strings`);
  }
  return entry as Record<string, string>;
}

function parseEntry(name: string, entry: unknown, path: string, dataStart: number, dataBytes: number): TensorInfo {
  const where = `${path}: tensor "${name}"`;
  if (!isObject(entry)) throw new SafetensorsError(`${where}: entry is not an object`);
  const { dtype, shape, data_offsets: offsets } = entry;
  if (typeof dtype !== "string") throw new SafetensorsError(`${where}: dtype is missing or not a string`);
  if (!(dtype in DTYPE_BYTES)) throw new SafetensorsError(`${where}: unknown dtype "${dtype}"`);
  if (!SUPPORTED.includes(dtype)) throw new SafetensorsError(`${where}: dtype ${dtype} is not supported (only F32, F16 and BF16 are)`);
  if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    throw new SafetensorsError(`${where}: shape ${describeJson(shape)} is not a list of non-negative integers`);
  }
  if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every((o) => Number.isSafeInteger(o) && o >= 0)) {
    throw new SafetensorsError(`${where}: data_offsets ${describeJson(offsets)} is not a pair of non-negative integers`);
  }
  const [begin, end] = offsets as [number, number];
  if (begin > end) throw new SafetensorsError(`${where}: data_offsets [${begin}, ${end}] run backwards`);
  if (end > dataBytes) {
    throw new SafetensorsError(`${where}: data_offsets [${begin}, ${end}] extend past the end of the data (${dataBytes} bytes): the file is truncated or the offsets are wrong`);
  }
  const numel = (shape as number[]).reduce((a, b) => a * b, 1);
  const expected = numel * DTYPE_BYTES[dtype];
  if (end - begin !== expected) {
    throw new SafetensorsError(`${where}: data_offsets [${begin}, ${end}] hold ${end - begin} bytes, shape [${shape.join(", ")}] of ${dtype} needs ${expected}`);
  }
  return { name, dtype: dtype as SupportedDtype, shape: shape as number[], numel, begin: dataStart + begin, end: dataStart + end };
}

function checkNoOverlap(tensors: TensorInfo[], path: string): void {
  const sorted = tensors.filter((t) => t.end > t.begin).sort((a, b) => a.begin - b.begin);
  for (let i = 1; i < sorted.length; i++) {
    if (sorted[i].begin < sorted[i - 1].end) {
      throw new SafetensorsError(`${path}: tensor "${sorted[i].name}" overlaps tensor "${sorted[i - 1].name}" in the data section`);
    }
  }
}

// ---- writer ----

export interface TensorToWrite {
  name: string;
  shape: number[];
  /** the F32 values, or a function producing them when the file is written (one tensor in memory at a time) */
  data: Float32Array | (() => Float32Array);
}

/** Writes F32 tensors to `path` atomically (temp file, fsync, rename), in the order given. */
export function writeSafetensors(path: string, tensors: TensorToWrite[], metadata: Record<string, string> = { format: "pt" }): void {
  const header: Record<string, unknown> = { __metadata__: metadata };
  let offset = 0;
  for (const t of tensors) {
    if (t.name === "__metadata__" || t.name in header) throw new SafetensorsError(`${path}: tensor name "${t.name}" is reserved or repeated`);
    const bytes = t.shape.reduce((a, b) => a * b, 1) * 4;
    header[t.name] = { dtype: "F32", shape: t.shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let json = JSON.stringify(header);
  json += " ".repeat((8 - (Buffer.byteLength(json) % 8)) % 8); // keeps the data 8-byte aligned
  const jsonBytes = new TextEncoder().encode(json);
  const length = new Uint8Array(8);
  new DataView(length.buffer).setBigUint64(0, BigInt(jsonBytes.length), true);
  writeStreamAtomic(path, (write) => {
    write(length);
    write(jsonBytes);
    for (const t of tensors) {
      const data = typeof t.data === "function" ? t.data() : t.data;
      const numel = t.shape.reduce((a, b) => a * b, 1);
      if (data.length !== numel) throw new SafetensorsError(`${path}: tensor "${t.name}" has ${data.length} values, shape [${t.shape.join(", ")}] needs ${numel}`);
      write(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
    }
  });
}

