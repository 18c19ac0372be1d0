// A fuzz pass: for each format, `iterations` cases (seed → base → mutations), each checked
// in-process by a worker and, for a share of them, by one of the format's CLIs; failures are
// shrunk and saved for --replay. Results depend only on the pass seed, never on the scheduling.
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { cloneFiles, type CaseFiles, type FuzzCase, readCaseFiles, writeCaseFiles } from "./case.ts";
import { runCli } from "./cli_runner.ts";
import type { CliTarget, Format } from "./format.ts";
import { formatNamed } from "./formats/index.ts";
import type { MutationContext, Seed } from "./mutate_bytes.ts";
import { type CheckResult, isFailure, judgeCli, type Verdict, VERDICTS, worse } from "./outcome.ts";
import { caseSeed, FuzzRandom } from "./random.ts";
import { differenceCount, shrinkCase } from "./shrink.ts";
import { WorkerClient } from "./worker_client.ts";

export interface FuzzOptions {
  formats: Format[];
  /** cases per format */
  iterations: number;
  seed: number;
  /** cases checked at once (each has its own worker) */
  jobs: number;
  /** every Nth case also runs a CLI even when the readers refused it (0: no CLI runs) */
  cliEvery: number;
  timeoutMs: number;
  /** failing cases are saved under this folder; null: not saved */
  outDir: string | null;
  shrink: boolean;
  /** called after each format */
  onFormat?: (report: FormatReport) => void;
}

export const IN_PROCESS = "in-process";
export const NOTE_FILE = "fuzz-case.json";

export type Counts = Record<Verdict, number>;

export interface Failure {
  format: string;
  seed: number;
  target: string;
  verdict: Verdict;
  detail: string;
  mutations: string[];
  /** the folder holding the (shrunk) case, or null */
  saved: string | null;
}

export interface FormatReport {
  format: string;
  cases: number;
  /** each case counted once, by its most serious result over all its checks */
  counts: Counts;
  inProcess: Counts;
  /** CLI runs by target name */
  cli: Record<string, Counts>;
  cliRuns: number;
  /** checks that timed out once but not when run again (not counted as hangs) */
  unconfirmedTimeouts: number;
  seconds: number;
  failures: Failure[];
}

const zeroCounts = (): Counts => Object.fromEntries(VERDICTS.map((v) => [v, 0])) as Counts;

/** The case `seed` of `format`: a base picked from `seeds` and 1–5 mutations. */
export function makeCase(format: Format, seeds: Seed[], seed: number): FuzzCase {
  const rng = new FuzzRandom(seed);
  const base = rng.pick(seeds);
  const files = cloneFiles(base.files);
  const count = rng.weighted([{ weight: 60, n: 1 }, { weight: 25, n: 2 }, { weight: 10, n: 3 }, { weight: 5, n: 5 }]).n;
  const ctx: MutationContext = { rng, files, seed: base, seeds };
  const mutations: string[] = [];
  for (let tries = 0; mutations.length < count && tries < 50; tries++) {
    const description = rng.weighted(format.mutators).apply(ctx);
    if (description !== null) mutations.push(description);
  }
  return { format: format.name, seed, base: base.name, files, mutations };
}

/** Where one job writes its case folders (a fresh one per check: CLIs and setupRun write into them). */
class Scratch {
  private n = 0;
  constructor(readonly root: string) {}
  write(files: CaseFiles): string {
    const dir = join(this.root, `c${this.n++}`);
    writeCaseFiles(dir, files);
    return dir;
  }
}

interface Job {
  worker: WorkerClient;
  scratch: Scratch;
}

/** Timeouts that a second run did not repeat (the machine was busy, not the reader stuck). */
let unconfirmedTimeouts = 0;

/**
 * Runs `check` once more when it timed out: on a shared machine a starved process (or a stalled
 * event loop here) can pass the timeout once; a hang is a check that times out twice.
 */
async function confirmingHangs(check: () => Promise<CheckResult>): Promise<CheckResult> {
  const first = await check();
  if (first.verdict !== "hang") return first;
  const second = await check();
  if (second.verdict !== "hang") unconfirmedTimeouts++;
  return second;
}

function checkInProcess(job: Job, format: Format, files: CaseFiles, timeoutMs: number): Promise<CheckResult> {
  return confirmingHangs(async () => {
    const dir = job.scratch.write(files);
    try {
      return await job.worker.check(format.name, dir, timeoutMs);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
}

function checkCli(job: Job, target: CliTarget, files: CaseFiles, inProcess: CheckResult, timeoutMs: number): Promise<CheckResult> {
  return confirmingHangs(async () => {
    const dir = job.scratch.write(files);
    try {
      const run = await runCli(target.args(dir), timeoutMs, dir);
      const judged = judgeCli(run, dir);
      if (judged.verdict !== "accepted" || target.afterSuccess === undefined) return judged;
      return target.afterSuccess(run, dir, inProcess) ?? judged;
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
}

/** Runs `target` (a CLI, or the in-process check) on `files`; a CLI check runs the in-process one first for its facts. */
async function evaluate(job: Job, format: Format, target: string, files: CaseFiles, timeoutMs: number): Promise<CheckResult> {
  const inProcess = await checkInProcess(job, format, files, timeoutMs);
  if (target === IN_PROCESS) return inProcess;
  const cli = format.cli.find((c) => c.name === target);
  if (cli === undefined) throw new Error(`format ${format.name} has no CLI target ${target}`);
  return checkCli(job, cli, files, inProcess, timeoutMs);
}

function cliTargetFor(format: Format, seed: number): CliTarget {
  return format.cli[new FuzzRandom(seed ^ 0x2545f491).below(format.cli.length)];
}

interface CaseOutcome {
  verdict: Verdict;
  inProcess: CheckResult;
  cli: { name: string; result: CheckResult } | null;
  failure: Failure | null;
}

async function runCase(job: Job, format: Format, seeds: Seed[], index: number, options: FuzzOptions): Promise<CaseOutcome> {
  const seed = caseSeed(options.seed, format.name, index);
  const fuzzCase = makeCase(format, seeds, seed);
  const inProcess = await checkInProcess(job, format, fuzzCase.files, options.timeoutMs);
  let worst = inProcess;
  let failingTarget = isFailure(inProcess.verdict) ? IN_PROCESS : null;
  let cli: CaseOutcome["cli"] = null;
  const wantCli = options.cliEvery > 0 && format.cli.length > 0 && (inProcess.verdict !== "clean" || index % options.cliEvery === 0);
  if (wantCli && inProcess.verdict !== "hang") {
    const target = cliTargetFor(format, seed);
    const result = await checkCli(job, target, fuzzCase.files, inProcess, options.timeoutMs);
    cli = { name: target.name, result };
    if (failingTarget === null && isFailure(result.verdict)) failingTarget = target.name;
    worst = worse(worst, result);
  }
  let failure: Failure | null = null;
  if (failingTarget !== null) {
    const failed = failingTarget === IN_PROCESS ? inProcess : cli!.result;
    failure = await recordFailure(job, format, seeds, fuzzCase, failingTarget, failed, options);
  }
  return { verdict: worst.verdict, inProcess, cli, failure };
}

async function recordFailure(job: Job, format: Format, seeds: Seed[], fuzzCase: FuzzCase, target: string, result: CheckResult, options: FuzzOptions): Promise<Failure> {
  let files = fuzzCase.files;
  let shrinkNote = "not shrunk";
  let final = result;
  const base = seeds.find((s) => s.name === fuzzCase.base)!.files;
  // A hang costs the whole timeout per attempt: those are saved as found.
  if (options.shrink && result.verdict !== "hang") {
    const before = differenceCount(files, base);
    const budget = target === IN_PROCESS ? 200 : 40;
    const shrunk = await shrinkCase(files, base, async (candidate) => {
      const r = await evaluate(job, format, target, candidate, options.timeoutMs);
      return r.verdict === result.verdict ? r : null;
    }, budget);
    files = shrunk.files;
    if (shrunk.result !== null) final = shrunk.result;
    shrinkNote = `${before} → ${differenceCount(files, base)} differences from seed ${fuzzCase.base} (${shrunk.evaluations} evaluations)`;
  }
  let saved: string | null = null;
  if (options.outDir !== null) {
    saved = join(options.outDir, format.name, String(fuzzCase.seed));
    rmSync(saved, { recursive: true, force: true });
    writeCaseFiles(saved, files);
    const note = {
      format: format.name, seed: fuzzCase.seed, passSeed: options.seed, base: fuzzCase.base, target, verdict: final.verdict, detail: final.detail,
      mutations: fuzzCase.mutations, shrink: shrinkNote, replay: `bun run fuzz --replay ${saved}`,
    };
    writeFileSync(join(saved, NOTE_FILE), `${JSON.stringify(note, null, 2)}\n`);
  }
  return { format: format.name, seed: fuzzCase.seed, target, verdict: final.verdict, detail: final.detail, mutations: fuzzCase.mutations, saved };
}

async function fuzzFormat(format: Format, jobs: Job[], scratchRoot: string, options: FuzzOptions): Promise<FormatReport> {
  const started = performance.now();
  const seedDir = join(scratchRoot, `seeds-${format.name}`);
  mkdirSync(seedDir, { recursive: true });
  const seeds = await format.seeds(seedDir);
  const outcomes: CaseOutcome[] = new Array(options.iterations);
  const timeoutsBefore = unconfirmedTimeouts;
  let next = 0;
  await Promise.all(jobs.map(async (job) => {
    for (let i = next++; i < options.iterations; i = next++) outcomes[i] = await runCase(job, format, seeds, i, options);
  }));
  const report: FormatReport = {
    format: format.name, cases: options.iterations, counts: zeroCounts(), inProcess: zeroCounts(), cli: {}, cliRuns: 0,
    unconfirmedTimeouts: unconfirmedTimeouts - timeoutsBefore, seconds: 0, failures: [],
  };
  for (const o of outcomes) {
    report.counts[o.verdict]++;
    report.inProcess[o.inProcess.verdict]++;
    if (o.cli !== null) {
      report.cliRuns++;
      (report.cli[o.cli.name] ??= zeroCounts())[o.cli.result.verdict]++;
    }
    if (o.failure !== null) report.failures.push(o.failure);
  }
  report.seconds = (performance.now() - started) / 1000;
  return report;
}

export async function fuzz(options: FuzzOptions): Promise<FormatReport[]> {
  const scratchRoot = mkdtempSync(join(tmpdir(), "llmts-fuzz-"));
  const jobs: Job[] = Array.from({ length: options.jobs }, (_, j) => ({
    worker: new WorkerClient(scratchRoot, `worker${j}`),
    scratch: new Scratch(join(scratchRoot, `job${j}`)),
  }));
  const reports: FormatReport[] = [];
  try {
    for (const format of options.formats) {
      const report = await fuzzFormat(format, jobs, scratchRoot, options);
      reports.push(report);
      options.onFormat?.(report);
    }
  } finally {
    for (const job of jobs) job.worker.close();
    rmSync(scratchRoot, { recursive: true, force: true });
  }
  return reports;
}

export interface ReplayResult {
  note: { format: string; seed: number; target: string; verdict: Verdict; detail: string };
  inProcess: CheckResult;
  /** the recorded target's result now (the in-process one when that was the target) */
  result: CheckResult;
}

/** Re-runs a saved case (its folder, or the note in it) against the target it failed. */
export async function replay(path: string, timeoutMs: number): Promise<ReplayResult> {
  const dir = path.endsWith(NOTE_FILE) ? path.slice(0, -NOTE_FILE.length - 1) : path;
  const note = JSON.parse(readFileSync(join(dir, NOTE_FILE), "utf8")) as ReplayResult["note"];
  const format = formatNamed(note.format);
  if (format === undefined) throw new Error(`${join(dir, NOTE_FILE)}: unknown format "${note.format}"`);
  const files = readCaseFiles(dir, (name) => name === NOTE_FILE);
  const scratchRoot = mkdtempSync(join(tmpdir(), "llmts-fuzz-replay-"));
  const job: Job = { worker: new WorkerClient(scratchRoot, "replay"), scratch: new Scratch(scratchRoot) };
  try {
    const inProcess = await checkInProcess(job, format, files, timeoutMs);
    let result = inProcess;
    if (note.target !== IN_PROCESS) {
      const cli = format.cli.find((c) => c.name === note.target);
      if (cli === undefined) throw new Error(`${join(dir, NOTE_FILE)}: format ${note.format} has no CLI "${note.target}"`);
      result = await checkCli(job, cli, files, inProcess, timeoutMs);
    }
    return { note, inProcess, result };
  } finally {
    job.worker.close();
    rmSync(scratchRoot, { recursive: true, force: true });
  }
}
