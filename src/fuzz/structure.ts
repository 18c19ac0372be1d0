// What the structure-aware mutators know about a file: its header fields (typed, at fixed
// offsets), its regions (header, JSON, tensors, token records…) and, for files with a JSON part,
// how to find it and how to put a new JSON text back (fixing or not fixing its length field).
import type { FuzzRandom } from "./random.ts";

export type FieldType = "i32" | "u32" | "u64" | "u8";

export interface Field {
  name: string;
  offset: number;
  type: FieldType;
}

export type RegionKind = "header" | "json" | "f32" | "bf16" | "f16" | "u16" | "bytes" | "text";

export interface Region {
  name: string;
  start: number;
  end: number;
  kind: RegionKind;
}

export interface JsonPart {
  /** the JSON text's byte range in `bytes`, or null when it cannot be located any more */
  locate(bytes: Uint8Array): { start: number; end: number } | null;
  /** `bytes` with the JSON text replaced by `json` (a mutator may leave the length field stale) */
  replace(bytes: Uint8Array, json: Uint8Array, rng: FuzzRandom): { bytes: Uint8Array; note: string };
  /** JSON paths worth mutating more often than the rest ("config.C", "tensors.*.offset"…) */
  hotPaths?: string[];
}

export interface FileModel {
  fields: Field[];
  regions: Region[];
  json?: JsonPart;
}

export const FIELD_BYTES: Record<FieldType, number> = { i32: 4, u32: 4, u64: 8, u8: 1 };

export function readField(bytes: Uint8Array, field: Field): number {
  if (field.offset + FIELD_BYTES[field.type] > bytes.length) return NaN;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  switch (field.type) {
    case "i32": return view.getInt32(field.offset, true);
    case "u32": return view.getUint32(field.offset, true);
    case "u64": return Number(view.getBigUint64(field.offset, true));
    case "u8": return bytes[field.offset];
  }
}

/** Writes `value` (wrapped to the field's width) into a copy of `bytes`, which grows if needed. */
export function writeField(bytes: Uint8Array, field: Field, value: number): Uint8Array {
  const size = FIELD_BYTES[field.type];
  let out = bytes;
  if (field.offset + size > bytes.length) {
    out = new Uint8Array(field.offset + size);
    out.set(bytes);
  }
  const view = new DataView(out.buffer, out.byteOffset, out.byteLength);
  switch (field.type) {
    case "i32": view.setInt32(field.offset, value | 0, true); break;
    case "u32": view.setUint32(field.offset, value >>> 0, true); break;
    case "u64": view.setBigUint64(field.offset, BigInt.asUintN(64, BigInt(Math.trunc(value))), true); break;
    case "u8": out[field.offset] = value & 0xff; break;
  }
  return out;
}

/** A JSON part that is the whole file (config.json, one log line…). */
export const WHOLE_FILE_JSON: JsonPart = {
  locate: (bytes) => ({ start: 0, end: bytes.length }),
  replace: (_bytes, json) => ({ bytes: json, note: "" }),
};
