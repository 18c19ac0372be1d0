// A short text for any parsed JSON value, for error messages. JSON.stringify and template strings
// recurse through nested arrays, so a value nested 100 000 deep (valid JSON, and JSON.parse reads
// it) would overflow the stack while the error about it is being written.

const MAX_DEPTH = 3;
const MAX_ITEMS = 6;
const MAX_CHARS = 80;

function describe(value: unknown, depth: number): string {
  if (value === null || typeof value !== "object") return JSON.stringify(value) ?? String(value);
  if (depth >= MAX_DEPTH) return Array.isArray(value) ? "[…]" : "{…}";
  if (Array.isArray(value)) {
    const items = value.slice(0, MAX_ITEMS).map((v) => describe(v, depth + 1));
    return `[${items.join(",")}${value.length > MAX_ITEMS ? ",…" : ""}]`;
  }
  const entries = Object.entries(value);
  const items = entries.slice(0, MAX_ITEMS).map(([k, v]) => `${JSON.stringify(k)}:${describe(v, depth + 1)}`);
  return `{${items.join(",")}${entries.length > MAX_ITEMS ? ",…" : ""}}`;
}

/** JSON-like text of `value`, at most 3 levels deep and about 80 characters long. */
export function describeJson(value: unknown): string {
  const text = describe(value, 0);
  return text.length > MAX_CHARS ? `${text.slice(0, MAX_CHARS - 1)}…` : text;
}
