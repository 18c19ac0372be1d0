// The llm.ts checkpoint written with its AdamW moments as a stream (a data-parallel run's rank 0
// receiving every rank's shard in turn): the same bytes as from whole arrays, and a stream that
// gives the wrong number of values is refused with no file left behind.
import { afterAll, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CheckpointError } from "../src/io/checks.ts";
import { type MomentStream, readLlmtsCheckpoint, writeLlmtsCheckpoint } from "../src/io/llmts_checkpoint.ts";
import { namedConfig } from "../src/model/config.ts";
import { GPT2Weights, parameterCount } from "../src/model/weights.ts";
import { randomF32 } from "./helpers/random.ts";

const dir = mkdtempSync(join(tmpdir(), "llmts-ckpt-stream-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const config = namedConfig("tiny");
const count = parameterCount(config);
const weights = new GPT2Weights(config, randomF32(count, 1));
const m = randomF32(count, 2, 0.01);
const v = randomF32(count, 3, 0.001).map(Math.abs);
const state = { loader: { position: 7 } };

/** The moments in uneven chunks through one reused buffer, as rank 0 receives them. */
function chunked(chunk: number, total = count): MomentStream {
  const buffer = new Float32Array(chunk);
  return (which, emit) => {
    const source = which === "m" ? m : v;
    for (let at = 0; at < total; at += chunk) {
      const n = Math.min(chunk, total - at);
      buffer.set(source.subarray(at, at + n));
      emit(buffer.subarray(0, n));
    }
  };
}

describe("llm.ts checkpoint with streamed moments", () => {
  test("the same bytes as from whole arrays, for any chunking", () => {
    const whole = join(dir, "whole.llmts");
    writeLlmtsCheckpoint(whole, { weights, m, v, step: 5, state });
    for (const chunk of [1000, 4097, count]) {
      const streamed = join(dir, `streamed_${chunk}.llmts`);
      writeLlmtsCheckpoint(streamed, { weights, moments: chunked(chunk), step: 5, state });
      expect(Buffer.from(readFileSync(streamed)).equals(Buffer.from(readFileSync(whole)))).toBe(true);
    }
    const back = readLlmtsCheckpoint(join(dir, "streamed_1000.llmts"));
    expect(Buffer.from(back.v!.buffer).equals(Buffer.from(v.buffer))).toBe(true);
  });

  test("a stream with too few or too many values is refused, and no file is left", () => {
    for (const [name, stream, message] of [
      ["short", chunked(1000, count - 1), /adam_m stream gave \d+ values, the config needs \d+/],
      ["long", chunked(1000, count + 5), /adam_m stream gave more than the \d+ values the config needs/],
    ] as const) {
      const path = join(dir, `${name}.llmts`);
      expect(() => writeLlmtsCheckpoint(path, { weights, moments: stream, step: 5, state })).toThrow(message);
      expect(existsSync(path)).toBe(false);
    }
    expect(readdirSync(dir).filter((f) => f.endsWith(".tmp"))).toEqual([]);
    expect(() => writeLlmtsCheckpoint(join(dir, "both.llmts"), { weights, m, v, moments: chunked(1000), step: 5, state })).toThrow(CheckpointError);
  });
});
