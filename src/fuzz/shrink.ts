// Shrinking a failing case toward its valid seed: files added by mutations are removed, files
// removed are restored, and in each changed file the differing byte ranges are put back one at a
// time (halves first when there are many); every edit that keeps the same failure is kept.
import type { CaseFiles } from "./case.ts";
import type { CheckResult } from "./outcome.ts";

/** Byte ranges [start, end) where `a` and `b` differ over their common length (gaps ≤ 4 merged). */
export function differingRanges(a: Uint8Array, b: Uint8Array): Array<[number, number]> {
  const n = Math.min(a.length, b.length);
  const out: Array<[number, number]> = [];
  for (let i = 0; i < n; i++) {
    if (a[i] === b[i]) continue;
    const last = out[out.length - 1];
    if (last !== undefined && i - last[1] <= 4) last[1] = i + 1;
    else out.push([i, i + 1]);
  }
  return out;
}

function edits(files: CaseFiles, base: CaseFiles): Array<() => CaseFiles> {
  const out: Array<() => CaseFiles> = [];
  const withFile = (name: string, bytes: Uint8Array | null | undefined) => () => {
    const next = new Map(files);
    if (bytes === undefined) next.delete(name);
    else next.set(name, bytes);
    return next;
  };
  for (const name of files.keys()) if (!base.has(name)) out.push(withFile(name, undefined));
  for (const [name, bytes] of base) if (!files.has(name)) out.push(withFile(name, bytes));
  for (const [name, bytes] of files) {
    const original = base.get(name);
    if (original === undefined) continue;
    if (bytes === null || original === null) {
      if (bytes !== original) out.push(withFile(name, original));
      continue;
    }
    if (bytes.length < original.length) {
      const longer = original.slice();
      longer.set(bytes);
      out.push(withFile(name, longer));
    } else if (bytes.length > original.length) {
      out.push(withFile(name, bytes.slice(0, original.length)));
    }
    const ranges = differingRanges(bytes, original);
    const revert = (chosen: Array<[number, number]>) => {
      const copy = bytes.slice();
      for (const [s, e] of chosen) copy.set(original.subarray(s, e), s);
      return copy;
    };
    if (ranges.length > 8) {
      const half = Math.floor(ranges.length / 2);
      out.push(withFile(name, revert(ranges.slice(0, half))), withFile(name, revert(ranges.slice(half))));
    }
    for (const range of ranges) out.push(withFile(name, revert([range])));
  }
  return out;
}

/** Differences left between `files` and `base`: files added/removed plus differing ranges and length changes. */
export function differenceCount(files: CaseFiles, base: CaseFiles): number {
  let n = 0;
  for (const name of files.keys()) if (!base.has(name)) n++;
  for (const [name, original] of base) {
    const bytes = files.get(name);
    if (bytes === undefined) n++;
    else if (bytes === null || original === null) n += bytes === original ? 0 : 1;
    else n += differingRanges(bytes, original).length + (bytes.length !== original.length ? 1 : 0);
  }
  return n;
}

/** Greedy shrink: keeps every edit after which `stillFails` holds, within `budget` evaluations. */
export async function shrinkCase(
  files: CaseFiles, base: CaseFiles, stillFails: (files: CaseFiles) => Promise<CheckResult | null>, budget: number,
): Promise<{ files: CaseFiles; result: CheckResult | null; evaluations: number }> {
  let current = files;
  let result: CheckResult | null = null;
  let evaluations = 0;
  let progress = true;
  while (progress && evaluations < budget) {
    progress = false;
    for (const edit of edits(current, base)) {
      if (evaluations >= budget) break;
      const candidate = edit();
      evaluations++;
      const r = await stillFails(candidate);
      if (r !== null) {
        current = candidate;
        result = r;
        progress = true;
        break;
      }
    }
  }
  return { files: current, result, evaluations };
}
