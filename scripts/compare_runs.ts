// Draws the loss curves of several runs on one chart, e.g. the same recipe in fp32 and bf16:
//   bun scripts/compare_runs.ts --out docs/bf16_vs_fp32.svg fp32=/tmp/q-fp32/log.jsonl bf16=/tmp/q-bf16/log.jsonl
// Each run: its val losses (points and line) and its train loss as a moving average over 25 steps.
// Prints each run's last val loss and the relative difference of every run's to the first's.
import { readFileSync } from "node:fs";
import { writeFileAtomic } from "../src/io/atomic.ts";
import { parseBenchArgs } from "../bench/args.ts";

const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"];
const { values, positionals } = parseBenchArgs({ options: { out: { type: "string" } }, allowPositionals: true });
if (values.out === undefined || positionals.length === 0 || positionals.length > COLORS.length) {
  process.stderr.write("usage: bun scripts/compare_runs.ts --out FILE.svg name=log.jsonl [name=log.jsonl …] (1–4 runs)\n");
  process.exit(2);
}

interface Curve { name: string; train: Array<[number, number]>; val: Array<[number, number]> }
const curves: Curve[] = positionals.map((arg) => {
  const at = arg.indexOf("=");
  if (at < 1) {
    process.stderr.write(`compare_runs: "${arg}" is not name=path/to/log.jsonl\n`);
    process.exit(2);
  }
  const path = arg.slice(at + 1);
  let records: Array<Record<string, number>>;
  try {
    records = readFileSync(path, "utf8").trim().split("\n").map((l) => JSON.parse(l) as Record<string, number>);
  } catch (error) {
    process.stderr.write(`compare_runs: ${path}: ${(error as Error).message}\n`);
    process.exit(2);
  }
  if (!records.some((r) => "val_loss" in r)) {
    process.stderr.write(`compare_runs: ${path}: no val_loss records (a bun run train log.jsonl has them)\n`);
    process.exit(2);
  }
  const raw = records.filter((r) => "loss" in r).map((r): [number, number] => [r.step, r.loss]);
  const train = raw.map(([step], i): [number, number] => {
    const window = raw.slice(Math.max(0, i - 24), i + 1);
    return [step, window.reduce((s, [, y]) => s + y, 0) / window.length];
  });
  return { name: arg.slice(0, at), train, val: records.filter((r) => "val_loss" in r).map((r): [number, number] => [r.step, r.val_loss]) };
});

const W = 720, H = 420, L = 60, R = 20, T = 40, B = 45;
const points = curves.flatMap((c) => [...c.train.slice(10), ...c.val.slice(1)]);
const xMax = Math.max(...points.map(([x]) => x));
const yMin = Math.min(...points.map(([, y]) => y)) - 0.1, yMax = Math.max(...points.map(([, y]) => y)) + 0.1;
const sx = (x: number) => L + (x / xMax) * (W - L - R);
const sy = (y: number) => T + (1 - (y - yMin) / (yMax - yMin)) * (H - T - B);
const path = (p: Array<[number, number]>) => p.map(([x, y], i) => `${i ? "L" : "M"}${sx(x).toFixed(1)},${sy(y).toFixed(1)}`).join("");
const svg: string[] = [`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="12"><rect width="${W}" height="${H}" fill="white"/>`];
for (let y = Math.ceil(yMin * 2) / 2; y <= yMax; y += 0.5) svg.push(`<line x1="${L}" x2="${W - R}" y1="${sy(y)}" y2="${sy(y)}" stroke="#e5e5e5"/><text x="${L - 6}" y="${sy(y) + 4}" text-anchor="end">${y.toFixed(1)}</text>`);
for (let x = 0; x <= xMax; x += 100) svg.push(`<text x="${sx(x)}" y="${H - B + 16}" text-anchor="middle">${x}</text>`);
svg.push(`<text x="${W / 2}" y="${H - 8}" text-anchor="middle">step (train: mean of the last 25 steps; val: points)</text>`);
curves.forEach((c, i) => {
  const color = COLORS[i];
  svg.push(`<path d="${path(c.train.slice(10))}" fill="none" stroke="${color}" stroke-opacity="0.45" stroke-width="1.2"/>`);
  svg.push(`<path d="${path(c.val.slice(1))}" fill="none" stroke="${color}" stroke-width="2" stroke-dasharray="${i ? "5,3" : ""}"/>`);
  for (const [x, y] of c.val.slice(1)) svg.push(`<circle cx="${sx(x)}" cy="${sy(y)}" r="3" fill="${color}"/>`);
  const last = c.val[c.val.length - 1];
  svg.push(`<text x="${L + 8 + 190 * i}" y="${T - 14}" fill="${color}">— ${c.name}: val ${last[1].toFixed(4)} at step ${last[0]}</text>`);
});
svg.push("</svg>\n");
writeFileAtomic(values.out, [new TextEncoder().encode(svg.join("\n"))]);
const first = curves[0].val[curves[0].val.length - 1][1];
for (const c of curves) {
  const last = c.val[c.val.length - 1][1];
  console.log(`${c.name}: final val loss ${last.toFixed(4)} (${(((last - first) / first) * 100).toFixed(2)}% vs ${curves[0].name})`);
}
console.log(`wrote ${values.out}`);
