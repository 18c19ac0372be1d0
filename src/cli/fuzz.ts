// bun run fuzz [--iterations N] [--seed S] [--json] [--format NAME] …: fuzzes every reader of
// llm.ts with seeded, structure-aware mutations of valid files, in-process and through the CLIs,
// and reports per format. Exit codes: 0 no failure, 1 failures found (saved for --replay), 2 bad flags.
import { parseArgs } from "node:util";
import { fuzz, replay } from "../fuzz/engine.ts";
import { ALL_FORMATS, DEFAULT_FORMATS, formatNamed } from "../fuzz/formats/index.ts";
import { isFailure } from "../fuzz/outcome.ts";
import { failureCount, reportJson, reportTable } from "../fuzz/report.ts";
import { choiceFlag, intFlag, runCli } from "./flags.ts";

const HELP = `usage: bun run fuzz [options]
       bun run fuzz --replay PATH

Mutates small valid files of every format llm.ts reads and checks that each reader (in-process)
and each CLI (out of process) either reads the file as it is or refuses it with a clear error:
no crash, no hang, no misread, no silent NaN. Failing cases are shrunk and saved for --replay.

  --iterations N     cases per format (default 200)
  --seed S           pass seed: the same seed gives the same cases (default 1)
  --format NAME      only this format (repeatable): ${ALL_FORMATS.map((f) => f.name).join(", ")}
                     (default: all but selftest, a deliberately broken reader for testing the harness)
  --jobs N           cases checked at once (default 2)
  --cli-every N      besides every case a reader accepts, every Nth case also runs one CLI (default 4; 0 = none)
  --timeout S        seconds before a check counts as a hang (default 10)
  --out DIR          where failing cases are saved (default fuzz-failures)
  --no-shrink        save failing cases as found
  --json             one JSON object per format instead of the table
  --replay PATH      re-run a saved case (its folder or its fuzz-case.json); exit 1 if it still fails
  -h, --help         this help

A case is: clean (refused, a typed error / exit 2 naming the file or flag), accepted (read, and the
independent decode, the forward pass and the id checks agree), nan-later (read faithfully, but the
weights overflow float32: the CLIs stop with an error), or a failure: crash, hang, misread, unclear.
A check that passes the timeout is run again: only a second timeout is a hang ("retried" counts
the others, which a busy machine causes).
`;

async function main(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv, strict: true, allowPositionals: false,
    options: {
      iterations: { type: "string", default: "200" }, seed: { type: "string", default: "1" }, format: { type: "string", multiple: true },
      jobs: { type: "string", default: "2" }, "cli-every": { type: "string", default: "4" }, timeout: { type: "string", default: "10" },
      out: { type: "string", default: "fuzz-failures" }, "no-shrink": { type: "boolean", default: false }, json: { type: "boolean", default: false },
      replay: { type: "string" }, help: { type: "boolean", short: "h", default: false },
    },
  });
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  const timeoutMs = intFlag("timeout", values.timeout!, 1, 3600) * 1000;
  if (values.replay !== undefined) {
    const { note, result } = await replay(values.replay, timeoutMs);
    process.stdout.write(`${note.format} case ${note.seed}, ${note.target}: recorded ${note.verdict}, now ${result.verdict}${result.detail ? `: ${result.detail}` : ""}\n`);
    return isFailure(result.verdict) ? 1 : 0;
  }
  const names = values.format ?? DEFAULT_FORMATS.map((f) => f.name);
  const formats = names.flatMap((n) => n.split(",")).map((n) => formatNamed(choiceFlag("format", n, ALL_FORMATS.map((f) => f.name)))!);
  const started = performance.now();
  const reports = await fuzz({
    formats,
    iterations: intFlag("iterations", values.iterations!, 1),
    seed: intFlag("seed", values.seed!, 0, 0xffffffff),
    jobs: intFlag("jobs", values.jobs!, 1, 64),
    cliEvery: intFlag("cli-every", values["cli-every"]!, 0),
    timeoutMs,
    outDir: values.out!,
    shrink: !values["no-shrink"],
    onFormat: (report) => {
      if (values.json) process.stdout.write(`${reportJson(report)}\n`);
      else process.stderr.write(`fuzz: ${report.format}: ${report.cases} cases in ${report.seconds.toFixed(1)} s, ${failureCount(report)} failures\n`);
    },
  });
  const failures = reports.reduce((n, r) => n + failureCount(r), 0);
  if (!values.json) {
    process.stdout.write(`${reportTable(reports)}\n`);
    process.stdout.write(`${reports.reduce((n, r) => n + r.cases, 0)} cases in ${((performance.now() - started) / 1000).toFixed(1)} s: ${failures === 0 ? "no failures" : `${failures} failing cases`}\n`);
  }
  return failures === 0 ? 0 : 1;
}

if (import.meta.main) await runCli("fuzz", () => main(process.argv.slice(2)));

