// Lower layers never import upper ones: each folder of src/ has a rank, and a file may import only
// from its own folder or from folders of lower rank. A new folder must be given a rank here.
import { expect, test } from "bun:test";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join, relative } from "node:path";

const SRC = join(import.meta.dir, "..", "src");
const RANK: Record<string, number> = {
  base: 0, // errors, exit codes, the RNG, flag values: imports nothing of ours
  "ffi.ts": 1, // the kernel boundary
  perf: 2, optim: 2, model: 2,
  ref: 3, io: 3,
  data: 4,
  infer: 5, dist: 5,
  train: 6, serve: 6,
  fuzz: 7, // drives the readers and the trainer's resume path in-process
  cli: 8, // the commands: may use everything
};

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? files(path) : name.endsWith(".ts") ? [path] : [];
  });
}
const layerOf = (path: string) => relative(SRC, path).split("/")[0];

test("every folder of src/ has a rank", () => {
  expect(readdirSync(SRC).filter((name) => !(name in RANK))).toEqual([]);
});

test("no file imports from a layer above its own", () => {
  const violations: string[] = [];
  for (const file of files(SRC)) {
    const layer = layerOf(file);
    for (const [, spec] of readFileSync(file, "utf8").matchAll(/(?:from|import)\s*\(?\s*"(\.{1,2}\/[^"]+)"/g)) {
      const target = layerOf(join(file, "..", spec));
      if (target !== layer && RANK[target] >= RANK[layer]) violations.push(`${relative(SRC, file)} imports ${spec} (${target} is not below ${layer})`);
    }
  }
  expect(violations).toEqual([]);
});
