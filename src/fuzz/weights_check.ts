// The in-process check shared by every weights format (llm.c model files, llm.ts checkpoints,
// Hugging Face folders): read with loadWeights as the CLIs do, then compare with the independent
// decode, refuse non-finite values, and run a forward pass on a few tokens.
import { readFileSync } from "node:fs";
import { loadWeights } from "../io/load_weights.ts";
import type { GPT2Config } from "../model/config.ts";
import { GPT2 } from "../model/gpt2.ts";
import { GPT2Weights } from "../model/weights.ts";
import type { CliTarget } from "./format.ts";
import { type Expected, firstDifference, firstNonFinite } from "./oracles.ts";
import { type CheckResult, judgeError } from "./outcome.ts";

/** The tokens of every forward pass and CLI run: 0, 1, 2, … (mod V), so row 0 is token 0 at position 0. */
export const PROBE_TOKENS = 4;

/**
 * Logits of a forward pass on PROBE_TOKENS tokens: whether every logit (first V columns) is
 * finite, and whether row 0 (what `generate --prompt-tokens 0` samples from first) is.
 */
export function forwardFinite(config: GPT2Config, params: Float32Array): { all: boolean; firstRow: boolean } {
  const T = Math.min(PROBE_TOKENS, config.maxT);
  const tokens = Int32Array.from({ length: T }, (_, i) => i % config.V);
  const model = new GPT2(new GPT2Weights(config, params.slice()));
  model.forward(tokens, null, 1, T);
  const logits = model.logits();
  let all = true, firstRow = true;
  for (let t = 0; t < T; t++) {
    for (let v = 0; v < config.V; v++) {
      if (!Number.isFinite(logits[t * config.Vp + v])) {
        all = false;
        if (t === 0) firstRow = false;
        break;
      }
    }
  }
  return { all, firstRow };
}

const sameConfig = (a: GPT2Config, b: GPT2Config) => a.maxT === b.maxT && a.V === b.V && a.Vp === b.Vp && a.L === b.L && a.NH === b.NH && a.C === b.C;

/** Judges weights a reader returned against the file's meaning. */
export function judgeWeights(loaded: GPT2Weights, expected: Expected<{ config: GPT2Config; params: Float32Array }>): CheckResult {
  if (!expected.ok) return { verdict: "misread", detail: `accepted, but the file cannot be read as weights: ${expected.why}` };
  const want = expected.value;
  if (!sameConfig(loaded.config, want.config)) return { verdict: "misread", detail: `read config ${JSON.stringify(loaded.config)}, the file says ${JSON.stringify(want.config)}` };
  const diff = firstDifference(loaded.params, want.params);
  if (diff >= 0) return { verdict: "misread", detail: `parameter ${diff} read as ${loaded.params[diff]}, the file holds ${want.params[diff]} (${loaded.params.length} vs ${want.params.length} values)` };
  const bad = firstNonFinite(loaded.params);
  if (bad >= 0) return { verdict: "misread", detail: `accepted a non-finite parameter (${loaded.params[bad]} at ${bad})` };
  const finite = forwardFinite(loaded.config, loaded.params);
  const model = { V: loaded.config.V, maxT: loaded.config.maxT, finiteLogits: finite.firstRow };
  if (!finite.all) return { verdict: "nanLater", detail: "read faithfully; the forward pass overflows float32 (non-finite logits)", model };
  return { verdict: "accepted", detail: "", model };
}

/** loadWeights on `path`, judged against `meaning` (which decodes the files independently). */
export function checkWeights(dir: string, path: string, meaning: (loaded: GPT2Weights) => Expected<{ config: GPT2Config; params: Float32Array }>): CheckResult {
  let loaded: GPT2Weights;
  try {
    loaded = loadWeights(path);
  } catch (error) {
    return judgeError(error, dir);
  }
  return judgeWeights(loaded, meaning(loaded));
}

export function fileBytes(path: string): Uint8Array {
  return new Uint8Array(readFileSync(path));
}

/** The CLIs that read weights: generate, convert (both directions), train --init. */
export function weightsCliTargets(input: string): CliTarget[] {
  return [
    {
      name: "generate",
      args: (dir) => ["src/cli/generate.ts", "--ckpt", `${dir}/${input}`, "--prompt-tokens", "0", "--max-new-tokens", "3", "--threads", "1", "--json"],
      afterSuccess(run, _dir, inProcess) {
        const model = inProcess.model;
        if (model === undefined) return null;
        if (!model.finiteLogits) return { verdict: "misread", detail: "generate printed tokens from non-finite logits (a silent NaN)" };
        let tokens: unknown;
        try {
          tokens = JSON.parse(run.stdout).tokens;
        } catch {
          return { verdict: "misread", detail: `generate --json printed no JSON: ${run.stdout.slice(0, 200)}` };
        }
        const bad = Array.isArray(tokens) ? tokens.find((t) => !Number.isInteger(t) || t < 0 || t >= model.V) : "no tokens";
        return bad === undefined ? null : { verdict: "misread", detail: `generate produced token ${bad}, outside the vocabulary [0, ${model.V})` };
      },
    },
    { name: "convert-to-llmc", args: (dir) => ["src/cli/convert.ts", "--from", `${dir}/${input}`, "--to", `${dir}/converted.bin`] },
    { name: "convert-to-hf", args: (dir) => ["src/cli/convert.ts", "--from", `${dir}/${input}`, "--to", `${dir}/converted_hf`] },
    {
      name: "train-init",
      args: (dir) => [
        "src/cli/train.ts", "--init", `${dir}/${input}`, "--train-data", `${dir}/data/train.bin`, "--steps", "1", "--batch", "1", "--seq", String(PROBE_TOKENS),
        "--ckpt-dir", `${dir}/ckpt`, "--sample-tokens", "0", "--val-every", "0", "--threads", "1", "--peak-gflops", "1",
      ],
    },
  ];
}
