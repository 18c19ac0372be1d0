// bun run serve --ckpt PATH [--port 8080] [--host 127.0.0.1] [--slots 8] [options]
// An OpenAI-compatible HTTP server over the model, with continuous batching (src/serve/,
// src/infer/batch.ts) and a playground page at /. Prints the URL once it listens; SIGINT/SIGTERM
// end open streams with a final event, release the port and exit 130 (src/base/errors.ts).
import { basename } from "node:path";
import { parseArgs } from "node:util";
import { EXIT, InputError } from "../base/errors.ts";
import { maxThreads, setThreads, threadCount } from "../ffi.ts";
import { maxRowIndependentRows } from "../infer/batch.ts";
import { loadWeights } from "../io/load_weights.ts";
import { startServer } from "../serve/server.ts";
import { applyMatmulPrecisionFlag, intFlag, nonEmptyFlag, runCli, UsageError } from "./flags.ts";

const HELP = `usage: bun run serve --ckpt PATH [options]

  --ckpt PATH            weights: llm.c model file, llm.ts checkpoint, Hugging Face GPT-2 folder,
                         or a training run folder (its newest checkpoint), e.g. runs/train
  --port N               TCP port (default 8080; 0 = any free port, printed)
  --host ADDR            address to bind (default 127.0.0.1: this machine only)
  --slots N              sequences decoded together (default 8, at most ${maxRowIndependentRows()}); each holds a KV cache,
                         reserved at start (d12: 75 MB per slot)
  --queue N              requests that may wait for a slot (default 32); beyond, 503 + Retry-After
  --max-body-bytes N     request body limit (default 1048576 = 1 MiB); larger bodies get 413
  --model-name NAME      the model's id in /v1/models and responses (default: the --ckpt file name)
  --threads N            kernel threads (default LLMTS_THREADS or the core count)
  --matmul-precision P   fp32 (default) or bf16 for the prompt's matmuls (needs AVX512_BF16; the
                         decode step's few-row matmuls stay fp32, they are memory-bound)
  --help                 this text

Endpoints: POST /v1/completions, POST /v1/chat/completions, GET /v1/models, GET /health, and the
playground page at /. See docs/serving.md. Bad flags or weights exit 2; Ctrl-C exits 130.`;

interface Args {
  ckpt: string;
  port: number;
  host: string;
  slots: number;
  queue: number;
  maxBodyBytes: number;
  modelName: string | null;
  threads: number | null;
  precision: string | undefined;
}

function parse(argv: string[]): Args | null {
  const { values, positionals } = parseArgs({
    args: argv,
    options: {
      ckpt: { type: "string" }, port: { type: "string" }, host: { type: "string" }, slots: { type: "string" },
      queue: { type: "string" }, "max-body-bytes": { type: "string" }, "model-name": { type: "string" },
      threads: { type: "string" }, "matmul-precision": { type: "string" }, help: { type: "boolean", short: "h", default: false },
    },
    strict: true,
    allowPositionals: true,
  });
  if (values.help) return null;
  if (positionals.length > 0) throw new UsageError(`unexpected argument ${JSON.stringify(positionals[0])} (flags start with --)`);
  if (values.ckpt === undefined) throw new UsageError("--ckpt PATH is required");
  const optional = <T>(value: string | undefined, parse: (v: string) => T, fallback: T): T => (value === undefined ? fallback : parse(value));
  return {
    ckpt: nonEmptyFlag("ckpt", values.ckpt),
    port: optional(values.port, (v) => intFlag("port", v, 0, 65535), 8080),
    host: optional(values.host, (v) => nonEmptyFlag("host", v), "127.0.0.1"),
    slots: optional(values.slots, (v) => intFlag("slots", v, 1, maxRowIndependentRows()), 8),
    queue: optional(values.queue, (v) => intFlag("queue", v, 0, 100_000), 32),
    maxBodyBytes: optional(values["max-body-bytes"], (v) => intFlag("max-body-bytes", v, 1024, 1 << 30), 1 << 20),
    modelName: optional(values["model-name"], (v) => nonEmptyFlag("model-name", v), null),
    threads: optional(values.threads, (v) => intFlag("threads", v, 1, maxThreads()), null),
    precision: values["matmul-precision"],
  };
}

export async function main(argv: string[]): Promise<number> {
  const args = parse(argv);
  if (args === null) {
    process.stdout.write(`${HELP}\n`);
    return EXIT.done;
  }
  if (args.threads !== null) setThreads(args.threads);
  applyMatmulPrecisionFlag(args.precision);
  const weights = loadWeights(args.ckpt);
  const { config } = weights;
  const log = (line: string) => process.stderr.write(`serve: ${line}\n`);
  const modelId = args.modelName ?? basename(args.ckpt.replace(/\/+$/, ""));
  let server;
  try {
    server = startServer({ weights, modelId, host: args.host, port: args.port, slots: args.slots, queue: args.queue, maxBodyBytes: args.maxBodyBytes, log });
  } catch (error) {
    const code = (error as { code?: string }).code;
    if (code === "EADDRINUSE") throw new InputError(`--port ${args.port}: address ${args.host}:${args.port} is already in use`);
    if (code === "EADDRNOTAVAIL" || code === "ENOTFOUND" || code === "EAI_NONAME") throw new InputError(`--host ${args.host}: cannot bind to this address (${(error as Error).message})`);
    throw error;
  }
  const { L, C, NH, maxT } = config;
  process.stdout.write(
    `serve: ${modelId} (L=${L} C=${C} NH=${NH} context ${maxT}), ${args.slots} slots, ${threadCount()} threads\n` +
      `serve: listening on ${server.url.href} (playground: ${server.url.href}, API: ${server.url.href}v1)\n`,
  );
  // Wait for SIGINT/SIGTERM; a second signal exits at once.
  const signal = await new Promise<string>((resolve) => {
    for (const name of ["SIGINT", "SIGTERM"] as const) process.once(name, () => resolve(name));
  });
  for (const name of ["SIGINT", "SIGTERM"] as const) process.once(name, () => process.exit(EXIT.interrupted));
  log(`${signal}: ending open streams and releasing the port`);
  await server.stop();
  log("stopped");
  return EXIT.interrupted;
}

if (import.meta.main) await runCli("serve", () => main(process.argv.slice(2)));
