// How much of the gradient reduction a backward pass can hide, before the trainer has hooks:
//   mpirun --allow-run-as-root -np 2 -x NO_COLOR=1 -x LLMTS_THREADS=1 bun bench/mpi_overlap.ts [--model d12] [--B 2] [--T 64] [--steps 3] [--json]
// Each rank runs the matmul work of a backward pass of the model at B×T per rank (lm_head, then
// per layer, last to first: fcproj, fc, attproj, qkv — weight and input gradients), on the real
// gradient buffer in llm.c's order, and readies each layer's 12 slices as soon as its matmuls are
// done (wte and wpe right after the lm_head, as in docs/distributed.md's wte scheme), calling
// progress() between kernels. Attention, layernorm and GELU are left out (a few % of the flops),
// so the window is slightly shorter than a real backward. Prints, per ZeRO stage, the backward
// compute time, the time with reductions in flight, and the part left exposed (time spent in the
// reducer, including waitAll), plus ZeRO-1's parameter all-gather.
import { parseBenchArgs } from "./args.ts";
import { startDistributed } from "../src/dist/distributed.ts";
import { createDataParallelOptimizer, type ZeroStage } from "../src/dist/zero.ts";
import { matmulBackwardInput, matmulBackwardWeight } from "../src/ffi.ts";
import { namedConfig } from "../src/model/config.ts";
import { PARAMETER_NAMES, parameterShapes } from "../src/model/weights.ts";

const { values } = parseBenchArgs({ options: { model: { type: "string", default: "d12" }, B: { type: "string", default: "2" }, T: { type: "string", default: "64" }, steps: { type: "string", default: "3" }, json: { type: "boolean", default: false } } });
const dist = startDistributed();
if (dist === null) {
  console.error("bench/mpi_overlap.ts runs under mpirun: mpirun --allow-run-as-root -np 2 -x NO_COLOR=1 -x LLMTS_THREADS=1 bun bench/mpi_overlap.ts");
  process.exit(2);
}
const config = namedConfig(values.model!);
const B = Number(values.B), T = Number(values.T), steps = Number(values.steps);
const BT = B * T;
const { C, L, Vp } = config;
const shapes = parameterShapes(config);

// Offsets of the 16 tensors in the flat vector; a layer's slice of a stacked tensor is its l-th block.
const offsets = new Map<string, { at: number; perLayer: number }>();
let P = 0;
for (const name of PARAMETER_NAMES) {
  const n = shapes[name].reduce((a, b) => a * b, 1);
  const stacked = !["wte", "wpe", "lnfw", "lnfb"].includes(name); // (L, …): one block per layer
  offsets.set(name, { at: P, perLayer: stacked ? n / L : n });
  P += n;
}
const layerSlices = (l: number): Array<[number, number]> =>
  PARAMETER_NAMES.filter((n) => !["wte", "wpe", "lnfw", "lnfb"].includes(n)).map((n) => {
    const { at, perLayer } = offsets.get(n)!;
    return [at + l * perLayer, at + (l + 1) * perLayer];
  });

const grads = new Float32Array(P).fill(1e-3);
const params = new Float32Array(P).fill(0.01);
const weights = new Float32Array(Math.max(Vp * C, 4 * C * C)).fill(0.01);
const act = new Float32Array(BT * 4 * C).fill(0.5);
const dact = new Float32Array(BT * Math.max(Vp, 4 * C)).fill(0.1);
const dinp = new Float32Array(BT * 4 * C);

/** dW += doutᵀ·inp and dX += dout·W for one linear layer, progressing MPI between the two. */
function linearBackward(dweight: Float32Array, inC: number, outC: number, progress: () => void): void {
  matmulBackwardWeight(dweight, null, dact.subarray(0, BT * outC), act.subarray(0, BT * inC), BT, inC, outC);
  progress();
  matmulBackwardInput(dinp.subarray(0, BT * inC), dact.subarray(0, BT * outC), weights.subarray(0, outC * inC), BT, inC, outC);
  progress();
}

const rows: Array<Record<string, number | string>> = [];
for (const zero of [0, 1] as ZeroStage[]) {
  const opt = createDataParallelOptimizer(dist, grads, {}, zero);
  const r = opt.reducer;
  const progress = () => r.progress();
  for (let step = 0; step <= steps; step++) {
    dist.barrier("step start");
    const started = performance.now();
    const wte = offsets.get("wte")!.at;
    linearBackward(grads.subarray(wte, wte + Vp * C), C, Vp, progress); // lm_head (weights tied to wte)
    r.ready(wte, offsets.get("ln1w")!.at); // wte and wpe (the encoder's rows would come through EmbeddingGradientExchange)
    r.ready(offsets.get("lnfw")!.at, P); // lnf
    for (let l = L - 1; l >= 0; l--) {
      const slice = (name: string) => {
        const { at, perLayer } = offsets.get(name)!;
        return grads.subarray(at + l * perLayer, at + (l + 1) * perLayer);
      };
      linearBackward(slice("fcprojw"), 4 * C, C, progress);
      linearBackward(slice("fcw"), C, 4 * C, progress);
      linearBackward(slice("attprojw"), C, C, progress);
      linearBackward(slice("qkvw"), C, 3 * C, progress);
      for (const [a, b] of layerSlices(l)) r.ready(a, b);
    }
    const computed = performance.now();
    const times = r.waitAll();
    const reduced = performance.now();
    opt.update(params, 1e-4);
    const updated = performance.now();
    grads.fill(1e-3);
    if (step === 0) continue; // warm-up
    rows.push({
      bench: "mpi_overlap", model: values.model!, ranks: dist.size, zero, B, T,
      backward_ms: +(computed - started - times.exposedMs + (reduced - computed)).toFixed(1),
      comm_ms: +times.ms.toFixed(1), comm_exposed_ms: +times.exposedMs.toFixed(1), wait_all_ms: +(reduced - computed).toFixed(1),
      update_ms: +(updated - reduced).toFixed(1), allgather_ms: +opt.lastUpdateComm.ms.toFixed(1),
    });
  }
}
if (dist.isRoot) {
  if (values.json) for (const row of rows) console.log(JSON.stringify(row));
  else {
    console.log(`${values.model} B=${B} T=${T} per rank, ${dist.size} ranks; ms: backward compute, reductions in flight, exposed (of which in waitAll), update (of which all-gather)`);
    for (const x of rows) console.log(`ZeRO-${x.zero}  backward ${x.backward_ms}  comm ${x.comm_ms}  exposed ${x.comm_exposed_ms} (waitAll ${x.wait_all_ms})  update ${x.update_ms} (all-gather ${x.allgather_ms})`);
  }
}
dist.finalize();
