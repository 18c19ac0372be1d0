// A benchmark given a flag it does not know says so in one line and exits 2: no stack trace.
import { expect, test } from "bun:test";
import { readdirSync } from "node:fs";
import { join } from "node:path";

const BENCH = join(import.meta.dir, "..", "bench");
const scripts = readdirSync(BENCH).filter((f) => f.endsWith(".ts") && f !== "args.ts");

test("every benchmark parses its flags through bench/args.ts", async () => {
  for (const file of scripts) {
    const source = await Bun.file(join(BENCH, file)).text();
    expect(`${file}: ${source.includes("parseArgs(")}`).toBe(`${file}: false`);
  }
});

for (const file of ["matmul.ts", "step.ts", "suite.ts"]) {
  test(`bun bench/${file} --no-such-flag exits 2 with one line`, () => {
    const run = Bun.spawnSync(["bun", join(BENCH, file), "--no-such-flag"], { stderr: "pipe", stdout: "pipe" });
    const stderr = run.stderr.toString();
    expect(run.exitCode).toBe(2);
    expect(stderr).toContain(`bench/${file}: Unknown option '--no-such-flag'`);
    expect(stderr).not.toMatch(/^\s+at /m);
  });
}
