// The pass's report: a table (one row per format) or one JSON object per format.
import type { FormatReport } from "./engine.ts";
import { FAILURES } from "./outcome.ts";

export function failureCount(report: FormatReport): number {
  return FAILURES.reduce((n, v) => n + report.counts[v], 0);
}

const COLUMNS: Array<[string, (r: FormatReport) => string]> = [
  ["format", (r) => r.format],
  ["cases", (r) => String(r.cases)],
  ["clean", (r) => String(r.counts.clean)],
  ["accepted", (r) => String(r.counts.accepted)],
  ["nan-later", (r) => String(r.counts.nanLater)],
  ["crashes", (r) => String(r.counts.crash)],
  ["hangs", (r) => String(r.counts.hang)],
  ["misreads", (r) => String(r.counts.misread)],
  ["unclear", (r) => String(r.counts.unclear)],
  ["cli-runs", (r) => String(r.cliRuns)],
  ["retried", (r) => String(r.unconfirmedTimeouts)],
  ["seconds", (r) => r.seconds.toFixed(1)],
];

export function reportTable(reports: FormatReport[]): string {
  const rows = [COLUMNS.map(([name]) => name), ...reports.map((r) => COLUMNS.map(([, get]) => get(r)))];
  const widths = COLUMNS.map((_, i) => Math.max(...rows.map((row) => row[i].length)));
  const lines = rows.map((row) => row.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]) : cell.padStart(widths[i]))).join("  "));
  for (const r of reports) {
    for (const f of r.failures) {
      lines.push(`  ${f.format} ${f.verdict} (${f.target}, case ${f.seed}): ${f.detail}`);
      lines.push(`    mutations: ${f.mutations.join("; ")}`);
      if (f.saved !== null) lines.push(`    saved: ${f.saved}  (replay: bun run fuzz --replay ${f.saved})`);
    }
  }
  return lines.join("\n");
}

export function reportJson(report: FormatReport): string {
  return JSON.stringify({
    format: report.format, cases: report.cases,
    clean: report.counts.clean, accepted: report.counts.accepted, nanLater: report.counts.nanLater,
    crashes: report.counts.crash, hangs: report.counts.hang, misreads: report.counts.misread, unclear: report.counts.unclear,
    cliRuns: report.cliRuns, unconfirmedTimeouts: report.unconfirmedTimeouts, seconds: Number(report.seconds.toFixed(2)), inProcess: report.inProcess, cli: report.cli,
    failures: report.failures,
  });
}
