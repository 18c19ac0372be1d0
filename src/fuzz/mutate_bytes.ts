// Binary mutations: header fields set to boundary values, truncation at region boundaries, bit
// flips, NaN/Inf written into weights, byte overwrites, insertions, deletions, region copies and
// splices with another seed. Each returns a one-line description (kept in the case's note) or null
// when it does not apply to the file as it is now.
import type { CaseFiles } from "./case.ts";
import type { FuzzRandom } from "./random.ts";
import { FIELD_BYTES, type Field, type FileModel, readField, type Region, writeField } from "./structure.ts";

/** A valid set of files a format's cases start from, with the structure of each file. */
export interface Seed {
  name: string;
  files: CaseFiles;
  models: Map<string, FileModel>;
}

export interface MutationContext {
  rng: FuzzRandom;
  /** the case's files, mutated in place */
  files: CaseFiles;
  seed: Seed;
  /** every seed of the format (splices take parts of another) */
  seeds: Seed[];
}

export interface Mutator {
  name: string;
  weight: number;
  apply(ctx: MutationContext): string | null;
}

const INT32_MAX = 2 ** 31 - 1;

/** Values a header field is set to: the classic boundaries, near misses and other fields' values. */
function fieldValues(field: Field, current: number, bytes: Uint8Array, model: FileModel, seeds: Seed[], file: string): number[] {
  const common = [0, 1, -1, current + 1, current - 1, current * 2, Math.floor(current / 2)];
  const others = model.fields.filter((f) => f !== field).map((f) => readField(bytes, f)).filter(Number.isFinite);
  const sameFieldElsewhere = seeds.flatMap((s) => {
    const b = s.files.get(file);
    const m = s.models.get(file);
    const f = m?.fields.find((x) => x.name === field.name);
    return b && f ? [readField(b, f)] : [];
  });
  switch (field.type) {
    case "u8":
      return [...common, 127, 128, 255];
    case "u64":
      return [...common, 2 ** 32, 2 ** 53, 2 ** 63, 2 ** 64 - 1, bytes.length, bytes.length - 8, bytes.length - 7, 100_000_001, ...sameFieldElsewhere];
    default:
      return [...common, INT32_MAX, -(2 ** 31), 2 ** 32 - 1, 2 ** 30, 2 ** 24, 65535, 65536, ...others, ...sameFieldElsewhere];
  }
}

function boundaries(model: FileModel | undefined, length: number): number[] {
  const out = new Set<number>([0, length - 1]);
  for (const r of model?.regions ?? []) for (const b of [r.start, r.end]) for (const d of [-1, 0, 1]) out.add(b + d);
  for (const f of model?.fields ?? []) out.add(f.offset).add(f.offset + FIELD_BYTES[f.type]);
  return [...out].filter((b) => b >= 0 && b < length).sort((a, b) => a - b);
}

function replaceFile(ctx: MutationContext, file: string, bytes: Uint8Array): void {
  ctx.files.set(file, bytes);
}

function current(ctx: MutationContext, file: string): Uint8Array | null {
  const bytes = ctx.files.get(file);
  return bytes === undefined || bytes === null ? null : bytes;
}

function floatRegions(model: FileModel | undefined): Region[] {
  return (model?.regions ?? []).filter((r) => r.kind === "f32" || r.kind === "bf16" || r.kind === "f16");
}

const F32_SPECIALS: Array<[string, number]> = [
  ["NaN", 0x7fc00000], ["-NaN", 0xffc00000], ["signalling NaN", 0x7f800001], ["+Inf", 0x7f800000], ["-Inf", 0xff800000],
  ["FLT_MAX", 0x7f7fffff], ["-FLT_MAX", 0xff7fffff], ["1e30", 0x7149f2ca], ["smallest subnormal", 0x00000001], ["-0", 0x80000000],
];
const HALF_SPECIALS: Record<"bf16" | "f16", Array<[string, number]>> = {
  bf16: [["NaN", 0x7fc0], ["+Inf", 0x7f80], ["-Inf", 0xff80], ["BF16_MAX", 0x7f7f], ["signalling NaN", 0x7f81]],
  f16: [["NaN", 0x7e00], ["+Inf", 0x7c00], ["-Inf", 0xfc00], ["F16_MAX", 0x7bff], ["signalling NaN", 0x7c01]],
};

/** The structure-aware and byte-level mutations of one file. */
export function binaryMutators(file: string, weight = 1): Mutator[] {
  const model = (ctx: MutationContext) => ctx.seed.models.get(file);
  const list: Mutator[] = [
    {
      name: "set-field", weight: 4 * weight,
      apply(ctx) {
        const bytes = current(ctx, file);
        const m = model(ctx);
        if (bytes === null || m === undefined || m.fields.length === 0) return null;
        const field = ctx.rng.pick(m.fields);
        const before = readField(bytes, field);
        const value = ctx.rng.pick(fieldValues(field, Number.isFinite(before) ? before : 0, bytes, m, ctx.seeds, file));
        replaceFile(ctx, file, writeField(bytes.slice(), field, value));
        return `${file}: header field ${field.name} (${field.type} at byte ${field.offset}) ${before} → ${value}`;
      },
    },
    {
      name: "truncate-at-boundary", weight: 3 * weight,
      apply(ctx) {
        const bytes = current(ctx, file);
        if (bytes === null || bytes.length === 0) return null;
        const at = ctx.rng.pick(boundaries(model(ctx), bytes.length));
        replaceFile(ctx, file, bytes.slice(0, at));
        return `${file}: truncated to ${at} of ${bytes.length} bytes`;
      },
    },
    {
      name: "bit-flips", weight: 3 * weight,
      apply(ctx) {
        const bytes = current(ctx, file);
        if (bytes === null || bytes.length === 0) return null;
        const out = bytes.slice();
        const n = ctx.rng.pick([1, 1, 2, 4, 8, 32]);
        const regions = model(ctx)?.regions ?? [];
        const region = regions.length > 0 && ctx.rng.chance(0.5) ? ctx.rng.pick(regions) : null;
        const lo = region ? Math.min(region.start, out.length - 1) : 0;
        const hi = region ? Math.min(region.end, out.length) : out.length;
        if (hi <= lo) return null;
        const where: number[] = [];
        for (let i = 0; i < n; i++) {
          const at = ctx.rng.between(lo, hi - 1);
          out[at] ^= 1 << ctx.rng.below(8);
          where.push(at);
        }
        replaceFile(ctx, file, out);
        return `${file}: ${n} bit flip(s)${region ? ` in ${region.name}` : ""} at bytes ${where.slice(0, 8).join(", ")}${n > 8 ? ", …" : ""}`;
      },
    },
    {
      name: "float-special", weight: 2 * weight,
      apply(ctx) {
        const bytes = current(ctx, file);
        const regions = floatRegions(model(ctx)).filter((r) => r.end <= (bytes?.length ?? 0) && r.end > r.start);
        if (bytes === null || regions.length === 0) return null;
        const region = ctx.rng.pick(regions);
        const out = bytes.slice();
        const view = new DataView(out.buffer);
        const width = region.kind === "f32" ? 4 : 2;
        const count = Math.floor((region.end - region.start) / width);
        if (count === 0) return null;
        const index = ctx.rng.below(count);
        const at = region.start + index * width;
        let label: string;
        if (region.kind === "f32") {
          const [name, bits] = ctx.rng.pick(F32_SPECIALS);
          view.setUint32(at, bits, true);
          label = name;
        } else {
          const [name, bits] = ctx.rng.pick(HALF_SPECIALS[region.kind as "bf16" | "f16"]);
          view.setUint16(at, bits, true);
          label = name;
        }
        replaceFile(ctx, file, out);
        return `${file}: ${region.name}[${index}] = ${label}`;
      },
    },
    {
      name: "overwrite-bytes", weight: 2 * weight,
      apply(ctx) {
        const bytes = current(ctx, file);
        if (bytes === null || bytes.length === 0) return null;
        const out = bytes.slice();
        const n = Math.min(out.length, ctx.rng.pick([1, 2, 4, 8, 16, 64]));
        const at = ctx.rng.below(out.length - n + 1);
        const fill = ctx.rng.pick(["random", "0x00", "0xff", "0x80"] as const);
        for (let i = 0; i < n; i++) out[at + i] = fill === "random" ? ctx.rng.u32() & 0xff : fill === "0x00" ? 0 : fill === "0xff" ? 0xff : 0x80;
        replaceFile(ctx, file, out);
        return `${file}: ${n} byte(s) at ${at} overwritten with ${fill}`;
      },
    },
    {
      name: "insert-or-delete", weight: 1.5 * weight,
      apply(ctx) {
        const bytes = current(ctx, file);
        if (bytes === null) return null;
        const at = ctx.rng.below(bytes.length + 1);
        const n = ctx.rng.pick([1, 2, 3, 4, 8, 64]);
        if (ctx.rng.chance(0.5) && bytes.length > 0) {
          const end = Math.min(bytes.length, at + n);
          const out = new Uint8Array(bytes.length - (end - at));
          out.set(bytes.subarray(0, at));
          out.set(bytes.subarray(end), at);
          replaceFile(ctx, file, out);
          return `${file}: deleted ${end - at} byte(s) at ${at}`;
        }
        const out = new Uint8Array(bytes.length + n);
        out.set(bytes.subarray(0, at));
        out.set(ctx.rng.bytes(n), at);
        out.set(bytes.subarray(at), at + n);
        replaceFile(ctx, file, out);
        return `${file}: inserted ${n} random byte(s) at ${at}`;
      },
    },
    {
      name: "extend", weight: 1 * weight,
      apply(ctx) {
        const bytes = current(ctx, file);
        if (bytes === null) return null;
        const n = ctx.rng.pick([1, 2, 3, 4, 64, 1024]);
        const out = new Uint8Array(bytes.length + n);
        out.set(bytes);
        const zeros = ctx.rng.chance(0.5);
        if (!zeros) out.set(ctx.rng.bytes(n), bytes.length);
        replaceFile(ctx, file, out);
        return `${file}: ${n} ${zeros ? "zero" : "random"} byte(s) appended`;
      },
    },
    {
      name: "copy-region", weight: 1 * weight,
      apply(ctx) {
        const bytes = current(ctx, file);
        const regions = (model(ctx)?.regions ?? []).filter((r) => r.end <= (bytes?.length ?? 0) && r.end > r.start);
        if (bytes === null || regions.length < 2) return null;
        const from = ctx.rng.pick(regions);
        const to = ctx.rng.pick(regions);
        if (from === to) return null;
        const out = bytes.slice();
        const n = Math.min(from.end - from.start, to.end - to.start);
        out.copyWithin(to.start, from.start, from.start + n);
        replaceFile(ctx, file, out);
        return `${file}: ${n} bytes of ${from.name} copied over ${to.name}`;
      },
    },
    {
      name: "splice-seed", weight: 1 * weight,
      apply(ctx) {
        const bytes = current(ctx, file);
        const others = ctx.seeds.filter((s) => s !== ctx.seed && s.files.get(file));
        if (bytes === null || others.length === 0) return null;
        const other = ctx.rng.pick(others);
        const donor = other.files.get(file)!;
        const cut = ctx.rng.pick(boundaries(model(ctx), Math.min(bytes.length, donor.length)).concat([Math.min(bytes.length, donor.length)]));
        const headFromThis = ctx.rng.chance(0.5);
        const head = (headFromThis ? bytes : donor).subarray(0, cut);
        const tail = (headFromThis ? donor : bytes).subarray(cut);
        const out = new Uint8Array(head.length + tail.length);
        out.set(head);
        out.set(tail, head.length);
        replaceFile(ctx, file, out);
        return `${file}: first ${cut} bytes from ${headFromThis ? ctx.seed.name : other.name}, the rest from ${headFromThis ? other.name : ctx.seed.name}`;
      },
    },
  ];
  return list;
}

/** File-level mutations: the file removed, emptied, or replaced by a directory. */
export function fileMutators(file: string, weight = 1): Mutator[] {
  return [
    {
      name: "file-missing", weight: 0.5 * weight,
      apply(ctx) {
        if (!ctx.files.has(file)) return null;
        ctx.files.delete(file);
        return `${file}: removed`;
      },
    },
    {
      name: "file-empty", weight: 0.5 * weight,
      apply(ctx) {
        ctx.files.set(file, new Uint8Array(0));
        return `${file}: emptied`;
      },
    },
    {
      name: "file-is-directory", weight: 0.3 * weight,
      apply(ctx) {
        ctx.files.set(file, null);
        return `${file}: replaced by a directory`;
      },
    },
  ];
}
