// GPT-2 model tests: against PyTorch (fixture from scripts/gpt2_fixture.ts), finite differences,
// determinism, gradient accumulation, shape changes and input validation.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { bf16Unavailable, defaultThreadCount, setMatmulPrecision, setThreads } from "../src/ffi.ts";
import { readLlmcCheckpoint } from "../src/io/llmc.ts";
import type { GPT2Config } from "../src/model/config.ts";
import { GPT2 } from "../src/model/gpt2.ts";
import { randomWeights } from "../src/model/init.ts";
import { GPT2Weights, PARAMETER_NAMES, parameterLayout } from "../src/model/weights.ts";
import { AdamW, gradNorm } from "../src/optim/adamw.ts";
import { FIXTURE_WEIGHTS } from "../scripts/gpt2_fixture.ts";
import { FIXTURE_DIR, readTorchFixture } from "./helpers/fixture.ts";
import { randomTokens, rng } from "./helpers/random.ts";

const fixture = readTorchFixture();
const loadFixtureModel = () => new GPT2(readLlmcCheckpoint(join(FIXTURE_DIR, "gpt2_small.bin")));

/** ‖got − want‖₂ / ‖want‖₂ over [lo, hi). */
function relativeError(got: ArrayLike<number>, want: ArrayLike<number>, lo = 0, hi = want.length): number {
  let num = 0, den = 0;
  for (let i = lo; i < hi; i++) {
    num += (got[i] - want[i]) ** 2;
    den += want[i] ** 2;
  }
  return Math.sqrt(num / den);
}

/** max |got − want| / max |want| over [lo, hi): an element-wise check scaled to the tensor. */
function maxErrorOverMax(got: ArrayLike<number>, want: ArrayLike<number>, lo = 0, hi = want.length): number {
  let err = 0, scale = 0;
  for (let i = lo; i < hi; i++) {
    if (!Number.isFinite(got[i])) return Infinity;
    err = Math.max(err, Math.abs(got[i] - want[i]));
    scale = Math.max(scale, Math.abs(want[i]));
  }
  return err / scale;
}

// Tolerances against PyTorch in float64. PyTorch's own float32 run sits at 2e-7–6e-7 (norm-wise)
// and up to ~1e-6 (max error / max) from float64 on every tensor of this fixture; our kernels sum in
// other orders (blocked, multi-threaded, FMA), which changes the rounding but not its size. A
// correct float32 implementation therefore lands around 1e-6; we allow 10× that. A real bug (a wrong
// index, a missing term, a padded column in the softmax, a wrong scale) gives errors of 1e-3 or more.
const TOL_NORM = 1e-5;
const TOL_MAX = 2e-5;
// Losses: PyTorch float32 is within 1.4e-7 (relative) of float64 over the 10 AdamW steps of this
// fixture, and llm.c vs PyTorch agree to 3e-7 (docs/references.md); 2e-6 leaves ~10× headroom.
// (One AdamW step moves the loss by ~1.7e-2 relative here, so a wrong update rule fails at step 1.)
const TOL_LOSS = 2e-6;

describe("GPT-2 vs PyTorch (fixture: V=300 Vp=384 L=2 NH=3 C=48, B=4 T=16 (B·T = 64: the packed-GEMM forward), non-zero padded wte rows)", () => {
  const model = loadFixtureModel();
  const { B, T, config } = fixture;
  let loss = NaN;
  beforeAll(() => {
    loss = model.forward(fixture.inputs, fixture.targets, B, T);
    model.zeroGrad();
    model.backward();
  });

  test("loss", () => {
    expect(Math.abs(loss - fixture.loss64) / fixture.loss64).toBeLessThan(TOL_LOSS);
  });

  test("logits, all Vp columns (the padded ones are wte's padded rows times lnf)", () => {
    const logits = model.logits();
    expect(logits.length).toBe(B * T * config.Vp);
    expect(relativeError(logits, fixture.logits64)).toBeLessThan(TOL_NORM);
    expect(maxErrorOverMax(logits, fixture.logits64)).toBeLessThan(TOL_MAX);
  });

  const layout = parameterLayout(fixture.config);
  for (const name of PARAMETER_NAMES) {
    test(`gradient of ${name}`, () => {
      const lo = layout.offsets[name], hi = lo + layout.sizes[name];
      // Self-check of the yardstick: PyTorch float32 itself passes the same bound.
      expect(relativeError(fixture.grads32, fixture.grads64, lo, hi)).toBeLessThan(TOL_NORM);
      expect(relativeError(model.grads, fixture.grads64, lo, hi)).toBeLessThan(TOL_NORM);
      expect(maxErrorOverMax(model.grads, fixture.grads64, lo, hi)).toBeLessThan(TOL_MAX);
    });
  }

  test("padded rows of wte get exactly zero gradient (their logits never reach the loss through the softmax)", () => {
    // lnf·wte[pad] only feeds logits V..Vp, which the softmax excludes: dwte[pad] must be 0.
    const pad = model.gradients.tensors.wte.subarray(config.V * config.C);
    expect(pad.every((x) => x === 0)).toBe(true);
  });

  test("10 AdamW steps (lr 1e-4, betas 0.9/0.999, eps 1e-8, wd 0) on the same batch", () => {
    const m = loadFixtureModel();
    const opt = new AdamW(m.params.length, { lr: 1e-4 });
    const losses: number[] = [];
    for (let step = 0; step < 10; step++) {
      losses.push(m.forward(fixture.inputs, fixture.targets, B, T));
      m.zeroGrad();
      m.backward();
      opt.update(m.params, m.grads, 1e-4);
    }
    expect(opt.step).toBe(10);
    for (let i = 0; i < 10; i++) {
      const rel = Math.abs(losses[i] - fixture.losses64[i]) / fixture.losses64[i];
      if (!(rel < TOL_LOSS)) throw new Error(`step ${i}: loss ${losses[i]}, PyTorch float64 ${fixture.losses64[i]} (relative ${rel})`);
    }
  });
});

// --matmul-precision bf16 against the same PyTorch fp32 fixture. Each matmul operand is rounded to
// 8 significant bits (relative error ≤ 2^-9), so a product errs by ≤ 2^-8 and a matmul output by
// ≤ 2^-8 of the sum of its terms' magnitudes; over a network those errors are mostly independent
// and partly cancel, and the loss — a log-sum-exp minus one logit — moves by about one such
// rounding: we allow 2^-9 ≈ 2e-3 relative on each of the 10 losses (measured here: 5e-5 – 6e-4).
// A wrong pairing or a missing product errs by far more (≥ 1e-2); a bf16 path that did not round
// would equal fp32, which the test rules out.
describe.skipIf(bf16Unavailable() !== null)("bf16 matmuls vs PyTorch fp32 (skipped where the CPU or the build lacks AVX512_BF16)", () => {
  test("10 AdamW steps: every loss within 2^-9 relative of PyTorch's, and not the fp32 losses", () => {
    const { B, T } = fixture;
    const run = () => {
      const m = loadFixtureModel();
      const opt = new AdamW(m.params.length, { lr: 1e-4 });
      const losses: number[] = [];
      for (let step = 0; step < 10; step++) {
        losses.push(m.forward(fixture.inputs, fixture.targets, B, T));
        m.zeroGrad();
        m.backward();
        opt.update(m.params, m.grads, 1e-4);
      }
      return losses;
    };
    const fp32 = run();
    setMatmulPrecision("bf16");
    let bf16: number[];
    try {
      bf16 = run();
    } finally {
      setMatmulPrecision("fp32");
    }
    for (let i = 0; i < 10; i++) {
      const rel = Math.abs(bf16[i] - fixture.losses64[i]) / fixture.losses64[i];
      if (!(rel < 2 ** -9)) throw new Error(`bf16 step ${i}: loss ${bf16[i]}, PyTorch float64 ${fixture.losses64[i]} (relative ${rel})`);
    }
    expect(bf16[0]).not.toBe(fp32[0]);
  });
});

describe("finite differences on a tiny model", () => {
  // tiny config, random non-small parameters (as the fixture), B=2 T=5.
  const config: GPT2Config = { maxT: 8, V: 37, Vp: 128, L: 2, NH: 2, C: 16 };
  const B = 2, T = 5;
  const model = new GPT2(randomWeights(config, 42, FIXTURE_WEIGHTS));
  const tokens = randomTokens(B * T + 1, config.V, 3);
  const inputs = tokens.slice(0, B * T), targets = tokens.slice(1);
  model.forward(inputs, targets, B, T);
  model.zeroGrad();
  model.backward();
  const grads = model.grads.slice();
  const layout = parameterLayout(config);
  // Central differences in float32. The loss (~4.4) is computed with a rounding error of a few ulp
  // (ulp(4) = 4.8e-7), say δ ≤ 2e-6, so the difference quotient carries noise ≤ 2δ/(2h) = δ/h; the
  // truncation error is h²·|f'''|/6. h = 1e-2 (parameters are 0.05–1 in size) gives noise ≤ 2e-4;
  // measured |fd − g|/|g| on the largest entries is 1e-6–3e-4. We test the largest-|g| entry of each
  // tensor (|g| ≥ 0.1, checked, so the bound below is ≤ 0.3% of it) plus two random entries with
  // |fd − g| ≤ 2e-4 + 1e-3·|g|: a wrong gradient (a missing term, a factor 2, a sign, a transposed
  // index) misses the large entries by far more.
  const h = 1e-2;
  const pick = rng(11);
  for (const name of PARAMETER_NAMES) {
    test(name, () => {
      let lo = layout.offsets[name], hi = lo + layout.sizes[name];
      if (name === "wte") hi = lo + config.V * config.C; // padded rows: gradient 0, loss-independent
      if (name === "wpe") hi = lo + T * config.C; // positions ≥ T are unused
      let top = lo;
      for (let i = lo; i < hi; i++) if (Math.abs(grads[i]) > Math.abs(grads[top])) top = i;
      expect(Math.abs(grads[top])).toBeGreaterThan(0.1);
      const indices = [top, lo + Math.floor(pick() * (hi - lo)), lo + Math.floor(pick() * (hi - lo))];
      for (const i of indices) {
        const saved = model.params[i];
        model.params[i] = saved + h;
        const up = model.params[i];
        const lossUp = model.forward(inputs, targets, B, T);
        model.params[i] = saved - h;
        const down = model.params[i];
        const lossDown = model.forward(inputs, targets, B, T);
        model.params[i] = saved;
        const fd = (lossUp - lossDown) / (up - down);
        const bound = 2e-4 + 1e-3 * Math.abs(grads[i]);
        if (!(Math.abs(fd - grads[i]) <= bound)) throw new Error(`${name}[${i - lo}]: finite difference ${fd}, backward ${grads[i]}`);
      }
    });
  }
});

describe("determinism", () => {
  const config: GPT2Config = { maxT: 64, V: 500, Vp: 512, L: 2, NH: 4, C: 64 };
  afterAll(() => setThreads(defaultThreadCount()));

  test("GPT2.init: same seed → bit-identical parameters; another seed → different", () => {
    const a = GPT2.init(config, 5), b = GPT2.init(config, 5), c = GPT2.init(config, 6);
    expect(Buffer.from(a.params.buffer).equals(Buffer.from(b.params.buffer))).toBe(true);
    expect(Buffer.from(a.params.buffer).equals(Buffer.from(c.params.buffer))).toBe(false);
  });

  test("GPT2.init follows GPT-2's scheme", () => {
    const v = GPT2.init(config, 1).weights.tensors;
    const std = (x: Float32Array) => Math.sqrt(x.reduce((s, y) => s + y * y, 0) / x.length);
    expect(Math.abs(std(v.qkvw) / 0.02 - 1)).toBeLessThan(0.02);
    expect(Math.abs(std(v.fcw) / 0.02 - 1)).toBeLessThan(0.02);
    expect(Math.abs(std(v.attprojw) / (0.02 / Math.sqrt(2 * config.L)) - 1)).toBeLessThan(0.03);
    expect(Math.abs(std(v.fcprojw) / (0.02 / Math.sqrt(2 * config.L)) - 1)).toBeLessThan(0.02);
    expect(Math.abs(std(v.wte.subarray(0, config.V * config.C)) / 0.02 - 1)).toBeLessThan(0.02);
    expect(v.wte.subarray(config.V * config.C).every((x) => x === 0)).toBe(true);
    for (const bias of [v.qkvb, v.attprojb, v.fcb, v.fcprojb, v.ln1b, v.ln2b, v.lnfb]) expect(bias.every((x) => x === 0)).toBe(true);
    for (const w of [v.ln1w, v.ln2w, v.lnfw]) expect(w.every((x) => x === 1)).toBe(true);
  });

  test("same seed and data → bit-identical losses and parameters over 4 training steps, on 1, 2 and 3 threads", () => {
    // Every kernel splits work across threads without splitting a reduction, so the thread count
    // must not change a bit. The shape takes every multi-threaded path: BT > 16 (the packed GEMM,
    // not the small-row one), 4C = 768 > one K block, T = 150 > two attention key blocks.
    const big: GPT2Config = { maxT: 160, V: 500, Vp: 512, L: 2, NH: 3, C: 192 };
    const [B2, T2] = [2, 150];
    const tokens = randomTokens(B2 * T2 + 1, big.V, 8);
    const inputs = tokens.slice(0, B2 * T2), targets = tokens.slice(1);
    const train = (threads: number) => {
      setThreads(threads);
      const model = GPT2.init(big, 42);
      const opt = new AdamW(model.params.length, { weightDecay: 0.1 });
      const losses: number[] = [];
      for (let step = 0; step < 4; step++) {
        losses.push(model.forward(inputs, targets, B2, T2));
        model.zeroGrad();
        model.backward();
        opt.update(model.params, model.grads, 1e-3, 1 / Math.max(1, gradNorm(model.grads)));
      }
      return { losses, params: model.params };
    };
    const first = train(2), second = train(2);
    expect(second.losses).toEqual(first.losses);
    expect(first.losses[3]).toBeLessThan(first.losses[0]);
    expect(Buffer.from(second.params.buffer).equals(Buffer.from(first.params.buffer))).toBe(true);
    for (const threads of [1, 3]) {
      const other = train(threads);
      expect(other.losses).toEqual(first.losses);
      expect(Buffer.from(other.params.buffer).equals(Buffer.from(first.params.buffer))).toBe(true);
    }
  });
});

describe("gradient accumulation and shapes", () => {
  const model = loadFixtureModel();
  const { B, T } = fixture;

  test("two forward/backward pairs without zeroGrad give twice the gradient", () => {
    model.forward(fixture.inputs, fixture.targets, B, T);
    model.zeroGrad();
    model.backward();
    const once = model.grads.slice();
    model.forward(fixture.inputs, fixture.targets, B, T);
    model.backward();
    // Not bit-exact: a tensor fed by two kernels (wte: lm_head and encoder) adds its terms onto a
    // non-zero start the second time, so roundings differ at the ulp level. Overwriting instead of
    // adding would give a relative error of 0.5.
    const twice = once.map((x) => 2 * x);
    expect(relativeError(model.grads, twice)).toBeLessThan(1e-6);
    expect(maxErrorOverMax(model.grads, twice)).toBeLessThan(1e-6);
  });

  test("a smaller (B,T) reuses the buffers; going back gives the same loss bit for bit; a larger one grows them", () => {
    const first = model.forward(fixture.inputs, fixture.targets, B, T);
    const bytes = model.activationBytes();
    const short = model.forward(fixture.inputs.subarray(0, 5), fixture.targets.subarray(0, 5), 1, 5);
    expect(model.activationBytes()).toBe(bytes);
    const fresh = loadFixtureModel();
    expect(fresh.forward(fixture.inputs.subarray(0, 5), fixture.targets.subarray(0, 5), 1, 5)).toBe(short);
    expect(model.forward(fixture.inputs, fixture.targets, B, T)).toBe(first);
    const big = randomTokens(3 * 25, fixture.config.V, 4);
    model.forward(big, big, 3, 25);
    expect(model.activationBytes()).toBeGreaterThan(bytes);
  });

  test("forward without targets returns NaN and leaves valid logits; backward then refuses", () => {
    const withTargets = loadFixtureModel();
    withTargets.forward(fixture.inputs, fixture.targets, B, T);
    expect(Number.isNaN(model.forward(fixture.inputs, null, B, T))).toBe(true);
    expect(model.logits()).toEqual(withTargets.logits());
    expect(() => model.backward()).toThrow(/forward\(\) with targets/);
  });

  test("profile: when set, every kernel type gets time; the result is unchanged", () => {
    const plain = model.forward(fixture.inputs, fixture.targets, B, T);
    model.profile = new Map();
    try {
      expect(model.forward(fixture.inputs, fixture.targets, B, T)).toBe(plain);
      model.backward();
      const buckets = [...model.profile.keys()].sort();
      expect(buckets).toEqual(["attention_bwd", "attention_fwd", "encoder", "gelu", "layernorm", "matmul_bwd", "matmul_fwd", "residual", "softmax_xent"]);
      for (const ms of model.profile.values()) expect(ms).toBeGreaterThanOrEqual(0); // tiny kernels may take less than the timer tick
    } finally {
      model.profile = null;
    }
  });

  test("backward runs once per forward", () => {
    model.forward(fixture.inputs, fixture.targets, B, T);
    model.backward();
    expect(() => model.backward()).toThrow(/once per forward/);
  });
});

describe("input validation", () => {
  const model = loadFixtureModel();
  const { V, maxT } = fixture.config;
  const ok = new Int32Array(6);
  test("token ids outside [0,V) name the position and the value", () => {
    const bad = ok.slice();
    bad[4] = V;
    expect(() => model.forward(bad, null, 2, 3)).toThrow(`inputs[4] (batch 1, position 1) is ${V}, outside the vocabulary [0, ${V})`);
    bad[4] = -1;
    expect(() => model.forward(bad, null, 2, 3)).toThrow(/inputs\[4\].* is -1/);
    const badTargets = ok.slice();
    badTargets[0] = V + 7;
    expect(() => model.forward(ok, badTargets, 2, 3)).toThrow(/targets\[0\] \(batch 0, position 0\) is 307/);
  });
  test("T > maxT, non-positive B or T, wrong lengths", () => {
    expect(() => model.forward(new Int32Array(maxT + 1), null, 1, maxT + 1)).toThrow(`T = ${maxT + 1} exceeds the model's maximum sequence length maxT = ${maxT}`);
    expect(() => model.forward(new Int32Array(0), null, 0, 3)).toThrow(/B must be a positive integer, got 0/);
    expect(() => model.forward(ok, null, 2, -3)).toThrow(/T must be a positive integer/);
    expect(() => model.forward(ok, null, 2, 2)).toThrow(/inputs has 6 tokens, B·T = 2·2 = 4/);
    expect(() => model.forward(ok, new Int32Array(5), 2, 3)).toThrow(/targets has 5 tokens/);
    expect(() => model.forward(new Float32Array(6) as unknown as Int32Array, null, 2, 3)).toThrow(/Int32Array/);
  });
  test("a parameter buffer of the wrong size is refused", () => {
    expect(() => new GPT2Weights(fixture.config, new Float32Array(10))).toThrow(/must be a Float32Array of/);
  });
});

describe("AdamW", () => {
  test("matches a float64 transcription of PyTorch's AdamW (with weight decay and gradScale)", () => {
    const n = 1001;
    const params = new Float32Array(n).map((_, i) => Math.sin(i) * 0.5);
    const p64 = Float64Array.from(params), m64 = new Float64Array(n), v64 = new Float64Array(n);
    const opt = new AdamW(n, { beta1: 0.8, beta2: 0.95, eps: 1e-6, weightDecay: 0.1 });
    const lr = 3e-3, scale = 0.5;
    for (let step = 1; step <= 5; step++) {
      const grads = new Float32Array(n).map((_, i) => Math.cos(i * step) * (i % 7 === 0 ? 0 : 1e-2));
      opt.update(params, grads, lr, scale);
      for (let i = 0; i < n; i++) {
        const g = grads[i] * scale;
        p64[i] *= 1 - lr * 0.1;
        m64[i] = 0.8 * m64[i] + 0.2 * g;
        v64[i] = 0.95 * v64[i] + 0.05 * g * g;
        p64[i] -= (lr / (1 - 0.8 ** step)) * m64[i] / (Math.sqrt(v64[i] / (1 - 0.95 ** step)) + 1e-6);
      }
    }
    // float32 state, five updates of ≤ lr each: a few ulp of |p| ≤ 0.5 plus rounding of each update.
    for (let i = 0; i < n; i++) if (!(Math.abs(params[i] - p64[i]) <= 1e-6)) throw new Error(`param ${i}: ${params[i]} vs ${p64[i]}`);
    expect(opt.step).toBe(5);
  });
  test("bad arguments", () => {
    expect(() => new AdamW(0)).toThrow(/paramCount/);
    expect(() => new AdamW(3, { beta1: 1 })).toThrow(/beta1/);
    expect(() => new AdamW(3, { eps: 0 })).toThrow(/eps/);
    const opt = new AdamW(3);
    expect(() => opt.update(new Float32Array(3), new Float32Array(2), 1e-3)).toThrow(/3 moments/);
    expect(() => opt.update(new Float32Array(3), new Float32Array(3), NaN)).toThrow(/lr/);
    expect(opt.step).toBe(0);
  });
  test("gradNorm", () => {
    expect(gradNorm(new Float32Array([3, 4, 0]))).toBe(5);
  });
});

describe("parameters still arriving (GPT2.deferParameters, ZeRO-1's overlapped all-gather)", () => {
  const config: GPT2Config = { maxT: 8, V: 37, Vp: 48, L: 3, NH: 2, C: 16 };
  const { offsets, sizes, total } = parameterLayout(config);
  // What a fence delivers at each part: the embeddings, block l's 12 slices, the final layernorm.
  const partRanges = (part: number): Array<[number, number]> => {
    if (part < 0) return [[offsets.wte, offsets.wpe + sizes.wpe]];
    if (part >= config.L) return [[offsets.lnfw, total]];
    return (["ln1w", "ln1b", "qkvw", "qkvb", "attprojw", "attprojb", "ln2w", "ln2b", "fcw", "fcb", "fcprojw", "fcprojb"] as const).map((name) => {
      const per = sizes[name] / config.L;
      return [offsets[name] + part * per, offsets[name] + (part + 1) * per];
    });
  };
  /** Everything NaN until the fence delivers it; records the calls. */
  function arriving(truth: Float32Array, model: GPT2) {
    const params = model.weights.params;
    params.fill(Number.NaN);
    const calls: string[] = [];
    const fence = {
      before(part: number) {
        calls.push(`before ${part}`);
        for (const [a, b] of partRanges(part)) params.set(truth.subarray(a, b), a);
      },
      afterKernel() {
        if (calls[calls.length - 1] !== "kernel") calls.push("kernel");
      },
      settle() {
        calls.push("settle");
        params.set(truth);
      },
    };
    return { fence, calls };
  }

  test("the forward pass waits for each part just before it reads it, then needs no fence", () => {
    const reference = GPT2.init(config, 3);
    const truth = reference.weights.params.slice();
    const inputs = randomTokens(2 * 8, config.V, 1), targets = randomTokens(2 * 8, config.V, 2);
    const want = reference.forward(inputs, targets, 2, 8);
    const model = new GPT2(new GPT2Weights(config));
    const { fence, calls } = arriving(truth, model);
    model.deferParameters(fence);
    const got = model.forward(inputs, targets, 2, 8);
    expect(got).toBe(want); // a part read before it arrived would have made the loss NaN
    expect(calls).toEqual(["before -1", "kernel", "before 0", "kernel", "before 1", "kernel", "before 2", "kernel", "before 3", "kernel"]);
    expect(model.forward(inputs, targets, 2, 8)).toBe(want);
    model.backward();
    reference.backward();
    expect(Buffer.from(model.grads.buffer).equals(Buffer.from(reference.grads.buffer))).toBe(true);
    expect(calls.length).toBe(10); // the second forward and the backward did not touch the fence
  });

  test("any other reader of the parameters waits for all of them", () => {
    const truth = GPT2.init(config, 4).weights.params.slice();
    const model = new GPT2(new GPT2Weights(config));
    const { fence, calls } = arriving(truth, model);
    model.deferParameters(fence);
    expect(model.params).toEqual(truth);
    expect(calls).toEqual(["settle"]);
    model.settleParameters();
    expect(calls).toEqual(["settle"]);
    model.deferParameters(fence);
    expect(() => model.deferParameters({ ...fence })).toThrow(/another fence is still pending/);
  });
});
