// What one check of one case came to, and how errors and CLI runs are judged.
//   clean     refused with a typed error (CLI: exit 2) whose message names the file or the flag
//   accepted  read; the later checks (independent decode, forward pass, ids < V) agree
//   nanLater  read faithfully, but the weights overflow float32 in the forward pass; every command
//             that runs the model stops there with an error (a silent NaN is a misread)
//   unclear   refused, but the message names neither the file nor the flag, or spans many lines
//   misread   accepted, but read as something the file does not say (or a NaN / an out-of-range
//             id went on silently)
//   crash     an untyped exception, a signal, a stack trace, or a CLI exit code other than 0/2
//   hang      no answer within the timeout
import { InputError, UsageError } from "../base/errors.ts";

export const VERDICTS = ["clean", "accepted", "nanLater", "unclear", "misread", "crash", "hang"] as const;
export type Verdict = (typeof VERDICTS)[number];
export const FAILURES: readonly Verdict[] = ["unclear", "misread", "crash", "hang"];

export const isFailure = (v: Verdict): boolean => FAILURES.includes(v);

const RANK: Record<Verdict, number> = { clean: 0, accepted: 1, nanLater: 2, unclear: 3, misread: 4, crash: 5, hang: 6 };

export interface CheckResult {
  verdict: Verdict;
  /** the error message, or what was wrong */
  detail: string;
  /** for accepted weights: what the CLI checks need to know */
  model?: { V: number; maxT: number; finiteLogits: boolean };
}

/** The more serious of two results (failures outrank everything; nanLater outranks accepted). */
export function worse(a: CheckResult, b: CheckResult): CheckResult {
  return RANK[b.verdict] > RANK[a.verdict] ? b : a;
}


/** Names a flag the way the CLIs do ("--seq: …", "--resume …"). */
const NAMES_FLAG = /(^|\s)--[a-z][a-z-]*/;

/** Judges an error thrown by a reader: `where` is the folder holding the case's files. */
export function judgeError(error: unknown, where: string): CheckResult {
  // Every reader's error type extends InputError (src/base/errors.ts): the project's "bad input".
  const typed = error instanceof InputError;
  const e = error as Error;
  const message = typeof e?.message === "string" ? e.message : String(error);
  if (!typed) {
    const frame = typeof e?.stack === "string" ? e.stack.split("\n").find((l) => l.trim().startsWith("at ")) ?? "" : "";
    return { verdict: "crash", detail: `${e?.name ?? typeof error}: ${message}${frame ? ` (${frame.trim()})` : ""}` };
  }
  if (message.includes("\n")) return { verdict: "unclear", detail: `message spans lines: ${message}` };
  const namesInput = message.includes(where) || (error instanceof UsageError && NAMES_FLAG.test(message));
  return namesInput ? { verdict: "clean", detail: message } : { verdict: "unclear", detail: `names no file or flag: ${message}` };
}

export interface CliRun {
  exitCode: number | null;
  signal: string | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
  ms: number;
}

/** Bun's report of an uncaught exception: source excerpt, "at …" frames, "Bun v…" footer. */
const STACK = /^\s+at .+(:\d+:\d+\)?|\(native\))$|^Bun v\d+\.\d+\.\d+ \(|^\s*\^$/m;
/** train's numerical-fault stop (exit 1, documented): the run named the step and stopped. */
const TRAIN_NON_FINITE = /step \d+: the (loss|gradient norm) is (NaN|-?Infinity)|step \d+: the parameters are not finite/;
const LOGITS_NON_FINITE = /not finite/;
const WRITE_FAILED = /cannot write .+ \(E[A-Z]+\)/;

/** Judges a CLI run on a case whose files live under `where`. */
export function judgeCli(run: CliRun, where: string): CheckResult {
  const tail = run.stderr.trim().split("\n").slice(-3).join(" | ");
  if (run.timedOut) return { verdict: "hang", detail: `no exit after ${run.ms.toFixed(0)} ms` };
  if (run.signal !== null) return { verdict: "crash", detail: `killed by ${run.signal}: ${tail}` };
  if (STACK.test(run.stderr)) return { verdict: "crash", detail: `stack trace in stderr: ${tail}` };
  if (run.exitCode === 0) return { verdict: "accepted", detail: "" };
  const lines = run.stderr.trim().split("\n").filter((l) => l.trim() !== "" && l.trim() !== "(see --help)");
  const message = lines[lines.length - 1] ?? "";
  if (run.exitCode === 1 && TRAIN_NON_FINITE.test(message)) return { verdict: "nanLater", detail: message };
  // A write that fails during work (exit 1, the standard's "failure during work"), named with its cause.
  if (run.exitCode === 1 && WRITE_FAILED.test(message) && message.includes(where)) return { verdict: "clean", detail: message };
  if (run.exitCode !== 2) return { verdict: "crash", detail: `exit ${run.exitCode} (bad input must exit 2): ${tail}` };
  if (!message.includes(where) && !NAMES_FLAG.test(message)) return { verdict: "unclear", detail: `names no file or flag: ${message}` };
  if (lines.length > 1) return { verdict: "unclear", detail: `${lines.length} lines on stderr, not one: ${tail}` };
  return { verdict: LOGITS_NON_FINITE.test(message) ? "nanLater" : "clean", detail: message };
}
