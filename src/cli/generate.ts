// bun run generate --ckpt PATH (--prompt TEXT | --prompt-tokens 1,2,3) [options]
// Samples a continuation with the KV-cache inference engine and streams it to stdout as tokens
// arrive (only whole UTF-8 characters are printed; a token may end inside one). Timing goes to
// stderr. Exit codes: 0 done, 2 bad arguments/prompt/checkpoint, 1 anything unexpected.
import { parseArgs } from "node:util";
import { parseThreadCount, setThreads, threadCount } from "../ffi.ts";
import { encode, EOT_TOKEN } from "../data/tokenizer.ts";
import { InferenceEngine, InferenceError } from "../infer/engine.ts";
import { generate } from "../infer/generate.ts";
import { SamplingError, type SamplingOptions } from "../infer/sampling.ts";
import { TokenTextStream } from "../infer/text_stream.ts";
import { CheckpointError } from "../io/llmc.ts";
import { loadWeights } from "../io/load_weights.ts";
import type { GPT2Config } from "../model/config.ts";

const HELP = `usage: bun run generate --ckpt PATH (--prompt TEXT | --prompt-tokens IDS) [options]

  --ckpt PATH            weights: llm.c model file, llm.ts checkpoint, or Hugging Face GPT-2 folder
  --prompt TEXT          prompt text (GPT-2 tokenizer; <|endoftext|> is the EOT token)
  --prompt-tokens IDS    prompt as comma-separated token ids, e.g. 50256,464
  --max-new-tokens N     tokens to generate at most (default 64)
  --temperature T        0 = greedy (argmax); default 1
  --top-k K              sample among the K most probable tokens (default 0 = off)
  --top-p P              nucleus sampling mass in (0, 1] (default 1 = off)
  --seed S               sampling seed; the same seed gives the same text (default 1337)
  --threads N            kernel threads (default LLMTS_THREADS or the core count)
  --json                 print {"prompt_tokens","tokens","text"} instead of streaming text
  --help                 this text

Prints the continuation only (not the prompt). Stops at <|endoftext|> (not printed; listed in
--json tokens), after --max-new-tokens, or when prompt + generated reaches the model's context
(maxT): a prompt of maxT tokens or more is an error. Errors exit with status 2.`;

class UsageError extends Error {}

/**
 * The engine, refusing logits that are not finite: a checkpoint can hold finite weights that
 * overflow float32 in the forward pass, and sampling from NaN would print tokens silently.
 */
class CheckedEngine extends InferenceEngine {
  constructor(config: GPT2Config, params: Float32Array, private readonly source: string) {
    super(config, params);
  }

  override prefill(tokens: ArrayLike<number>, options: { allLogits?: boolean } = {}): Float32Array {
    return this.checked(super.prefill(tokens, options));
  }

  override decode(token: number): Float32Array {
    return this.checked(super.decode(token));
  }

  private checked(logits: Float32Array): Float32Array {
    const { V, Vp } = this.config;
    const row = logits.length - Vp; // the last row (the only one without allLogits)
    for (let i = 0; i < V; i++) {
      const x = logits[row + i];
      if (x - x !== 0) throw new InferenceError(`${this.source}: the model's logits are not finite (${x} for token ${i} after ${this.position} tokens): its weights overflow float32`);
    }
    return logits;
  }
}

interface Args {
  ckpt: string;
  prompt: Int32Array;
  maxNewTokens: number;
  sampling: SamplingOptions;
  seed: number;
  threads: number | null;
  json: boolean;
}

function number(text: string | undefined, name: string, fallback: number, integer = false): number {
  if (text === undefined) return fallback;
  const value = Number(text);
  if (text.trim() === "" || !Number.isFinite(value) || (integer && !Number.isInteger(value))) throw new UsageError(`--${name} must be ${integer ? "an integer" : "a number"}, got "${text}"`);
  return value;
}

function parsePromptTokens(text: string): Int32Array {
  const parts = text.split(",").map((s) => s.trim()).filter((s) => s !== "");
  const ids = parts.map((s) => {
    if (!/^-?\d+$/.test(s)) throw new UsageError(`--prompt-tokens: "${s}" is not an integer token id`);
    return Number(s);
  });
  if (ids.some((id) => id < 0 || id > 2 ** 31 - 1)) throw new UsageError(`--prompt-tokens: token ids must be ≥ 0`);
  return Int32Array.from(ids);
}

function parse(argv: string[]): Args | null {
  const { values } = parseArgs({
    args: argv,
    options: {
      ckpt: { type: "string" }, prompt: { type: "string" }, "prompt-tokens": { type: "string" },
      "max-new-tokens": { type: "string" }, temperature: { type: "string" }, "top-k": { type: "string" },
      "top-p": { type: "string" }, seed: { type: "string" }, threads: { type: "string" },
      json: { type: "boolean", default: false }, help: { type: "boolean", default: false },
    },
    strict: true,
  });
  if (values.help) return null;
  if (values.ckpt === undefined) throw new UsageError("--ckpt PATH is required");
  if ((values.prompt === undefined) === (values["prompt-tokens"] === undefined)) throw new UsageError("give exactly one of --prompt TEXT and --prompt-tokens IDS");
  const prompt = values.prompt !== undefined ? encode(values.prompt) : parsePromptTokens(values["prompt-tokens"]!);
  const maxNewTokens = number(values["max-new-tokens"], "max-new-tokens", 64, true);
  if (maxNewTokens < 1) throw new UsageError(`--max-new-tokens must be ≥ 1, got ${maxNewTokens}`);
  return {
    ckpt: values.ckpt,
    prompt,
    maxNewTokens,
    sampling: {
      temperature: number(values.temperature, "temperature", 1),
      topK: number(values["top-k"], "top-k", 0, true),
      topP: number(values["top-p"], "top-p", 1),
    },
    seed: number(values.seed, "seed", 1337, true),
    threads: values.threads === undefined ? null : parseThreadCount(values.threads, "--threads"),
    json: values.json ?? false,
  };
}

function main(argv: string[]): number {
  let args: Args | null;
  try {
    args = parse(argv);
  } catch (error) {
    process.stderr.write(`generate: ${(error as Error).message}\n(see --help)\n`);
    return 2;
  }
  if (args === null) {
    process.stdout.write(`${HELP}\n`);
    return 0;
  }
  try {
    if (args.threads !== null) setThreads(args.threads);
    const { config, params } = loadWeights(args.ckpt);
    const engine = new CheckedEngine(config, params, args.ckpt);
    const stream = new TokenTextStream();
    const stopToken = config.V > EOT_TOKEN ? EOT_TOKEN : null;
    let text = "";
    const result = generate(engine, args.prompt, {
      maxNewTokens: args.maxNewTokens, sampling: args.sampling, seed: args.seed, stopToken,
      onToken: (token) => {
        if (token === stopToken) return;
        const piece = stream.push(token);
        text += piece;
        if (!args.json) process.stdout.write(piece);
      },
    });
    const tail = stream.flush();
    text += tail;
    if (args.json) {
      process.stdout.write(`${JSON.stringify({ prompt_tokens: Array.from(args.prompt), tokens: result.tokens, text })}\n`);
    } else {
      process.stdout.write(`${tail}\n`);
    }
    const msPerToken = result.decodeMs / result.decodeSteps;
    const speed = result.decodeSteps > 0 ? `${msPerToken.toFixed(2)} ms/token, ${(1000 / msPerToken).toFixed(1)} tokens/s` : "no decode step";
    process.stderr.write(
      `generate: ${args.prompt.length} prompt tokens, prefill ${result.prefillMs.toFixed(1)} ms; ` +
        `${result.tokens.length} new tokens, ${speed} ` +
        `(${threadCount()} threads); stopped: ${result.stopReason}\n`,
    );
    return 0;
  } catch (error) {
    if (error instanceof CheckpointError || error instanceof UsageError) {
      process.stderr.write(`generate: ${error.message}\n`);
      return 2;
    }
    if (error instanceof InferenceError || error instanceof SamplingError) {
      // The prompt against this checkpoint's shapes (context, vocabulary): name the checkpoint.
      const where = error.message.startsWith(args.ckpt) ? "" : `${args.ckpt}: `;
      process.stderr.write(`generate: ${where}${error.message}\n`);
      return 2;
    }
    throw error;
  }
}

process.exitCode = main(process.argv.slice(2));
