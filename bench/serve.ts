// bun run bench:serve [--quick] [--json] [--model d12] [--threads N] [--tokens N] [--streams 1,4,8]
// Serving throughput: starts `bun run serve` on random GPT-2 weights (seeded normal fill; speed
// does not depend on the values) and measures, for each number of concurrent streaming clients,
//   aggregate_tokens_per_s   all completion tokens / wall time from the first request to the last byte
//   p50/p99_ms_per_token     gaps between consecutive stream chunks, pooled over the streams (a
//                            chunk is one token, except tokens ending inside a UTF-8 character,
//                            whose text comes with the next chunk)
//   ttft_ms                  median time to the first chunk
// and, in the same run (before and after the server), `bun run generate`'s decode speed on the
// same weights and sampling settings (temperature 0.8, no top-k/top-p), the single-stream reference. The clients are
// this process (fetch), the server another; both share the machine's cores.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { parseBenchArgs } from "./args.ts";
import { intFlag, intListFlag } from "../src/cli/flags.ts";
import { defaultThreadCount, maxThreads } from "../src/ffi.ts";
import { maxRowIndependentRows } from "../src/infer/batch.ts";
import { writeLlmcCheckpoint } from "../src/io/llmc.ts";
import { namedConfig } from "../src/model/config.ts";
import { randomWeights } from "../src/model/init.ts";
import { randomTokens } from "../test/helpers/random.ts";

const { values } = parseBenchArgs({
  options: {
    quick: { type: "boolean", default: false }, json: { type: "boolean", default: false }, model: { type: "string", default: "d12" },
    threads: { type: "string" }, tokens: { type: "string" }, streams: { type: "string" },
  },
});
const quick = values.quick ?? false;
const modelName = values.model ?? "d12";
const config = namedConfig(modelName);
const threads = values.threads === undefined ? defaultThreadCount() : intFlag("threads", values.threads, 1, maxThreads());
const PROMPT = 16;
const TOKENS = values.tokens === undefined ? (quick ? 32 : 128) : intFlag("tokens", values.tokens, 2, config.maxT - PROMPT);
const STREAMS = values.streams === undefined ? [1, 4, 8] : intListFlag("streams", values.streams, 1, maxRowIndependentRows());
const SAMPLING = { temperature: 0.8 };
const root = resolve(import.meta.dir, "..");
const log = (line: string) => (values.json ? process.stderr : process.stdout).write(`${line}\n`);
const percentile = (xs: number[], p: number) => {
  const sorted = [...xs].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
};

const dir = mkdtempSync(join(tmpdir(), "llmts-bench-serve-"));
const ckpt = join(dir, `${modelName}.bin`);
let server: ReturnType<typeof Bun.spawn> | null = null;
try {
  log(`serve bench: ${modelName} (L=${config.L} C=${config.C}), ${threads} threads, ${TOKENS} tokens per stream after a ${PROMPT}-token prompt, streams ${STREAMS.join(", ")}${quick ? ", quick" : ""}`);
  writeLlmcCheckpoint(ckpt, randomWeights(config, 1234, { std: 0.02 }));

  // The reference: bun run generate, same weights, prompt length, token count and sampling, run
  // before the server starts and again after it stops (the machine's speed drifts; their mean is
  // what the lone stream is compared with).
  const prompt = Array.from(randomTokens(PROMPT, config.V, 7));
  const runGenerate = (): number => {
    const generate = Bun.spawnSync(["bun", "src/cli/generate.ts", "--ckpt", ckpt, "--prompt-tokens", prompt.join(","), "--max-new-tokens", String(TOKENS), "--temperature", String(SAMPLING.temperature), "--seed", "1", "--threads", String(threads)], { cwd: root, stdout: "pipe", stderr: "pipe" });
    const line = generate.stderr.toString();
    const match = /([\d.]+) ms\/token, ([\d.]+) tokens\/s/.exec(line);
    if (generate.exitCode !== 0 || match === null) throw new Error(`bun run generate failed: ${line}`);
    log(`bun run generate: ${match[1]} ms/token, ${match[2]} tokens/s`);
    return Number(match[2]);
  };
  const generateBefore = runGenerate();

  server = Bun.spawn(["bun", "src/cli/serve.ts", "--ckpt", ckpt, "--port", "0", "--slots", String(Math.max(...STREAMS)), "--threads", String(threads)], { cwd: root, stdout: "pipe", stderr: "ignore" });
  const url = await serverUrl(server);

  interface StreamResult { start: number; chunks: number[]; tokens: number }
  const stream = async (seed: number, tokens: number): Promise<StreamResult> => {
    const start = performance.now();
    const body = { prompt: Array.from(randomTokens(PROMPT, config.V, 1000 + seed)), max_tokens: tokens, ...SAMPLING, seed, stream: true, stream_options: { include_usage: true } };
    const response = await fetch(`${url}v1/completions`, { method: "POST", body: JSON.stringify(body) });
    if (response.status !== 200) throw new Error(`HTTP ${response.status}: ${await response.text()}`);
    const chunks: number[] = [];
    let completionTokens = 0, buffer = "";
    const decoder = new TextDecoder();
    for await (const bytes of response.body as ReadableStream<Uint8Array>) {
      const now = performance.now();
      buffer += decoder.decode(bytes, { stream: true });
      let end: number;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const data = buffer.slice(6, end);
        buffer = buffer.slice(end + 2);
        if (data === "[DONE]") continue;
        const chunk = JSON.parse(data);
        if (chunk.error) throw new Error(chunk.error.message);
        if (chunk.usage) completionTokens = chunk.usage.completion_tokens;
        else if (chunk.choices[0]?.text) chunks.push(now);
      }
    }
    return { start, chunks, tokens: completionTokens };
  };

  await stream(0, 4); // warm-up: first-call costs stay out of the figures
  const rows = [];
  let singleResult: StreamResult | null = null;
  for (const count of STREAMS) {
    const before = await serverStats(url);
    const results = await Promise.all(Array.from({ length: count }, (_, i) => stream(i + 1, TOKENS)));
    const after = await serverStats(url);
    const passes = after.decodeSteps - before.decodeSteps;
    if (count === 1) singleResult = results[0];
    const first = Math.min(...results.map((r) => r.start));
    const last = Math.max(...results.map((r) => r.chunks[r.chunks.length - 1]));
    const total = results.reduce((sum, r) => sum + r.tokens, 0);
    const gaps = results.flatMap((r) => r.chunks.slice(1).map((t, i) => t - r.chunks[i]));
    const row = {
      bench: "serve", config: modelName, streams: count,
      aggregate_tokens_per_s: (total / (last - first)) * 1000,
      p50_ms_per_token: percentile(gaps, 50),
      p99_ms_per_token: percentile(gaps, 99),
      ttft_ms: percentile(results.map((r) => r.chunks[0] - r.start), 50),
    };
    rows.push(row);
    log(`  ${String(count).padStart(2)} streams: ${row.aggregate_tokens_per_s.toFixed(1)} tokens/s aggregate, ${row.p50_ms_per_token.toFixed(1)} ms/token p50, ${row.p99_ms_per_token.toFixed(1)} p99, first token after ${row.ttft_ms.toFixed(0)} ms; server: ${passes} decode passes of ${((after.decodeRows - before.decodeRows) / passes).toFixed(1)} rows, ${((after.decodeMs - before.decodeMs) / passes).toFixed(1)} ms each (sampling included)`);
  }
  server.kill("SIGINT");
  await server.exited;
  server = null;
  const generateAfter = runGenerate();
  const generateTokensPerS = (generateBefore + generateAfter) / 2;
  const single = rows.find((r) => r.streams === 1);
  const most = rows[rows.length - 1];
  // Decode speed of the lone stream, measured like generate's: tokens after the first / their time.
  const lone = singleResult === null ? null : ((singleResult.tokens - 1) / (singleResult.chunks[singleResult.chunks.length - 1] - singleResult.chunks[0])) * 1000;
  if (single !== undefined && lone !== null) {
    log(`single stream through the server: ${lone.toFixed(1)} tokens/s after the first token = ${((lone / generateTokensPerS) * 100).toFixed(0)}% of bun run generate's ${generateTokensPerS.toFixed(1)} (mean of ${generateBefore} and ${generateAfter})`);
    if (most !== single) log(`${most.streams} streams: ${(most.aggregate_tokens_per_s / single.aggregate_tokens_per_s).toFixed(2)}× the single-stream aggregate`);
  }
  if (values.json) {
    for (const row of rows) process.stdout.write(`${JSON.stringify(row)}\n`);
    process.stdout.write(`${JSON.stringify({
      bench: "serve_reference", config: modelName, threads, tokens_per_stream: TOKENS, prompt_tokens: PROMPT,
      generate_tokens_per_s: generateTokensPerS, generate_tokens_per_s_before: generateBefore, generate_tokens_per_s_after: generateAfter,
      single_stream_tokens_per_s: lone,
      speedup_vs_single: single === undefined ? null : most.aggregate_tokens_per_s / single.aggregate_tokens_per_s,
    })}\n`);
  }
} finally {
  if (server !== null) {
    server.kill("SIGINT");
    await server.exited;
  }
  rmSync(dir, { recursive: true, force: true });
}

interface ServerStats { decodeSteps: number; decodeRows: number; decodeMs: number }
async function serverStats(url: string): Promise<ServerStats> {
  return (await (await fetch(`${url}health`)).json()) as ServerStats;
}

async function serverUrl(proc: ReturnType<typeof Bun.spawn>): Promise<string> {
  const reader = (proc.stdout as ReadableStream<Uint8Array>).getReader();
  const decoder = new TextDecoder();
  let out = "";
  for (;;) {
    const found = /listening on (http:\/\/\S+\/)/.exec(out);
    if (found !== null) {
      reader.releaseLock();
      return found[1];
    }
    const { done, value } = await reader.read();
    if (done) throw new Error(`serve exited before listening: ${out}`);
    out += decoder.decode(value, { stream: true });
  }
}
