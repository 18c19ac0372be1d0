// The activation buffers: one allocation each, views that tile it exactly (no overlap, no gap),
// and the documented size formula.
import { describe, expect, test } from "bun:test";
import { ActivationMemory, activationFloats, scratchFloats } from "../src/model/activations.ts";
import type { GPT2Config } from "../src/model/config.ts";

function views(obj: unknown): Float32Array[] {
  if (obj instanceof Float32Array) return [obj];
  if (Array.isArray(obj)) return obj.flatMap(views);
  if (obj !== null && typeof obj === "object") return Object.values(obj).flatMap(views);
  return [];
}

function expectTiling(list: Float32Array[], total: number): void {
  const buffer = list[0].buffer;
  const ranges = list.map((v) => {
    expect(v.buffer).toBe(buffer); // one allocation
    return [v.byteOffset / 4, v.byteOffset / 4 + v.length] as const;
  }).sort((a, b) => a[0] - b[0]);
  let end = 0;
  for (const [lo, hi] of ranges) {
    expect(lo).toBe(end); // contiguous and disjoint
    end = hi;
  }
  expect(end).toBe(total);
}

describe("activation memory", () => {
  const config: GPT2Config = { maxT: 40, V: 300, Vp: 384, L: 3, NH: 3, C: 48 };
  test("forward views tile one buffer; size = BT·(L·(18C+NH+4) + 2C + 2Vp + 3)", () => {
    const B = 3, T = 7, BT = B * T;
    const memory = new ActivationMemory(config);
    const acts = memory.activations(B, T);
    const total = BT * (config.L * (18 * config.C + config.NH + 4) + 2 * config.C + 2 * config.Vp + 3);
    expect(activationFloats(config, B, T)).toBe(total);
    expectTiling(views({ ...acts, B: undefined, T: undefined }), total);
    expect(acts.layers[2].attLse.length).toBe(B * config.NH * T);
  });
  test("gradient scratch is 14·BT·C floats in one buffer", () => {
    const memory = new ActivationMemory(config);
    const s = memory.scratch(2, 5);
    expect(scratchFloats(config, 2, 5)).toBe(14 * 10 * config.C);
    expectTiling(views(s), 14 * 10 * config.C);
  });
  test("smaller shapes reuse the buffer, larger ones grow it", () => {
    const memory = new ActivationMemory(config);
    memory.activations(2, 20);
    memory.scratch(2, 20);
    const bytes = memory.bytes();
    const small = memory.activations(1, 3);
    expect(small.logits.length).toBe(3 * config.Vp);
    memory.scratch(1, 3);
    expect(memory.bytes()).toBe(bytes);
    memory.activations(4, 20);
    expect(memory.bytes()).toBeGreaterThan(bytes);
  });
});
