// llm.c tokenizer files: header (magic, version, vocabulary size, end-of-text id), then per token
// a length byte and the bytes. No CLI reads one (prepare writes it for llm.c's sampler), so the
// check is in-process: readTokenizerFile and decodeWithVocabulary.
import { decodeWithVocabulary, encodeTokenizerFile, readTokenizerFile } from "../../data/tokenizer_file.ts";
import type { Format } from "../format.ts";
import { binaryMutators, fileMutators, type Mutator, type Seed } from "../mutate_bytes.ts";
import { tokenizerMeaning } from "../oracles.ts";
import { judgeError } from "../outcome.ts";
import { FuzzRandom } from "../random.ts";
import { concat } from "../seeds.ts";
import type { Field, FileModel, Region } from "../structure.ts";
import { fileBytes } from "../weights_check.ts";

const INPUT = "tokenizer.bin";

function vocabulary(size: number, seed: number, longest = 6): Uint8Array[] {
  const rng = new FuzzRandom(seed);
  return Array.from({ length: size }, (_, i) => (i === size - 1 && longest === 255 ? new Uint8Array(255).fill(0x61) : rng.bytes(rng.between(1, longest))));
}

function model(bytes: Uint8Array, size: number): FileModel {
  const fields: Field[] = [
    { name: "magic", offset: 0, type: "u32" }, { name: "version", offset: 4, type: "u32" }, { name: "size", offset: 8, type: "u32" }, { name: "eot", offset: 12, type: "u32" },
  ];
  const regions: Region[] = [{ name: "header", start: 0, end: 1024, kind: "header" }];
  let at = 1024;
  for (let id = 0; id < size; id++) {
    const n = bytes[at];
    regions.push({ name: `token ${id}`, start: at, end: at + 1 + n, kind: "bytes" });
    if (id < 3 || id >= size - 3 || id % 17 === 0) fields.push({ name: `token ${id} length`, offset: at, type: "u8" });
    at += 1 + n;
  }
  return { fields, regions };
}

function seed(name: string, vocab: Uint8Array[], eot: number, version: 1 | 2): Seed {
  const bytes = encodeTokenizerFile(vocab, eot);
  if (version === 1) new DataView(bytes.buffer).setUint32(4, 1, true);
  return { name, files: new Map([[INPUT, bytes]]), models: new Map([[INPUT, model(bytes, vocab.length)]]) };
}

const RECORD_EDIT: Mutator = {
  name: "token-record", weight: 2,
  apply(ctx) {
    const bytes = ctx.files.get(INPUT);
    const regions = ctx.seed.models.get(INPUT)!.regions.filter((r) => r.name.startsWith("token ") && bytes && r.end <= bytes.length);
    if (bytes === undefined || bytes === null || regions.length === 0) return null;
    const r = ctx.rng.pick(regions);
    const length = ctx.rng.pick([0, 1, 2, 254, 255, bytes[r.start] + 1, bytes[r.start] - 1]);
    const out = bytes.slice();
    out[r.start] = length & 0xff;
    if (ctx.rng.chance(0.3)) {
      // …and remove the record's bytes, so everything after it shifts.
      ctx.files.set(INPUT, concat([out.subarray(0, r.start + 1), out.subarray(r.end)]));
      return `${INPUT}: ${r.name} length byte = ${length & 0xff}, its bytes removed`;
    }
    ctx.files.set(INPUT, out);
    return `${INPUT}: ${r.name} length byte = ${length & 0xff}`;
  },
};

export const TOKENIZER: Format = {
  name: "tokenizer",
  description: "llm.c tokenizer file (in-process only: no CLI reads one)",
  seeds: async () => [
    seed("v2-100", vocabulary(100, 1), 99, 2),
    seed("v1-40", vocabulary(40, 2), 0, 1),
    seed("v2-with-255-byte-token", vocabulary(12, 3, 255), 5, 2),
  ],
  mutators: [...binaryMutators(INPUT), RECORD_EDIT, ...fileMutators(INPUT, 0.3)],
  async check(dir) {
    const path = `${dir}/${INPUT}`;
    let file;
    try {
      file = readTokenizerFile(path);
    } catch (error) {
      return judgeError(error, dir);
    }
    const meaning = tokenizerMeaning(fileBytes(path));
    if (!meaning.ok) return { verdict: "misread", detail: `accepted what cannot be read: ${meaning.why}` };
    const want = meaning.value;
    if (file.version !== want.version || file.eotToken !== want.eot) return { verdict: "misread", detail: `version/eot read as ${file.version}/${file.eotToken}, the file says ${want.version}/${want.eot}` };
    if (file.vocab.length !== want.vocab.length) return { verdict: "misread", detail: `${file.vocab.length} tokens read, the file has ${want.vocab.length}` };
    for (let id = 0; id < want.vocab.length; id++) {
      const a = file.vocab[id], b = want.vocab[id];
      if (a.length !== b.length || a.some((x, i) => x !== b[i])) return { verdict: "misread", detail: `token ${id} read differently` };
    }
    const last = want.vocab.length - 1;
    const decoded = decodeWithVocabulary(file, [0, last]);
    const expected = concat([want.vocab[0], want.vocab[last]]);
    if (decoded.length !== expected.length || decoded.some((x, i) => x !== expected[i])) return { verdict: "misread", detail: "decodeWithVocabulary([0, last]) differs" };
    try {
      decodeWithVocabulary(file, [want.vocab.length]);
      return { verdict: "misread", detail: `decodeWithVocabulary accepted id ${want.vocab.length}, outside the vocabulary` };
    } catch (error) {
      if (!(error instanceof Error) || error.name !== "TokenizerFileError") return judgeError(error, dir);
    }
    return { verdict: "accepted", detail: "" };
  },
  cli: [],
};
