// bun run generate --ckpt PATH (--prompt TEXT | --prompt-tokens 1,2,3) [options]
// Samples a continuation with the KV-cache inference engine and streams it to stdout as tokens
// arrive (only whole UTF-8 characters are printed; a token may end inside one). Timing goes to
// stderr. Exit codes (src/base/errors.ts): 0 done, 2 bad arguments/prompt/checkpoint, 1 anything else.
import { parseArgs } from "node:util";
import { EXIT, InputError } from "../base/errors.ts";
import { encode } from "../data/tokenizer.ts";
import { maxThreads, setThreads, threadCount } from "../ffi.ts";
import { InferenceEngine, InferenceError } from "../infer/engine.ts";
import { PackedMatmuls } from "../infer/packed_matmuls.ts";
import { generate } from "../infer/generate.ts";
import { SamplingError, type SamplingOptions } from "../infer/sampling.ts";
import { TokenTextStream } from "../infer/text_stream.ts";
import { loadWeights } from "../io/load_weights.ts";
import { EOT_TOKEN } from "../model/config.ts";
import { applyMatmulPrecisionFlag, intFlag, intListFlag, nonEmptyFlag, numberFlag, runCli, UsageError } from "./flags.ts";

const HELP = `usage: bun run generate --ckpt PATH (--prompt TEXT | --prompt-tokens IDS) [options]

  --ckpt PATH            weights: llm.c model file, llm.ts checkpoint, Hugging Face GPT-2 folder,
                         or a training run folder (its newest checkpoint), e.g. runs/train
  --prompt TEXT          prompt text (GPT-2 tokenizer; <|endoftext|> is the EOT token)
  --prompt-tokens IDS    prompt as comma-separated token ids, e.g. 50256,464
  --max-new-tokens N     tokens to generate at most (default 64)
  --temperature T        0 = greedy (argmax); default 1
  --top-k K              sample among the K most probable tokens (default 0 = off)
  --top-p P              nucleus sampling mass in (0, 1] (default 1 = off)
  --seed S               sampling seed; the same seed gives the same text (default 1337)
  --threads N            kernel threads (default LLMTS_THREADS or the core count)
  --matmul-precision P   fp32 (default) or bf16: matmul operands rounded to bf16 (needs
                         AVX512_BF16; the one-row decode matmuls stay fp32, they are memory-bound)
  --json                 print {"prompt_tokens","tokens","text"} instead of streaming text
  --help                 this text

Prints the continuation only (not the prompt). Stops at <|endoftext|> (not printed; listed in
--json tokens), after --max-new-tokens, or when prompt + generated reaches the model's context
(maxT): a prompt of maxT tokens or more is an error. Bad input exits 2, other failures 1.`;

/**
 * The engine, refusing logits that are not finite: a checkpoint can hold finite weights that
 * overflow float32 in the forward pass, and sampling from NaN would print tokens silently.
 */
/**
 * Runs `work`; a prompt that does not fit this checkpoint (its context, its vocabulary) or logits
 * that are not finite (weights that overflow float32) are bad input naming the checkpoint.
 */
function namingCheckpoint<T>(ckpt: string, work: () => T): T {
  try {
    return work();
  } catch (error) {
    if (!(error instanceof InferenceError || error instanceof SamplingError)) throw error;
    const message = error.message.startsWith(ckpt) ? error.message : `${ckpt}: ${error.message}`;
    throw new InputError(message);
  }
}

interface Args {
  ckpt: string;
  prompt: Int32Array;
  maxNewTokens: number;
  sampling: SamplingOptions;
  seed: number;
  threads: number | null;
  precision: string | undefined;
  json: boolean;
}

function parse(argv: string[]): Args | null {
  const { values } = parseArgs({
    args: argv,
    options: {
      ckpt: { type: "string" }, prompt: { type: "string" }, "prompt-tokens": { type: "string" },
      "max-new-tokens": { type: "string" }, temperature: { type: "string" }, "top-k": { type: "string" },
      "top-p": { type: "string" }, seed: { type: "string" }, threads: { type: "string" }, "matmul-precision": { type: "string" },
      json: { type: "boolean", default: false }, help: { type: "boolean", short: "h", default: false },
    },
    strict: true,
  });
  if (values.help) return null;
  if (values.ckpt === undefined) throw new UsageError("--ckpt PATH is required");
  if ((values.prompt === undefined) === (values["prompt-tokens"] === undefined)) throw new UsageError("give exactly one of --prompt TEXT and --prompt-tokens IDS");
  const prompt = values.prompt !== undefined ? encode(values.prompt) : Int32Array.from(intListFlag("prompt-tokens", values["prompt-tokens"]!, 0, 2 ** 31 - 1));
  const optional = <T>(value: string | undefined, parse: (v: string) => T, fallback: T): T => (value === undefined ? fallback : parse(value));
  return {
    ckpt: nonEmptyFlag("ckpt", values.ckpt),
    prompt,
    maxNewTokens: optional(values["max-new-tokens"], (v) => intFlag("max-new-tokens", v, 1), 64),
    sampling: {
      temperature: optional(values.temperature, (v) => numberFlag("temperature", v, 0, 100), 1),
      topK: optional(values["top-k"], (v) => intFlag("top-k", v, 0), 0),
      topP: optional(values["top-p"], (v) => numberFlag("top-p", v, 0, 1, { minExclusive: true }), 1),
    },
    seed: optional(values.seed, (v) => intFlag("seed", v, 0, 0xffffffff), 1337),
    threads: optional(values.threads, (v) => intFlag("threads", v, 1, maxThreads()), null),
    precision: values["matmul-precision"],
    json: values.json ?? false,
  };
}

export function main(argv: string[]): number {
  const args = parse(argv);
  if (args === null) {
    process.stdout.write(`${HELP}\n`);
    return EXIT.done;
  }
  if (args.threads !== null) setThreads(args.threads);
  applyMatmulPrecisionFlag(args.precision);
  const weights = loadWeights(args.ckpt);
  const { config } = weights;
  const engine = new InferenceEngine(weights, { packed: new PackedMatmuls(weights) });
  const stream = new TokenTextStream();
  const stopToken = config.V > EOT_TOKEN ? EOT_TOKEN : null;
  let text = "";
  const result = namingCheckpoint(args.ckpt, () => generate(engine, args.prompt, {
    maxNewTokens: args.maxNewTokens, sampling: args.sampling, seed: args.seed, stopToken,
    onToken: (token) => {
      if (token === stopToken) return;
      const piece = stream.push(token);
      text += piece;
      if (!args.json) process.stdout.write(piece);
    },
  }));
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
  return EXIT.done;
}

if (import.meta.main) await runCli("generate", () => main(process.argv.slice(2)));
