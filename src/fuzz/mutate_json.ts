// JSON mutations, for every file part that is JSON (safetensors and llm.ts headers, config.json,
// log lines): a value at a path set to a boundary value or another type, keys deleted, added,
// duplicated (the text holds the key twice) or swapped, values nested thousands deep, huge
// strings, invalid UTF-8 and broken tokens in the text.
import type { MutationContext, Mutator } from "./mutate_bytes.ts";
import type { FuzzRandom } from "./random.ts";
import type { JsonPart } from "./structure.ts";

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type Path = Array<string | number>;

const encoder = new TextEncoder();

export function pathText(path: Path): string {
  return path.length === 0 ? "(root)" : path.join(".");
}

/** Paths are collected this deep at most (a tree nested 200 000 deep would cost depth² memory). */
const MAX_PATH_DEPTH = 32;
const MAX_PATHS = 20000;

/** The paths in the tree, the root included (breadth first, bounded in depth and number). */
function allPaths(root: Json): Path[] {
  const out: Path[] = [];
  const queue: Array<[Json, Path]> = [[root, []]];
  for (let head = 0; head < queue.length && out.length < MAX_PATHS; head++) {
    const [value, path] = queue[head];
    out.push(path);
    if (path.length >= MAX_PATH_DEPTH) continue;
    if (Array.isArray(value)) value.forEach((v, i) => queue.push([v, [...path, i]]));
    else if (value !== null && typeof value === "object") for (const [k, v] of Object.entries(value)) queue.push([v, [...path, k]]);
  }
  return out;
}

function matches(path: Path, pattern: string): boolean {
  const parts = pattern.split(".");
  return parts.length === path.length && parts.every((p, i) => p === "*" || p === String(path[i]));
}

function getAt(root: Json, path: Path): Json {
  let node: Json = root;
  for (const key of path) node = (node as Record<string, Json>)[key as string];
  return node;
}

/** Sets the value at `path` (the root when empty); returns the new root. */
function setAt(root: Json, path: Path, value: Json): Json {
  if (path.length === 0) return value;
  const parent = getAt(root, path.slice(0, -1)) as Record<string, Json>;
  parent[path[path.length - 1] as string] = value;
  return root;
}

function deleteAt(root: Json, path: Path): boolean {
  if (path.length === 0) return false;
  const parent = getAt(root, path.slice(0, -1));
  const key = path[path.length - 1];
  if (Array.isArray(parent)) parent.splice(key as number, 1);
  else delete (parent as Record<string, Json>)[key as string];
  return true;
}

function nested(depth: number, kind: "array" | "object"): string {
  return kind === "array" ? "[".repeat(depth) + "]".repeat(depth) : '{"a":'.repeat(depth) + "1" + "}".repeat(depth);
}

/** Values a JSON value is replaced by: boundaries, wrong types, near misses of the current value. */
function interestingValues(current: Json): Json[] {
  const values: Json[] = [
    0, -1, 1, 2147483647, -2147483648, 4294967296, 2 ** 53, 2 ** 53 + 2, 1e308, -1e308, 1.5, 1e-300, 64, 65,
    "", "1", "abc", null, true, false, [], {}, [1, 2], { a: 1 },
  ];
  if (typeof current === "number") values.push(current + 1, current - 1, current * 2, -current, current + 0.5, String(current), [current]);
  if (typeof current === "string") values.push(current + "x", current.slice(0, -1), current.toUpperCase(), Number(current) || 0);
  if (Array.isArray(current)) values.push(current.slice(0, -1), [...current, ...current], current.slice().reverse(), current.length > 0 ? current[0] : 0);
  return values;
}

function choosePath(rng: FuzzRandom, paths: Path[], hot: string[] | undefined): Path {
  const hotPaths = hot === undefined ? [] : paths.filter((p) => hot.some((h) => matches(p, h)));
  return hotPaths.length > 0 && rng.chance(0.6) ? rng.pick(hotPaths) : rng.pick(paths);
}

/** A tree-level edit of `root`; returns [new text, description] or null when not applicable. */
function treeEdit(rng: FuzzRandom, root: Json, hot: string[] | undefined): [string, string] | null {
  const paths = allPaths(root);
  const kind = rng.weighted([
    { weight: 5, k: "set" }, { weight: 1.5, k: "delete" }, { weight: 1, k: "add" }, { weight: 1, k: "duplicate-key" },
    { weight: 0.5, k: "swap" }, { weight: 0.4, k: "deep" }, { weight: 0.2, k: "huge-string" },
  ]).k;
  switch (kind) {
    case "set": {
      const path = choosePath(rng, paths, hot);
      const before = getAt(root, path);
      const value = rng.pick(interestingValues(before));
      const out = setAt(root, path, value);
      return [JSON.stringify(out), `${pathText(path)} ${short(before)} → ${short(value)}`];
    }
    case "delete": {
      const path = choosePath(rng, paths.filter((p) => p.length > 0), hot);
      if (path === undefined) return null;
      deleteAt(root, path);
      return [JSON.stringify(root), `${pathText(path)} deleted`];
    }
    case "add": {
      const objects = paths.filter((p) => { const v = getAt(root, p); return v !== null && typeof v === "object" && !Array.isArray(v); });
      if (objects.length === 0) return null;
      const path = rng.pick(objects);
      const target = getAt(root, path) as Record<string, Json>;
      const keys = Object.keys(target);
      const name = rng.pick(["__proto__", "constructor", "", "extra", ...keys.map((k) => `${k}_`), ...keys.map((k) => `transformer.${k}`)]);
      const value = rng.pick(interestingValues(keys.length > 0 ? target[keys[0]] : null));
      // __proto__ only becomes an own key when it is in the text, so add it textually.
      const marker = "\u0001added\u0001";
      target[marker] = value;
      return [JSON.stringify(root).replace(JSON.stringify(marker), JSON.stringify(name)), `${pathText([...path, name])} added = ${short(value)}`];
    }
    case "duplicate-key": {
      const objects = paths.filter((p) => { const v = getAt(root, p); return v !== null && typeof v === "object" && !Array.isArray(v) && Object.keys(v).length > 0; });
      if (objects.length === 0) return null;
      const path = choosePath(rng, objects, undefined);
      const target = getAt(root, path) as Record<string, Json>;
      const key = rng.pick(Object.keys(target));
      const value = rng.chance(0.5) ? target[key] : rng.pick(interestingValues(target[key]));
      const marker = "\u0001duplicate\u0001";
      const first = rng.chance(0.5);
      const rebuilt: Record<string, Json> = first ? { [marker]: value, ...target } : { ...target, [marker]: value };
      const out = setAt(root, path, rebuilt);
      return [JSON.stringify(out).replace(JSON.stringify(marker), JSON.stringify(key)), `${pathText([...path, key])} appears twice (${first ? "first" : "second"} copy = ${short(value)})`];
    }
    case "swap": {
      const leaves = paths.filter((p) => p.length > 0);
      if (leaves.length < 2) return null;
      const a = rng.pick(leaves);
      const b = rng.pick(leaves);
      if (pathText(a).startsWith(pathText(b)) || pathText(b).startsWith(pathText(a))) return null;
      const va = getAt(root, a), vb = getAt(root, b);
      setAt(root, a, vb);
      setAt(root, b, va);
      return [JSON.stringify(root), `${pathText(a)} and ${pathText(b)} swapped`];
    }
    case "deep": {
      const path = choosePath(rng, paths, hot);
      const depth = rng.pick([64, 1000, 20000, 200000]);
      const kindOf = rng.pick(["array", "object"] as const);
      const marker = "\u0001deep\u0001";
      const out = setAt(root, path, marker);
      return [JSON.stringify(out).replace(JSON.stringify(marker), nested(depth, kindOf)), `${pathText(path)} = ${kindOf}s nested ${depth} deep`];
    }
    case "huge-string": {
      const path = choosePath(rng, paths, hot);
      const out = setAt(root, path, "x".repeat(rng.pick([1000, 100_000])));
      return [JSON.stringify(out), `${pathText(path)} = a huge string`];
    }
  }
  return null;
}

function short(value: Json | undefined): string {
  const text = JSON.stringify(value) ?? "undefined";
  return text.length > 40 ? `${text.slice(0, 37)}…` : text;
}

const BAD_UTF8: Array<[string, number[]]> = [
  ["0xff", [0xff]], ["overlong NUL", [0xc0, 0x80]], ["lone surrogate", [0xed, 0xa0, 0x80]], ["cut 3-byte sequence", [0xe2, 0x82]], ["0xfe 0xff", [0xfe, 0xff]],
];
const TOKENS = ["NaN", "Infinity", "-Infinity", "1e999", "-0", "0x10", "01", "undefined", ",", "]", "}", "{", "[", '"', "\\", "\u0000", "//", "1_0"];

/** A text-level edit: invalid UTF-8, a broken token, a cut. */
function textEdit(rng: FuzzRandom, text: Uint8Array): [Uint8Array, string] {
  const at = rng.below(text.length + 1);
  const kind = rng.weighted([{ weight: 2, k: "utf8" }, { weight: 2, k: "token" }, { weight: 1, k: "number" }, { weight: 1, k: "cut" }, { weight: 0.5, k: "root" }]).k;
  const splice = (insert: Uint8Array, removeWanted = 0): Uint8Array => {
    const remove = Math.min(removeWanted, text.length - at);
    const out = new Uint8Array(text.length + insert.length - remove);
    out.set(text.subarray(0, at));
    out.set(insert, at);
    out.set(text.subarray(at + remove), at + insert.length);
    return out;
  };
  switch (kind) {
    case "utf8": {
      // Inside a string is the interesting place: after an opening quote when there is one.
      let where = at;
      const quotes: number[] = [];
      for (let i = 0; i < text.length; i++) if (text[i] === 0x22) quotes.push(i + 1);
      if (quotes.length > 0 && rng.chance(0.7)) where = rng.pick(quotes);
      const [name, bytes] = rng.pick(BAD_UTF8);
      const out = new Uint8Array(text.length + bytes.length);
      out.set(text.subarray(0, where));
      out.set(bytes, where);
      out.set(text.subarray(where), where + bytes.length);
      return [out, `invalid UTF-8 (${name}) at byte ${where} of the JSON`];
    }
    case "token": {
      const token = rng.pick(TOKENS);
      return [splice(encoder.encode(token), rng.chance(0.5) ? 1 : 0), `${JSON.stringify(token)} written at byte ${at} of the JSON`];
    }
    case "number": {
      const s = new TextDecoder().decode(text);
      const numbers = [...s.matchAll(/-?\d+(\.\d+)?([eE][-+]?\d+)?/g)];
      if (numbers.length === 0) return [splice(encoder.encode("NaN")), `NaN written at byte ${at} of the JSON`];
      const m = rng.pick(numbers);
      const replacement = rng.pick(["NaN", "Infinity", "1e999", "-0", "0x10", "01", "1.0", "9007199254740993", "-1", "2147483648"]);
      const out = s.slice(0, m.index) + replacement + s.slice(m.index! + m[0].length);
      return [encoder.encode(out), `number ${m[0]} at char ${m.index} → ${replacement}`];
    }
    case "cut":
      return [text.slice(0, at), `cut at byte ${at} of ${text.length}`];
    case "root": {
      const root = rng.pick(["null", "[]", "1", '"x"', "true", "", " ", "{}"]);
      return [encoder.encode(root), `replaced by ${JSON.stringify(root)}`];
    }
  }
  return [text, "nothing"];
}

/** Mutations of the JSON part of `file` (located and put back by `part`). */
export function jsonMutators(file: string, part: (ctx: MutationContext) => JsonPart | undefined, weight = 1): Mutator[] {
  const apply = (textLevel: boolean) => (ctx: MutationContext): string | null => {
    const bytes = ctx.files.get(file);
    const json = part(ctx);
    if (bytes === undefined || bytes === null || json === undefined) return null;
    const where = json.locate(bytes);
    if (where === null) return null;
    const text = bytes.subarray(where.start, where.end);
    let edited: Uint8Array;
    let description: string;
    let root: Json | undefined;
    if (!textLevel) {
      try {
        root = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(text));
      } catch {
        root = undefined; // already broken by an earlier mutation: edit the text instead
      }
    }
    let tree: [string, string] | null = null;
    try {
      tree = root === undefined ? null : treeEdit(ctx.rng, root, json.hotPaths);
    } catch {
      tree = null; // a tree nested too deep to walk or serialise: edit the text instead
    }
    if (tree !== null) {
      edited = encoder.encode(tree[0]);
      description = tree[1];
    } else {
      [edited, description] = textEdit(ctx.rng, text);
    }
    const { bytes: out, note } = json.replace(bytes, edited, ctx.rng);
    ctx.files.set(file, out);
    return `${file}: JSON ${description}${note ? ` (${note})` : ""}`;
  };
  return [
    { name: "json-tree", weight: 6 * weight, apply: apply(false) },
    { name: "json-text", weight: 2 * weight, apply: apply(true) },
  ];
}
