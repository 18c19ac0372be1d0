// bun run bench:generate [--quick] [--json] [--threads N] [--model d12]
// Inference speed of the KV-cache engine on random GPT-2 weights (seeded normal fill; speed does
// not depend on the values): prefill of a 64-token prompt, decode of N new tokens, decode ms/token
// at several context lengths (the cost should be flat apart from attention over the cache), and
// the memory bandwidth of a parallel copy measured in the same run. Decode is memory-bound: each
// token reads every weight once, so "bandwidth bound" = bytes read per token ÷ copy bandwidth.
import { parseBenchArgs } from "./args.ts";
import { defaultThreadCount, matmulForward, matmulForwardPrepacked, matmulPack, packedWeightFloats, parallelCopy, parseThreadCount, setThreads } from "../src/ffi.ts";
import { InferenceEngine } from "../src/infer/engine.ts";
import { PackedMatmuls } from "../src/infer/packed_matmuls.ts";
import { argmax } from "../src/infer/sampling.ts";
import { namedConfig } from "../src/model/config.ts";
import { randomWeights } from "../src/model/init.ts";
import { parameterCount } from "../src/model/weights.ts";
import { randomTokens } from "../test/helpers/random.ts";

const { values } = parseBenchArgs({
  options: { quick: { type: "boolean", default: false }, json: { type: "boolean", default: false }, threads: { type: "string" }, model: { type: "string", default: "d12" } },
});
const quick = values.quick ?? false;
const threads = setThreads(values.threads === undefined ? defaultThreadCount() : parseThreadCount(values.threads, "--threads"));
const config = namedConfig(values.model ?? "d12");
const { C, L, V, Vp, maxT } = config;
const PROMPT = Math.min(64, maxT - 1);
const NEW_TOKENS = Math.min(quick ? 32 : 256, maxT - PROMPT);
const log = (line: string) => (values.json ? process.stderr : process.stdout).write(`${line}\n`);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const time = (f: () => void) => {
  const start = performance.now();
  f();
  return performance.now() - start;
};

log(`generate bench: ${values.model} (L=${L} C=${C} Vp=${Vp}, ${(parameterCount(config) / 1e6).toFixed(1)}M params), ${threads} threads${quick ? ", quick" : ""}`);
const weights = randomWeights(config, 1234, { std: 0.02 });
const params = weights.params;
// As bun run generate runs: the matmul weights packed once more for few-row calls.
const packed = new PackedMatmuls(weights);
const engine = new InferenceEngine(weights, { packed });

// Copy bandwidth: 128 MiB per buffer, far beyond the 32 MiB L3; best of a few runs.
const copyFloats = 32 << 20;
const src = new Float32Array(copyFloats).fill(1), dst = new Float32Array(copyFloats);
const copyMs = Math.min(...Array.from({ length: quick ? 3 : 5 }, () => time(() => parallelCopy(dst, src))));
const copyGBs = (2 * copyFloats * 4) / (copyMs / 1000) / 1e9; // bytes read + bytes written
log(`copy bandwidth: ${copyGBs.toFixed(1)} GB/s (read + write, ${threads} threads, 128 MiB buffers)`);

// matmulForward at one row (the decode step: its weight-streaming path), on the lm_head and MLP shapes.
for (const [name, IC, OC] of [["lm_head", C, Vp], ["fc", C, 4 * C], ["fcproj", 4 * C, C]] as Array<[string, number, number]>) {
  // Each call reads a different slice of the 500 MB of weights, so the matrix is never in cache
  // (as in a real decode step, which reads every weight once).
  const slices = Math.floor(params.length / (IC * OC));
  let next = 0;
  const w = () => {
    const at = (next++ % slices) * IC * OC;
    return params.subarray(at, at + IC * OC);
  };
  const x = new Float32Array(IC).fill(0.5), out = new Float32Array(OC);
  const reps = quick ? 5 : 15;
  const mm = median(Array.from({ length: reps }, () => { const m = w(); return time(() => matmulForward(out, x, m, null, 1, IC, OC)); }));
  // The same on packed copies of three slices (3 × 154 MB for the lm_head: still out of cache).
  const copies = Array.from({ length: Math.min(3, slices) }, () => {
    const m = w(), p = new Float32Array(packedWeightFloats(IC, OC));
    matmulPack(p, m, IC, OC);
    return { m, p };
  });
  const mp = median(Array.from({ length: reps }, (_, i) => { const { m, p } = copies[i % copies.length]; return time(() => matmulForwardPrepacked(out, x, m, p, null, 1, IC, OC)); }));
  const rate = (ms: number) => ((IC * OC * 4) / ms / 1e6).toFixed(1);
  log(`  one row ${name} (${OC}×${IC}): matmulForward ${mm.toFixed(3)} ms (${rate(mm)} GB/s; the trainer's sampler), packed ${mp.toFixed(3)} ms (${rate(mp)} GB/s; generate and serve)`);
}

// Prefill: a 64-token prompt, median of a few runs after a warm-up.
const prompt = randomTokens(PROMPT, V, 99);
const prefillRuns = Array.from({ length: quick ? 3 : 5 }, () => time(() => {
  engine.reset();
  engine.prefill(prompt);
}));
const prefillMs = median(prefillRuns.slice(1));
log(`prefill ${PROMPT} tokens: ${prefillMs.toFixed(1)} ms (${((PROMPT / prefillMs) * 1000).toFixed(0)} tokens/s)`);

// Decode: greedy continuation of the prompt.
engine.reset();
let logits = engine.prefill(prompt);
for (let i = 0; i < 3; i++) engine.decode(argmax(logits, V)); // warm-up, then restart
engine.reset();
logits = engine.prefill(prompt);
const stepMs: number[] = [];
for (let i = 0; i < NEW_TOKENS; i++) stepMs.push(time(() => (logits = engine.decode(argmax(logits, V)))));
const decodeMs = stepMs.reduce((a, b) => a + b, 0);
const decodeTokensPerS = (NEW_TOKENS / decodeMs) * 1000;
// On a shared machine single steps stall when another process takes a core; the median and the
// fastest step show what the engine does when it gets the machine.
const medianStepMs = median(stepMs), bestStepMs = Math.min(...stepMs);
log(`decode ${NEW_TOKENS} tokens after the prompt: ${(decodeMs / NEW_TOKENS).toFixed(2)} ms/token, ${decodeTokensPerS.toFixed(1)} tokens/s (median step ${medianStepMs.toFixed(2)} ms, fastest ${bestStepMs.toFixed(2)} ms)`);

// Bytes one decode step reads: every weight but wpe (one row of it), plus the KV cache so far.
const weightBytes = (parameterCount(config) - maxT * C) * 4;
const cacheBytes = (position: number) => 2 * L * position * C * 4;
const boundMs = (position: number) => ((weightBytes + cacheBytes(position)) / (copyGBs * 1e9)) * 1000;
const meanPosition = PROMPT + NEW_TOKENS / 2;
const pctBound = (boundMs(meanPosition) / (decodeMs / NEW_TOKENS)) * 100;
const pctBoundMedian = (boundMs(meanPosition) / medianStepMs) * 100;
log(`bandwidth bound: ${(weightBytes / 1e6).toFixed(0)} MB of weights per token → ${boundMs(meanPosition).toFixed(2)} ms/token at ${copyGBs.toFixed(1)} GB/s; decode runs at ${pctBound.toFixed(0)}% of it (median step: ${pctBoundMedian.toFixed(0)}%)`);

// ms/token against context length: the cache position is set directly (the work does not depend
// on the cached values), then a few tokens are decoded from there.
const contexts = (quick ? [64, 512] : [64, 256, 512, 768, 1000]).filter((p) => p < maxT - 8);
const perContext: Record<string, number> = {};
for (const position of contexts) {
  engine.reset();
  engine.position = position;
  const steps = Array.from({ length: quick ? 5 : 9 }, () => time(() => engine.decode(1)));
  perContext[position] = median(steps);
  log(`  context ${String(position).padStart(4)}: ${perContext[position].toFixed(2)} ms/token (bound ${boundMs(position).toFixed(2)} ms)`);
}

if (values.json) {
  process.stdout.write(`${JSON.stringify({
    config: values.model, threads, prompt_tokens: PROMPT, new_tokens: NEW_TOKENS,
    prefill_tokens_per_s: (PROMPT / prefillMs) * 1000, prefill_ms: prefillMs,
    decode_tokens_per_s: decodeTokensPerS, decode_ms_per_token: decodeMs / NEW_TOKENS,
    decode_ms_per_token_median: medianStepMs, decode_ms_per_token_best: bestStepMs,
    pct_bandwidth_bound: pctBound, pct_bandwidth_bound_median: pctBoundMedian, copy_gb_per_s: copyGBs, decode_ms_per_token_at_context: perContext,
  })}\n`);
}
