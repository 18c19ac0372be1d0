// The batch engine (src/infer/batch.ts): several sequences decoded in one pass, each against its
// own KV cache at its own position.
//   - against the independent float64 GPT-2 forward (src/ref/gpt2.ts), every sequence at every
//     step (tolerance argued in test/generate.test.ts: 1e-4 + 1e-4·|logit|);
//   - bit for bit against the single-sequence engine: a sequence's logits must not depend on how
//     many other sequences share the pass, or which, or when they joined. This is the property
//     behind "greedy results do not depend on what else is in the batch".
import { describe, expect, test } from "bun:test";
import { setThreads } from "../src/ffi.ts";
import { BatchEngine } from "../src/infer/batch.ts";
import { PackedMatmuls } from "../src/infer/packed_matmuls.ts";
import { InferenceEngine, InferenceError } from "../src/infer/engine.ts";
import type { GPT2Config } from "../src/model/config.ts";
import { randomWeights } from "../src/model/init.ts";
import { gpt2ForwardRef } from "../src/ref/gpt2.ts";
import { randomTokens, worstRatio } from "./helpers/random.ts";

const ATOL = 1e-4, RTOL = 1e-4;
const CONFIG: GPT2Config = { maxT: 40, V: 100, Vp: 128, L: 2, NH: 4, C: 64 };
const weights = randomWeights(CONFIG, 5, { std: 0.3 });
const { V, Vp, maxT } = CONFIG;

/** Sequence s: a prompt of 1 + 3s tokens followed by forced tokens up to `length`. */
const sequences = Array.from({ length: 8 }, (_, s) => ({ tokens: randomTokens(maxT, V, 100 + s), prompt: 1 + 3 * s }));

describe("BatchEngine", () => {
  test("every sequence of a batch matches the float64 reference at every step", () => {
    const batch = new BatchEngine(weights, 4);
    const chosen = sequences.slice(0, 4);
    const refs = chosen.map((s) => gpt2ForwardRef(weights, s.tokens));
    const got = chosen.map(() => new Float32Array(maxT * V));
    chosen.forEach((s, slot) => {
      const logits = batch.slots[slot].prefill(s.tokens.subarray(0, s.prompt));
      got[slot].set(logits.subarray(0, V), (s.prompt - 1) * V);
    });
    // Decode until every sequence is full (the shorter prompts leave the batch last).
    for (;;) {
      const rows = chosen.map((s, slot) => ({ slot, pos: batch.slots[slot].position })).filter((r) => r.pos < maxT);
      if (rows.length === 0) break;
      const logits = batch.decode(rows.map((r) => r.slot), rows.map((r) => chosen[r.slot].tokens[r.pos]));
      rows.forEach((r, i) => got[r.slot].set(logits.subarray(i * Vp, i * Vp + V), r.pos * V));
    }
    chosen.forEach((s, slot) => {
      const from = (s.prompt - 1) * V;
      expect(worstRatio(got[slot].subarray(from), refs[slot].subarray(from), ATOL, RTOL)).toBeLessThanOrEqual(1);
    });
  });

  for (const threads of [1, 2]) {
    test(`${threads} threads: a sequence's logits are bit-identical alone, in the single engine, and among 0–7 others joining and leaving`, () => {
      setThreads(threads);
      const target = sequences[0];
      const steps = 24;
      // The single-sequence engine on the same packed weights (as bun run generate runs): prefill,
      // then one decode per forced token.
      const single = new InferenceEngine(weights, { packed: new PackedMatmuls(weights) });
      const want: Float32Array[] = [single.prefill(target.tokens.subarray(0, target.prompt)).slice()];
      for (let t = target.prompt; t < target.prompt + steps; t++) want.push(single.decode(target.tokens[t]).slice());

      for (const others of [0, 1, 3, 7]) {
        const batch = new BatchEngine(weights, 8);
        const got: Float32Array[] = [batch.slots[0].prefill(target.tokens.subarray(0, target.prompt)).slice()];
        // Others join at staggered steps and leave when they fill up (different prompt lengths).
        const joinAt = (o: number) => (o * 3) % 7;
        const active = new Set<number>();
        for (let step = 0; step < steps; step++) {
          for (let o = 1; o <= others; o++) {
            if (joinAt(o) === step) {
              batch.slots[o].reset();
              batch.slots[o].prefill(sequences[o].tokens.subarray(0, sequences[o].prompt));
              active.add(o);
            }
          }
          for (const o of active) if (batch.slots[o].position >= maxT) active.delete(o);
          // Target row placed among the others at a position that varies with the step.
          const ids = [...active];
          ids.splice(step % (ids.length + 1), 0, 0);
          const logits = batch.decode(ids, ids.map((slot) => sequences[slot].tokens[batch.slots[slot].position]));
          const row = ids.indexOf(0);
          got.push(logits.slice(row * Vp, (row + 1) * Vp));
        }
        for (let i = 0; i < want.length; i++) {
          const same = want[i].every((x, j) => Object.is(x, got[i][j]));
          expect(`${others} others, step ${i}: ${same ? "identical" : "differs"}`).toBe(`${others} others, step ${i}: identical`);
        }
      }
      setThreads(2);
    });
  }

  test("bad decode rows are refused with a message naming the row", () => {
    const batch = new BatchEngine(weights, 2);
    batch.slots[0].prefill([1, 2]);
    batch.slots[1].prefill([3]);
    const refuse = (f: () => unknown, message: RegExp) => expect(f).toThrow(message);
    refuse(() => batch.decode([], []), /1 to 2 rows/);
    refuse(() => batch.decode([0, 1, 0], [1, 1, 1]), /1 to 2 rows/);
    refuse(() => batch.decode([0, 0], [1, 1]), /slot 0 is listed twice/);
    refuse(() => batch.decode([2], [1]), /slot 2 does not exist/);
    refuse(() => batch.decode([0], [V]), /outside the vocabulary/);
    refuse(() => batch.decode([0], [1, 2]), /1 slots but 2 tokens/);
    batch.slots[1].position = maxT;
    refuse(() => batch.decode([1], [1]), /slot 1 is full/);
    expect(() => new BatchEngine(weights, 0)).toThrow(InferenceError);
  });
});
