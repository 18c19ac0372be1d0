// A deliberately broken reader, so the harness itself is tested: a fuzz pass over it must find
// its crash (no bounds check), its hang (a kind ≥ 0x80 loops), its unclear error (kind 0 names no
// file) and its misread (trailing bytes accepted), save them, shrink them and replay them.
// Not part of a default pass (`--format selftest` only).
import { readFileSync } from "node:fs";
import { CheckpointError } from "../../io/checks.ts";
import type { Format } from "../format.ts";
import { binaryMutators, type Seed } from "../mutate_bytes.ts";
import { judgeError } from "../outcome.ts";

const INPUT = "selftest.bin";

function buggyRead(path: string): number[] {
  const bytes = readFileSync(path);
  if (bytes[0] !== 0x46 || bytes[1] !== 0x5a) throw new CheckpointError(`${path}: does not start with "FZ"`);
  const kind = bytes[2];
  if (kind === 0) throw new CheckpointError("kind 0 is not supported"); // names no file: unclear
  if (kind >= 0x80) for (;;); // hang
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const count = view.getUint32(3, true); // RangeError on a short file: crash
  const values: number[] = [];
  for (let i = 0; i < count; i++) values.push(view.getUint32(7 + 4 * i, true));
  return values; // bytes after the values are silently ignored: misread
}

function seedBytes(): Uint8Array {
  const out = new Uint8Array(7 + 4 * 8);
  out.set([0x46, 0x5a, 1]);
  const view = new DataView(out.buffer);
  view.setUint32(3, 8, true);
  for (let i = 0; i < 8; i++) view.setUint32(7 + 4 * i, i * 1000, true);
  return out;
}

export const SELFTEST: Format = {
  name: "selftest",
  description: "a deliberately broken reader (tests the harness)",
  seeds: async (): Promise<Seed[]> => [{
    name: "eight-values",
    files: new Map([[INPUT, seedBytes()]]),
    models: new Map([[INPUT, {
      fields: [{ name: "kind", offset: 2, type: "u8" }, { name: "count", offset: 3, type: "u32" }],
      regions: [{ name: "header", start: 0, end: 7, kind: "header" }, { name: "values", start: 7, end: 39, kind: "bytes" }],
    }]]),
  }],
  mutators: binaryMutators(INPUT),
  async check(dir) {
    const path = `${dir}/${INPUT}`;
    let values: number[];
    try {
      values = buggyRead(path);
    } catch (error) {
      return judgeError(error, dir);
    }
    const size = readFileSync(path).length;
    if (size !== 7 + 4 * values.length) return { verdict: "misread", detail: `accepted ${size} bytes holding ${values.length} values (${size - 7 - 4 * values.length} bytes ignored)` };
    return { verdict: "accepted", detail: "" };
  },
  cli: [],
};
