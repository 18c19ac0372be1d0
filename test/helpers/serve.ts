// Test helpers for the HTTP server: a small random GPT-2 with the real vocabulary (V = 50257, so
// the GPT-2 tokenizer and text work) written as an llm.c file, and `bun run serve` started on it
// as a real process on a free port.
import { join, resolve } from "node:path";
import { writeLlmcCheckpoint } from "../../src/io/llmc.ts";
import type { GPT2Config } from "../../src/model/config.ts";
import { randomWeights } from "../../src/model/init.ts";
import type { GPT2Weights } from "../../src/model/weights.ts";

export const ROOT = resolve(import.meta.dir, "..", "..");

/** Small enough to decode in well under a millisecond per step, with a full 1024-token context. */
export const SERVE_TEST_CONFIG: GPT2Config = { maxT: 1024, V: 50257, Vp: 50304, L: 2, NH: 4, C: 64 };

export function writeServeTestModel(dir: string, seed = 7): { path: string; weights: GPT2Weights } {
  const weights = randomWeights(SERVE_TEST_CONFIG, seed, { std: 0.5 });
  const path = join(dir, "tiny.bin");
  writeLlmcCheckpoint(path, weights);
  return { path, weights };
}

export interface ServeProcess {
  url: string;
  /** the API base for the openai client */
  baseURL: string;
  proc: ReturnType<typeof Bun.spawn>;
  /** everything the server wrote to stderr so far */
  stderr(): string;
  /** SIGINT, then the exit code */
  stop(signal?: "SIGINT" | "SIGTERM"): Promise<number>;
}

export async function startServe(args: string[]): Promise<ServeProcess> {
  const proc = Bun.spawn(["bun", "src/cli/serve.ts", "--port", "0", "--threads", "2", ...args], {
    cwd: ROOT, stdout: "pipe", stderr: "pipe", env: { ...process.env, NO_COLOR: "1" },
  });
  let err = "";
  void (async () => {
    const decoder = new TextDecoder();
    for await (const chunk of proc.stderr as ReadableStream<Uint8Array>) err += decoder.decode(chunk, { stream: true });
  })();
  const reader = (proc.stdout as ReadableStream<Uint8Array>).getReader();
  const decoder = new TextDecoder();
  let out = "";
  const deadline = Date.now() + 30_000;
  while (!/listening on (http:\/\/\S+\/)/.test(out)) {
    const next = await Promise.race([reader.read(), Bun.sleep(Math.max(0, deadline - Date.now())).then(() => null)]);
    if (next === null || next.done) {
      proc.kill();
      throw new Error(`serve did not start: stdout ${JSON.stringify(out)}, stderr ${JSON.stringify(err)}`);
    }
    out += decoder.decode(next.value, { stream: true });
  }
  reader.releaseLock();
  void (async () => {
    for await (const _ of proc.stdout as ReadableStream<Uint8Array>);
  })();
  const url = /listening on (http:\/\/\S+\/)/.exec(out)![1];
  return {
    url, baseURL: `${url}v1`, proc,
    stderr: () => err,
    async stop(signal = "SIGINT") {
      proc.kill(signal);
      return await proc.exited;
    },
  };
}

/** Reads a text/event-stream body into its `data:` payloads (strings). */
export async function readEvents(response: Response): Promise<string[]> {
  const text = await response.text();
  return text.split("\n\n").filter((e) => e.startsWith("data: ")).map((e) => e.slice(6));
}

export interface Health {
  status: string;
  slots: number;
  busy: number;
  queued: number;
  decodeSteps: number;
  generatedTokens: number;
}

export async function health(url: string): Promise<Health> {
  return (await (await fetch(`${url}health`)).json()) as Health;
}
