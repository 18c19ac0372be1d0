// One fuzzed input format: its valid seeds, its mutations, the in-process check of a case (run in
// the worker process, against the readers) and the CLI invocations that read it.
import type { Mutator, Seed } from "./mutate_bytes.ts";
import type { CheckResult, CliRun } from "./outcome.ts";

export interface CliTarget {
  name: string;
  /** arguments after `bun`, for a case written under `dir` */
  args(dir: string): string[];
  /** judges a run that exited 0 further, given what the in-process check saw (null = fine) */
  afterSuccess?(run: CliRun, dir: string, inProcess: CheckResult): CheckResult | null;
}

export interface Format {
  name: string;
  description: string;
  /** the valid seeds, built deterministically; `scratch` is a folder the builder may use */
  seeds(scratch: string): Promise<Seed[]>;
  mutators: Mutator[];
  /** the in-process check of the case written under `dir` (runs in the worker) */
  check(dir: string): Promise<CheckResult>;
  cli: CliTarget[];
}
