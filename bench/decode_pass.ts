// bun run bench:decode-pass [--model d12] [--rows 1,8] [--passes N] [--threads N]
// Where one batched decode pass of the serving engine (src/infer/batch.ts) spends its time, kernel
// by kernel: matmuls, attention, the rest of the netlist, and the sampling of every row
// (temperature 0.8, no top-k/top-p, as bench:serve). Each row count decodes `passes` steps after a
// 16-token prompt per row (10 warm-up steps not counted), on random weights (speed does not depend
// on the values). Not in the hyperfine suite: bench:serve is the end-to-end figure; this says why.
import { parseBenchArgs } from "./args.ts";
import { defaultThreadCount, maxThreads, setThreads } from "../src/ffi.ts";
import { intFlag, intListFlag } from "../src/base/flag_values.ts";
import { BatchEngine, maxRowIndependentRows } from "../src/infer/batch.ts";
import { PackedMatmuls } from "../src/infer/packed_matmuls.ts";
import { Sampler } from "../src/infer/sampling.ts";
import { namedConfig } from "../src/model/config.ts";
import { timedKernels } from "../src/model/gpt2.ts";
import { randomWeights } from "../src/model/init.ts";

const { values } = parseBenchArgs({
  options: { model: { type: "string", default: "d12" }, rows: { type: "string", default: "1,8" }, passes: { type: "string", default: "100" }, threads: { type: "string" } },
});
const threads = setThreads(values.threads === undefined ? defaultThreadCount() : intFlag("threads", values.threads, 1, maxThreads()));
const config = namedConfig(values.model ?? "d12");
const rowCounts = intListFlag("rows", values.rows ?? "1,8", 1, maxRowIndependentRows());
const PROMPT = 16, WARM = 10;
const passes = intFlag("passes", values.passes ?? "100", 1, config.maxT - PROMPT - WARM);

const weights = randomWeights(config, 1234, { std: 0.02 });
const profile = new Map<string, number>();
const packed = new PackedMatmuls(weights, (kernels) => timedKernels(profile, kernels));
const engine = new BatchEngine(weights, Math.max(...rowCounts), { packed });
console.log(`decode pass: ${values.model} (L=${config.L} C=${config.C}), ${threads} threads, ${passes} passes per row count at positions ${PROMPT}–${PROMPT + WARM + passes - 1}`);

for (const n of rowCounts) {
  const slots = Array.from({ length: n }, (_, i) => i);
  for (const s of slots) {
    engine.slots[s].reset();
    engine.slots[s].prefill(Int32Array.from({ length: PROMPT }, (_, i) => (i * 97 + s) % config.V));
  }
  const samplers = slots.map((s) => new Sampler({ temperature: 0.8, topK: 0, topP: 1 }, s));
  let tokens = slots.map(() => 1);
  let decodeMs = 0, sampleMs = 0;
  for (let step = 0; step < WARM + passes; step++) {
    if (step === WARM) profile.clear();
    const t0 = performance.now();
    const logits = engine.decode(slots, tokens);
    const t1 = performance.now();
    tokens = slots.map((s, i) => samplers[s].sample(logits.subarray(i * config.Vp, (i + 1) * config.Vp), config.V));
    if (step >= WARM) {
      decodeMs += t1 - t0;
      sampleMs += performance.now() - t1;
    }
  }
  const per = (ms: number) => (ms / passes).toFixed(2);
  const matmulMs = profile.get("matmul_fwd") ?? 0, attentionMs = profile.get("attention_fwd") ?? 0;
  console.log(`${String(n).padStart(2)} rows: pass ${per(decodeMs + sampleMs)} ms = matmuls ${per(matmulMs)} + attention ${per(attentionMs)} + rest ${per(decodeMs - matmulMs - attentionMs)} + sampling ${per(sampleMs)}`);
}
