// The parent's handle on one in-process worker: sends a check, waits at most the timeout, and
// turns a worker that dies (signal, uncaught error) into a crash and one that does not answer into
// a hang — then starts a fresh worker for the next case.
import { readFileSync, rmSync } from "node:fs";
import { join, resolve } from "node:path";
import type { CheckResult } from "./outcome.ts";
import type { CheckReply, CheckRequest } from "./worker.ts";

const WORKER = resolve(import.meta.dir, "worker.ts");

interface Pending {
  resolve: (result: CheckResult) => void;
  timer: Timer;
}

export class WorkerClient {
  private proc: Bun.Subprocess | null = null;
  private ready: Promise<void> | null = null;
  private pending: Pending | null = null;
  private nextId = 0;
  private spawned = 0;
  private logPath = "";

  constructor(private readonly scratch: string, private readonly name: string) {}

  private start(): Promise<void> {
    this.logPath = join(this.scratch, `${this.name}-${this.spawned++}.stderr`);
    let markReady: () => void = () => {};
    const ready = new Promise<void>((r) => (markReady = r));
    // The worker works in the scratch folder: relative paths a mutated case names land there.
    const proc = Bun.spawn(["bun", WORKER], {
      cwd: this.scratch, stdin: "ignore", stdout: "ignore", stderr: Bun.file(this.logPath),
      env: { ...process.env, LLMTS_THREADS: "1", NO_COLOR: "1" },
      serialization: "json",
      ipc: (message: CheckReply) => {
        if (message.id === -1) return markReady();
        const pending = this.pending;
        if (pending === null) return;
        this.pending = null;
        clearTimeout(pending.timer);
        pending.resolve(message.result);
      },
    });
    this.proc = proc;
    proc.exited.then(() => {
      if (this.proc !== proc) return;
      this.proc = null;
      this.ready = null;
      markReady();
      const pending = this.pending;
      if (pending === null) return;
      this.pending = null;
      clearTimeout(pending.timer);
      const how = proc.signalCode !== null ? `killed by ${proc.signalCode}` : `exited with ${proc.exitCode}`;
      pending.resolve({ verdict: "crash", detail: `the worker ${how}: ${this.stderrTail()}` });
    });
    return ready;
  }

  private stderrTail(): string {
    try {
      return readFileSync(this.logPath, "utf8").trim().split("\n").slice(-4).join(" | ");
    } catch {
      return "";
    }
  }

  /** Runs `format`'s check on the case in `dir`; at most `timeoutMs`. */
  async check(format: string, dir: string, timeoutMs: number): Promise<CheckResult> {
    if (this.proc === null || this.ready === null) this.ready = this.start();
    await this.ready;
    const proc = this.proc;
    if (proc === null) return { verdict: "crash", detail: `the worker died while starting: ${this.stderrTail()}` };
    const started = performance.now();
    return new Promise<CheckResult>((resolvePromise) => {
      const timer = setTimeout(() => {
        if (this.pending === null) return;
        this.pending = null;
        this.proc = null;
        this.ready = null;
        proc.kill("SIGKILL");
        resolvePromise({ verdict: "hang", detail: `no answer after ${(performance.now() - started).toFixed(0)} ms` });
      }, timeoutMs);
      this.pending = { resolve: resolvePromise, timer };
      proc.send({ id: this.nextId++, format, dir } satisfies CheckRequest);
    });
  }

  close(): void {
    const proc = this.proc;
    this.proc = null;
    proc?.kill("SIGKILL");
    rmSync(this.logPath, { force: true });
  }
}
