// llm.c model files: version 3 (fp32, read) and version 5 (bf16, which llm.ts refuses: a v5 file
// must never be taken for fp32 weights, whatever its header is mutated into).
import { llmcHeader } from "../../io/llmc.ts";
import type { GPT2Config } from "../../model/config.ts";
import type { Format } from "../format.ts";
import { binaryMutators, fileMutators, type Seed } from "../mutate_bytes.ts";
import { llmcMeaning } from "../oracles.ts";
import { concat, SEED_CONFIGS, SEED_DATA_FILE, seedParams, seedTokenData, tensorRegions, toBf16 } from "../seeds.ts";
import type { Field, FileModel } from "../structure.ts";
import { checkWeights, fileBytes, weightsCliTargets } from "../weights_check.ts";

const INPUT = "model.bin";
const HEADER_WORDS = ["magic", "version", "maxT", "V", "L", "NH", "C", "Vp"];

function model(config: GPT2Config, kind: "f32" | "bf16"): FileModel {
  const fields: Field[] = HEADER_WORDS.map((name, i) => ({ name, offset: 4 * i, type: "i32" }));
  fields.push({ name: "reserved[8]", offset: 32, type: "i32" }, { name: "reserved[255]", offset: 1020, type: "i32" });
  return { fields, regions: [{ name: "header", start: 0, end: 1024, kind: "header" }, ...tensorRegions(config, 1024, kind)] };
}

function seed(name: string, config: GPT2Config, version: 3 | 5, body: Uint8Array, kind: "f32" | "bf16"): Seed {
  const header = llmcHeader(config);
  header[1] = version;
  const files = new Map([[INPUT, concat([new Uint8Array(header.buffer), body])], [SEED_DATA_FILE, seedTokenData()]]);
  return { name, files, models: new Map([[INPUT, model(config, kind)]]) };
}

function llmcFormat(name: string, description: string, makeSeeds: () => Seed[]): Format {
  return {
    name,
    description,
    seeds: async () => makeSeeds(),
    mutators: [...binaryMutators(INPUT), ...fileMutators(INPUT, 0.3)],
    async check(dir) {
      const path = `${dir}/${INPUT}`;
      return checkWeights(dir, path, () => {
        const meaning = llmcMeaning(fileBytes(path));
        return meaning;
      });
    },
    cli: weightsCliTargets(INPUT),
  };
}

export const LLMC_FP32 = llmcFormat("llmc", "llm.c model file, version 3 (fp32)", () =>
  SEED_CONFIGS.map(({ name, config, weightsSeed }) => {
    const params = seedParams(config, weightsSeed);
    return seed(`${name}-v3`, config, 3, new Uint8Array(params.buffer), "f32");
  }),
);

export const LLMC_BF16 = llmcFormat("llmc-bf16", "llm.c model file, version 5 (bf16): refused, never misread", () => [
  ...SEED_CONFIGS.map(({ name, config, weightsSeed }) => seed(`${name}-v5`, config, 5, new Uint8Array(toBf16(seedParams(config, weightsSeed)).buffer), "bf16")),
  // A v5 header over an fp32 body: only the version tells the two apart.
  seed("tiny-v5-header-fp32-body", SEED_CONFIGS[0].config, 5, new Uint8Array(seedParams(SEED_CONFIGS[0].config, 3).buffer), "f32"),
]);
