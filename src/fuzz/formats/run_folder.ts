// The run folder `bun run train --resume latest` reads: --ckpt-dir holding ckpt_<step>.llmts files
// (the newest is resumed: parameters, AdamW moments, options, loader and sampler state) and the
// JSONL log (kept up to the resumed step). Seeds are real two-step runs of the trainer; cases
// mutate the newest checkpoint (bytes and JSON state), the older one, the log, and the folder
// (extra, partial, missing, swapped or directory "checkpoints", leftover temp files).
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { readLlmtsCheckpoint, writeLlmtsCheckpoint } from "../../io/llmts_checkpoint.ts";
import type { AdamW } from "../../optim/adamw.ts";
import { setupRun } from "../../train/trainer.ts";
import type { Format } from "../format.ts";
import { binaryMutators, fileMutators, type MutationContext, type Mutator, type Seed } from "../mutate_bytes.ts";
import { jsonMutators } from "../mutate_json.ts";
import { firstDifference, llmtsMeaning } from "../oracles.ts";
import { type CheckResult, judgeError } from "../outcome.ts";
import { concat, SEED_DATA_FILE, seedTokenData } from "../seeds.ts";
import type { JsonPart } from "../structure.ts";
import { fileBytes, forwardFinite } from "../weights_check.ts";
import { LLMTS_JSON, llmtsModel } from "./llmts.ts";

const RUN = "run";
const OLDER = `${RUN}/ckpt_00000001.llmts`;
const NEWER = `${RUN}/ckpt_00000002.llmts`;
const LOG = `${RUN}/log.jsonl`;
/** resumed runs train to this step (the seeds stop at 2) */
const STEPS = 3;
const CHECKPOINT_NAME = /^ckpt_(\d{8,})\.llmts$/;
const ROOT = resolve(import.meta.dir, "../../..");
const encoder = new TextEncoder();
const decoder = new TextDecoder();

const STATE_JSON: JsonPart = {
  ...LLMTS_JSON,
  hotPaths: ["options.*", "loader.*", "loader.epochRng.*", "loader.files.*", "sampleRng", "sampleRng.*", "step", "lr", "config.*", "tensors.*.offset", "tensors.*.count"],
};

/** Trains a tiny model for two steps (a checkpoint after each) in `scratch`, and returns the run folder's files, normalised. */
async function trainSeed(scratch: string, name: string, extra: string[]): Promise<Seed> {
  const dir = join(scratch, name);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(join(dir, "data"), { recursive: true });
  writeFileSync(join(dir, SEED_DATA_FILE), seedTokenData());
  const args = [
    join(ROOT, "src/cli/train.ts"), "--model", "tiny", "--train-data", SEED_DATA_FILE, "--steps", "2", "--ckpt-every", "1", "--keep-last", "0",
    "--batch", "2", "--seq", "8", "--threads", "1", "--peak-gflops", "1", "--ckpt-dir", RUN, ...extra,
  ];
  const proc = Bun.spawn(["bun", ...args], { cwd: dir, stdout: "pipe", stderr: "pipe", env: { ...process.env, LLMTS_THREADS: "1" } });
  const [code, stderr] = [await proc.exited, await new Response(proc.stderr).text()];
  if (code !== 0) throw new Error(`fuzz: the run-folder seed ${name} did not train (exit ${code}): ${stderr}`);
  const files = new Map<string, Uint8Array | null>([[SEED_DATA_FILE, seedTokenData()]]);
  for (const checkpoint of [OLDER, NEWER]) files.set(checkpoint, normalisedCheckpoint(join(dir, checkpoint)));
  // Times vary from run to run: fixed values keep a fuzz seed's cases identical on every machine.
  const log = readFileSync(join(dir, LOG), "utf8").split("\n").filter((l) => l !== "").map((l) => {
    const record = JSON.parse(l);
    if ("ms" in record) Object.assign(record, { ms: 1, tokens_per_s: 1 });
    return JSON.stringify(record);
  });
  files.set(LOG, encoder.encode(log.map((l) => `${l}\n`).join("")));
  rmSync(dir, { recursive: true, force: true });
  const models = new Map([[OLDER, llmtsModel(files.get(OLDER)!)], [NEWER, llmtsModel(files.get(NEWER)!)]]);
  for (const model of models.values()) model.json = STATE_JSON;
  return { name, files, models };
}

/** The checkpoint rewritten with the machine-dependent parts (time, absolute paths) fixed. */
function normalisedCheckpoint(path: string): Uint8Array {
  const checkpoint = readLlmtsCheckpoint(path, { optimizer: true });
  const state = checkpoint.state as { savedAt?: string; loader?: { files?: string[] } };
  state.savedAt = "2000-01-01T00:00:00.000Z";
  if (state.loader?.files) state.loader.files = state.loader.files.map((f) => `/fuzz-seed/${f.split("/").slice(-2).join("/")}`);
  const { step, ...rest } = checkpoint.state;
  void step;
  writeLlmtsCheckpoint(path, { weights: checkpoint.weights, m: checkpoint.m, v: checkpoint.v, step: checkpoint.step, state: rest });
  return new Uint8Array(readFileSync(path));
}

// ---- folder-level and log mutations ----

function checkpointEntries(ctx: MutationContext): string[] {
  return [...ctx.files.keys()].filter((k) => k.startsWith(`${RUN}/`) && CHECKPOINT_NAME.test(k.slice(RUN.length + 1)));
}

const FOLDER_MUTATORS: Mutator[] = [
  {
    name: "extra-checkpoint", weight: 2,
    apply(ctx) {
      const name = `${RUN}/${ctx.rng.pick(["ckpt_00000003.llmts", "ckpt_99999999.llmts", "ckpt_000000003.llmts", "ckpt_00000010.llmts"])}`;
      const newest = ctx.files.get(NEWER) ?? ctx.seed.files.get(NEWER)!;
      const kind = ctx.rng.pick(["partial", "empty", "random", "older copy", "directory"] as const);
      const content =
        kind === "partial" ? newest.slice(0, ctx.rng.below(Math.max(1, newest.length))) :
        kind === "empty" ? new Uint8Array(0) :
        kind === "random" ? ctx.rng.bytes(ctx.rng.pick([16, 1024, 4096])) :
        kind === "older copy" ? ctx.seed.files.get(OLDER)!.slice() : null;
      ctx.files.set(name, content);
      return `${name} added: ${kind}`;
    },
  },
  {
    name: "temp-file", weight: 0.5,
    apply(ctx) {
      const newest = ctx.seed.files.get(NEWER)!;
      const name = `${RUN}/.ckpt_00000003.llmts.4242.1700000000000.tmp`;
      ctx.files.set(name, newest.slice(0, ctx.rng.below(newest.length)));
      return `${name} left behind (a killed write)`;
    },
  },
  {
    name: "remove-checkpoints", weight: 1,
    apply(ctx) {
      const all = checkpointEntries(ctx);
      if (all.length === 0) return null;
      const which = ctx.rng.pick(["newest", "all", "older"] as const);
      const gone = which === "all" ? all : which === "newest" ? [all.sort().at(-1)!] : [all.sort()[0]];
      for (const g of gone) ctx.files.delete(g);
      return `removed ${gone.join(", ")}`;
    },
  },
  {
    name: "swap-checkpoints", weight: 0.7,
    apply(ctx) {
      const a = ctx.files.get(OLDER), b = ctx.files.get(NEWER);
      if (a === undefined || b === undefined) return null;
      ctx.files.set(OLDER, b);
      ctx.files.set(NEWER, a);
      return "ckpt_00000001.llmts and ckpt_00000002.llmts swapped (the names no longer match the steps inside)";
    },
  },
];

const LOG_JUNK = [
  "null", "1", "[]", '"x"', "{}", '{"step":"x"}', '{"step":1e308,"loss":1}', '{"step":2,"val_loss":null}', '{"step":-1,"loss":"NaN"}', '{"step":null}',
  '{"step":1,"loss":1', "[".repeat(100000) + "]".repeat(100000), "\u0000\u0000", '{"__proto__":{"step":0}}',
];

function logLines(ctx: MutationContext): string[] | null {
  const bytes = ctx.files.get(LOG);
  if (bytes === undefined || bytes === null) return null;
  return decoder.decode(bytes).split("\n");
}

const LOG_MUTATORS: Mutator[] = [
  {
    name: "log-junk-line", weight: 1.5,
    apply(ctx) {
      const lines = logLines(ctx);
      if (lines === null) return null;
      const at = ctx.rng.below(lines.length + 1);
      const junk = ctx.rng.pick(LOG_JUNK);
      lines.splice(at, 0, junk);
      ctx.files.set(LOG, encoder.encode(lines.join("\n")));
      return `${LOG}: line ${at} = ${JSON.stringify(junk.slice(0, 40))}${junk.length > 40 ? "…" : ""}`;
    },
  },
  {
    name: "log-edit-line", weight: 1.5,
    apply(ctx) {
      const lines = logLines(ctx);
      if (lines === null || lines.length === 0) return null;
      const at = ctx.rng.below(lines.length);
      const kind = ctx.rng.pick(["delete", "duplicate", "cut", "non-utf8", "crlf", "huge"] as const);
      if (kind === "delete") lines.splice(at, 1);
      else if (kind === "duplicate") lines.splice(at, 0, lines[at]);
      else if (kind === "cut") lines[at] = lines[at].slice(0, ctx.rng.below(lines[at].length + 1));
      else if (kind === "crlf") lines[at] = `${lines[at]}\r`;
      else if (kind === "huge") lines[at] = `{"step":1,"loss":1,"pad":"${"x".repeat(1 << 20)}"}`;
      if (kind === "non-utf8") {
        const before = encoder.encode(lines.slice(0, at).join("\n") + (at > 0 ? "\n" : ""));
        const after = encoder.encode(lines.slice(at).join("\n"));
        ctx.files.set(LOG, concat([before, Uint8Array.of(0xff, 0xfe, 0xc0, 0x80), after]));
      } else {
        ctx.files.set(LOG, encoder.encode(lines.join("\n")));
      }
      return `${LOG}: line ${at} ${kind}`;
    },
  },
];

// ---- the in-process check: setupRun as `train --resume latest` calls it ----

function newestCheckpoint(dir: string): string | null {
  const run = join(dir, RUN);
  if (!existsSync(run)) return null;
  let best: [number, string] | null = null;
  for (const name of readdirSync(run)) {
    const m = CHECKPOINT_NAME.exec(name);
    if (m && (best === null || Number(m[1]) > best[0])) best = [Number(m[1]), name];
  }
  return best === null ? null : join(run, best[1]);
}

async function check(dir: string): Promise<CheckResult> {
  const newest = newestCheckpoint(dir);
  // Read before setupRun (which rewrites the log) for the independent decode; a directory has no bytes.
  const before = newest !== null && existsSync(newest) && statSync(newest).isFile() ? fileBytes(newest) : null;
  let run;
  try {
    run = setupRun({ resume: "latest", ckptDir: join(dir, RUN), trainData: [join(dir, SEED_DATA_FILE)], steps: STEPS, threads: 1, peakGflops: 1 }, () => {});
  } catch (error) {
    return judgeError(error, dir);
  }
  if (before === null) return { verdict: "misread", detail: "resumed without a checkpoint" };
  const meaning = llmtsMeaning(before);
  if (!meaning.ok) return { verdict: "misread", detail: `resumed from ${newest}, which cannot be read: ${meaning.why}` };
  const want = meaning.value;
  for (const [name, got, expected] of [["params", run.model.params, want.params], ["adam_m", (run.optimizer as AdamW).m, want.m], ["adam_v", (run.optimizer as AdamW).v, want.v]] as const) {
    if (expected === null) return { verdict: "misread", detail: `resumed without ${name} in ${newest}` };
    const diff = firstDifference(got, expected);
    if (diff >= 0) return { verdict: "misread", detail: `${name}[${diff}] resumed as ${got[diff]}, ${newest} holds ${expected[diff]}` };
  }
  if (run.startStep !== want.step) return { verdict: "misread", detail: `resumed at step ${run.startStep}, the checkpoint says ${want.step}` };
  const V = run.model.config.V;
  for (let i = 0; i < 4; i++) {
    run.train.next();
    const bad = [...run.train.inputs, ...run.train.targets].find((t) => t < 0 || t >= V);
    if (bad !== undefined) return { verdict: "misread", detail: `the resumed loader served token ${bad}, outside [0, ${V})` };
  }
  const finite = forwardFinite(run.model.config, run.model.params);
  if (!finite.all) return { verdict: "nanLater", detail: "resumed faithfully; the forward pass overflows float32" };
  return { verdict: "accepted", detail: "" };
}

export const RUN_FOLDER: Format = {
  name: "run-folder",
  description: "a --ckpt-dir as train --resume latest reads it (checkpoints + log.jsonl)",
  seeds: async (scratch) => [
    await trainSeed(scratch, "shuffled", ["--val-every", "0", "--sample-tokens", "0"]),
    await trainSeed(scratch, "unshuffled-val-sampling", ["--no-shuffle", "--val-data", SEED_DATA_FILE, "--val-every", "1", "--val-batches", "2", "--sample-tokens", "0"]),
  ],
  mutators: [
    ...jsonMutators(NEWER, () => STATE_JSON, 5),
    ...binaryMutators(NEWER, 0.6),
    ...jsonMutators(OLDER, () => STATE_JSON, 0.5),
    ...FOLDER_MUTATORS,
    ...LOG_MUTATORS,
    ...fileMutators(LOG, 0.5),
    ...fileMutators(NEWER, 0.3),
  ],
  check,
  cli: [
    {
      name: "train-resume",
      args: (dir) => ["src/cli/train.ts", "--resume", "latest", "--ckpt-dir", `${dir}/${RUN}`, "--train-data", `${dir}/${SEED_DATA_FILE}`, "--steps", String(STEPS), "--threads", "1", "--peak-gflops", "1"],
      afterSuccess(_run, dir) {
        const last = join(dir, RUN, `ckpt_${String(STEPS).padStart(8, "0")}.llmts`);
        try {
          const checkpoint = readLlmtsCheckpoint(last, { optimizer: true });
          if (checkpoint.step !== STEPS) return { verdict: "misread", detail: `the run ended at step ${STEPS}, ${last} says ${checkpoint.step}` };
          return null;
        } catch (error) {
          return { verdict: "misread", detail: `the run reported success, but its last checkpoint does not read back: ${(error as Error).message}` };
        }
      },
    },
  ],
};
