// GPT-2 model shapes. Vp is the vocabulary padded up to a multiple of 128 (50257 → 50304), as in
// llm.c: the padded rows of wte make the lm_head matmul tile cleanly and never get probability.

export interface GPT2Config {
  /** maximum sequence length (positions in wpe) */
  maxT: number;
  /** vocabulary size */
  V: number;
  /** padded vocabulary size, a multiple of 128, ≥ V */
  Vp: number;
  /** number of transformer blocks */
  L: number;
  /** number of attention heads */
  NH: number;
  /** channels */
  C: number;
}

/** GPT-2's BPE vocabulary: 50257 tokens, the last one <|endoftext|> (its bos and eos token). */
export const GPT2_VOCAB = 50257;
export const EOT_TOKEN = 50256;
export const GPT2_MAX_T = 1024;

export function padVocab(V: number, multiple = 128): number {
  return Math.ceil(V / multiple) * multiple;
}

function gpt2(L: number, NH: number, C: number, maxT = GPT2_MAX_T, V = GPT2_VOCAB): GPT2Config {
  return { maxT, V, Vp: padVocab(V), L, NH, C };
}

/** GPT-2's published sizes (dN = N layers) and smaller ones for tests and quick runs. */
export const NAMED_CONFIGS: Record<string, GPT2Config> = {
  d12: gpt2(12, 12, 768), // 124M
  d24: gpt2(24, 16, 1024), // 350M
  d36: gpt2(36, 20, 1280), // 774M
  d48: gpt2(48, 25, 1600), // 1558M
  d6: gpt2(6, 6, 384), // ~30M, the "small" config of the llm.c/PyTorch comparisons (docs/references.md)
  d4: gpt2(4, 4, 256, 256), // ~16M: quick experiments
  d2: gpt2(2, 2, 128, 256), // ~7M, most of it wte
  tiny: { maxT: 32, V: 100, Vp: 128, L: 2, NH: 2, C: 16 }, // unit tests
};

export function namedConfig(name: string): GPT2Config {
  const config = NAMED_CONFIGS[name];
  if (config === undefined) throw new Error(`unknown model "${name}"; known: ${Object.keys(NAMED_CONFIGS).join(", ")}`);
  return { ...config };
}

/** Throws with a message naming the field when a config cannot describe a GPT-2. */
export function validateConfig(config: GPT2Config, source = "config"): void {
  const limits: Record<keyof GPT2Config, number> = { maxT: 1 << 16, V: 1 << 20, Vp: 1 << 20, L: 1024, NH: 1024, C: 1 << 16 };
  for (const key of Object.keys(limits) as Array<keyof GPT2Config>) {
    const value = config[key];
    if (!Number.isInteger(value) || value < 1 || value > limits[key]) {
      throw new Error(`${source}: ${key} must be an integer from 1 to ${limits[key]}, got ${value}`);
    }
  }
  if (config.Vp < config.V) throw new Error(`${source}: Vp (${config.Vp}) is smaller than V (${config.V})`);
  if (config.C % config.NH !== 0) throw new Error(`${source}: C (${config.C}) is not a multiple of NH (${config.NH})`);
}
