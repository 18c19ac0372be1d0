// Every command in the README and docs/ must run as written. Running them all would take hours
// (they train models), so each is checked at the level a typo breaks it: the npm script or file it
// names exists, every --flag it passes is one its program knows (from the program's --help, or
// the option table in its source), and checkpoint file names follow the trainer's naming.
import { describe, expect, test } from "bun:test";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";

const ROOT = resolve(import.meta.dir, "..");
const DOCS = ["README.md", ...readdirSync(join(ROOT, "docs")).filter((f) => f.endsWith(".md")).map((f) => join("docs", f))];
const SCRIPTS = (JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { scripts: Record<string, string> }).scripts;
const STARTS = /^(bun|npm|mpirun|env|\/usr\/bin\/python3|python3|bash|curl)\s/;

/** Shell-like split: quotes group, backslash-newlines were joined by the caller. */
function words(line: string): string[] {
  const out: string[] = [];
  const re = /'([^']*)'|"((?:[^"\\]|\\.)*)"|(\S+)/g;
  for (let m = re.exec(line); m !== null; m = re.exec(line)) out.push(m[1] ?? m[2] ?? m[3]);
  return out;
}

/** Commands in fenced sh blocks and in inline `code` spans that start like a command. */
function commandsOf(file: string): Array<{ file: string; command: string }> {
  const text = readFileSync(join(ROOT, file), "utf8");
  const out: Array<{ file: string; command: string }> = [];
  for (const block of text.matchAll(/```(?:sh|bash|shell)\n([\s\S]*?)```/g)) {
    for (const raw of block[1].replace(/\\\n\s*/g, " ").split("\n")) {
      const line = raw.replace(/\s+#\s.*$/, "").trim();
      if (line !== "" && !line.startsWith("#")) for (const part of line.split(/\s*&&\s*/)) out.push({ file, command: part });
    }
  }
  for (const span of text.matchAll(/`([^`\n]+)`/g)) {
    const code = span[1].trim();
    if (STARTS.test(code) && !code.includes("…") && !code.includes("...")) for (const part of code.split(/\s*&&\s*/)) out.push({ file, command: part });
  }
  return out;
}

/** The program a command runs (an entry file or an npm script's file) and its arguments. */
function programOf(argv: string[]): { entry: string | null; args: string[]; problem?: string } {
  let a: string[] = [...argv];
  if (a[0] === "env") {
    a.shift();
    for (let w: string = a[0] ?? ""; w.startsWith("-") || w.includes("="); w = a[0] ?? "") a.splice(0, w === "-u" ? 2 : 1);
  }
  if (a[0] === "mpirun") {
    const at = a.indexOf("bun");
    if (at < 0) return { entry: null, args: [] }; // a fragment such as `mpirun --mca …`
    a = a.slice(at);
  }
  const [tool, ...rest] = a;
  if (tool === "npm") {
    if (rest[0] === "run") return scriptProgram(rest[1], rest.slice(2));
    return { entry: null, args: [] }; // npm install / ci / test
  }
  if (tool === "bun") {
    if (rest[0] === "run") return scriptProgram(rest[1], rest.slice(2));
    if (rest[0] === "test" || rest[0] === "install" || rest[0] === "--version") return { entry: null, args: [] };
    return fileProgram(rest[0], rest.slice(1));
  }
  if (tool === "bash") return fileProgram(rest[0], rest.slice(1));
  if (tool === "/usr/bin/python3" || tool === "python3") return fileProgram(rest[0], rest.slice(1));
  return { entry: null, args: [] }; // curl: checked by the server's own tests
}

function scriptProgram(name: string | undefined, args: string[]): { entry: string | null; args: string[]; problem?: string } {
  if (name === undefined) return { entry: null, args: [], problem: "npm/bun run without a script name" };
  const script = SCRIPTS[name];
  if (script === undefined) {
    if (existsSync(join(ROOT, name))) return fileProgram(name, args);
    return { entry: null, args: [], problem: `no package.json script "${name}"` };
  }
  const parts = words(script);
  const file = parts.find((p) => /\.(ts|sh|py)$/.test(p)) ?? null;
  const rest = args[0] === "--" ? args.slice(1) : args;
  if (file === null) return { entry: null, args: [] }; // e.g. tsc
  return { entry: file, args: [...parts.slice(parts.indexOf(file) + 1), ...rest] };
}

function fileProgram(path: string | undefined, args: string[]): { entry: string | null; args: string[]; problem?: string } {
  if (path === undefined || !existsSync(join(ROOT, path))) return { entry: null, args: [], problem: `no file ${path}` };
  return { entry: path, args };
}

const helpCache = new Map<string, string>();
/** What a program says about its flags: its --help (TypeScript CLIs) plus its source. */
function knownFlagsText(entry: string): string {
  let text = helpCache.get(entry);
  if (text === undefined) {
    const source = readFileSync(join(ROOT, entry), "utf8");
    text = source;
    if (entry.endsWith(".ts")) {
      const help = Bun.spawnSync(["bun", entry, "--help"], { cwd: ROOT, stdout: "pipe", stderr: "pipe", env: { ...process.env, NO_COLOR: "1" } });
      if (help.exitCode === 0) text += help.stdout.toString();
    }
    helpCache.set(entry, text);
  }
  return text;
}

function knowsFlag(entry: string, flag: string): boolean {
  const text = knownFlagsText(entry);
  const name = flag.replace(/^--/, "").replace(/=.*$/, "");
  return text.includes(`--${name}`) || new RegExp(`["']?${name}["']?\\s*:\\s*\\{\\s*type`).test(text);
}

const commands = DOCS.flatMap(commandsOf);

describe("commands in the README and docs/", () => {
  test("there are commands to check (the extraction works)", () => {
    expect(commands.length).toBeGreaterThan(20);
    expect(commands.some((c) => c.command.startsWith("bun run train"))).toBe(true);
  });

  for (const { file, command } of commands) {
    test(`${file}: ${command}`, () => {
      const argv = words(command);
      const program = programOf(argv);
      expect(program.problem).toBeUndefined();
      if (program.entry === null) return;
      // A shell wrapper (scripts/zig.sh) passes its flags on to the tool it wraps.
      const checkFlags = !program.entry.endsWith(".sh");
      for (const arg of program.args) {
        if (checkFlags && arg.startsWith("--") && arg.length > 2) expect(`${arg} known: ${knowsFlag(program.entry, arg)}`).toBe(`${arg} known: true`);
        // A checkpoint the trainer writes is ckpt_ + at least 8 digits.
        for (const name of arg.match(/ckpt_\d+\.llmts/g) ?? []) expect(name).toMatch(/^ckpt_\d{8,}\.llmts$/);
        // Repository files named on the command line exist (user paths such as runs/, data/ are made by earlier commands).
        if (/^(scripts|bench|src|test|node_modules|kernels|docs)\//.test(arg) && !arg.includes("*")) expect(`${arg} exists: ${existsSync(join(ROOT, arg))}`).toBe(`${arg} exists: true`);
      }
    });
  }
});
