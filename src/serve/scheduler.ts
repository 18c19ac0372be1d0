// Continuous batching over the batch engine (src/infer/batch.ts). Requests wait in a bounded FIFO
// queue, take a free slot, have their prompt prefilled, then decode together with every other
// active request, one token each per step, and leave as soon as they finish or their client goes
// away; the freed slot is taken by the next request before the next step.
//
// One iteration of the loop (all synchronous kernel work; the event loop runs between iterations,
// so HTTP I/O — new requests, streamed chunks, disconnects — is served every iteration):
//   1. queued requests take free slots;
//   2. one prefill pass (at most the engine's prefill chunk, 256 rows) for the oldest request
//      still prefilling: its own pass over its own cache, so a joining request never changes the
//      arithmetic of the others, and a long prompt delays the decoders by one chunk at a time;
//      a request whose prompt is complete samples its first token;
//   3. one decode pass over every request that has a token to decode.
// Each request samples with its own Sampler (its settings, its seeded Rng), so what a request gets
// does not depend on what else is running: the batch engine keeps rows' arithmetic independent.
import type { BatchEngine } from "../infer/batch.ts";
import type { Sampler } from "../infer/sampling.ts";

/** Why a job ended. */
export type FinishReason = "eot" | "stop_string" | "max_tokens" | "context_full" | "cancelled" | "shutdown" | "error";

export interface Job {
  prompt: Int32Array;
  /** tokens to generate at most (0: none; prompt + maxTokens ≤ maxT is checked by the caller) */
  maxTokens: number;
  sampler: Sampler;
  /** generation ends after this token (it is still passed to onToken); null = never */
  stopToken: number | null;
  /** pass the logits of every prompt position to onPromptLogits (echo with logprobs) */
  scorePrompt: boolean;
  /** rows (n,Vp) are the logits after prompt tokens first…first+n-1; a view valid during the call */
  onPromptLogits?(first: number, logits: Float32Array, rows: number): void;
  /** a new token and the logits it was sampled from (a view valid during the call); return true to end */
  onToken(token: number, logits: Float32Array): boolean;
  /** called once; error is set when reason is "error" */
  onFinish(reason: FinishReason, error?: Error): void;
}

export class QueueFullError extends Error {
  override name = "QueueFullError";
  constructor(message: string, readonly shuttingDown = false) {
    super(message);
  }
}

interface Entry {
  job: Job;
  slot: number;
  /** prompt tokens already in the cache */
  prefilled: number;
  /** the token to feed at the next decode pass, or -1 */
  next: number;
  generated: number;
  finished: boolean;
  /** admission order (the oldest prefilling entry goes first) */
  admitted: number;
}

export interface SchedulerStats {
  slots: number;
  busy: number;
  queued: number;
  /** decode passes run, the rows they took in all, and their wall time (sampling included) */
  decodeSteps: number;
  decodeRows: number;
  decodeMs: number;
  /** prefill passes' wall time */
  prefillMs: number;
  generatedTokens: number;
}

export class Scheduler {
  private readonly queue: Entry[] = [];
  private readonly active: Array<Entry | null>;
  private wake: (() => void) | null = null;
  private running = true;
  private stopped: Promise<void>;
  private admissions = 0;
  private decodeSteps = 0;
  private decodeRows = 0;
  private decodeMs = 0;
  private prefillMs = 0;
  private generatedTokens = 0;

  /** `queueLimit` requests may wait for a slot; beyond that, submit refuses. */
  constructor(private readonly engine: BatchEngine, readonly queueLimit: number, private readonly log: (line: string) => void = () => {}) {
    this.active = Array(engine.slotCount).fill(null);
    this.stopped = this.loop();
  }

  stats(): SchedulerStats {
    return {
      slots: this.active.length, busy: this.active.filter((e) => e !== null).length, queued: this.queue.length,
      decodeSteps: this.decodeSteps, decodeRows: this.decodeRows, decodeMs: this.decodeMs, prefillMs: this.prefillMs,
      generatedTokens: this.generatedTokens,
    };
  }

  /** Queues a job; throws QueueFullError when every slot is busy and the queue is full. Returns cancel(). */
  submit(job: Job): () => void {
    if (!this.running) throw new QueueFullError("the server is shutting down", true);
    const free = this.active.filter((e) => e === null).length;
    if (this.queue.length >= free + this.queueLimit) {
      throw new QueueFullError(`all ${this.active.length} slots are busy and ${this.queue.length - free} requests are queued (the limit)`);
    }
    const entry: Entry = { job, slot: -1, prefilled: 0, next: -1, generated: 0, finished: false, admitted: -1 };
    this.queue.push(entry);
    this.wake?.();
    return () => this.finish(entry, "cancelled");
  }

  /** Ends every job ("shutdown") and stops the loop. */
  async shutdown(): Promise<void> {
    this.running = false;
    for (const entry of [...this.queue, ...this.active]) if (entry !== null) this.finish(entry, "shutdown");
    this.wake?.();
    await this.stopped;
  }

  /** Frees the entry's slot or queue place at once and reports the reason (once). */
  private finish(entry: Entry, reason: FinishReason, error?: Error): void {
    if (entry.finished) return;
    entry.finished = true;
    if (entry.slot >= 0) this.active[entry.slot] = null;
    else {
      const at = this.queue.indexOf(entry);
      if (at >= 0) this.queue.splice(at, 1);
    }
    try {
      entry.job.onFinish(reason, error);
    } catch (callbackError) {
      this.log(`scheduler: onFinish failed: ${(callbackError as Error).message}`);
    }
  }

  private hasWork(): boolean {
    return this.queue.length > 0 || this.active.some((e) => e !== null);
  }

  private async loop(): Promise<void> {
    while (this.running) {
      if (!this.hasWork()) {
        await new Promise<void>((resolve) => (this.wake = resolve));
        this.wake = null;
        continue;
      }
      this.iterate();
      await new Promise<void>((resolve) => setImmediate(resolve)); // let HTTP I/O run
    }
  }

  private iterate(): void {
    this.admit();
    const oldest = this.oldestPrefilling();
    if (oldest !== null) {
      const start = performance.now();
      this.guard([oldest], () => this.prefillChunk(oldest));
      this.prefillMs += performance.now() - start;
    }
    const decoding = this.active.filter((e): e is Entry => e !== null && e.next >= 0);
    if (decoding.length > 0) {
      const start = performance.now();
      this.guard(decoding, () => this.decodeStep(decoding));
      this.decodeMs += performance.now() - start;
    }
  }

  /** Runs kernel work for `entries`; an exception ends those jobs with "error" (the server keeps going). */
  private guard(entries: Entry[], work: () => void): void {
    try {
      work();
    } catch (error) {
      this.log(`scheduler: ${(error as Error).stack ?? error}`);
      for (const entry of entries) this.finish(entry, "error", error as Error);
    }
  }

  private admit(): void {
    for (let slot = 0; slot < this.active.length && this.queue.length > 0; slot++) {
      if (this.active[slot] !== null) continue;
      const entry = this.queue.shift()!;
      entry.slot = slot;
      this.active[slot] = entry;
      entry.admitted = this.admissions++;
      this.engine.slots[slot].reset();
    }
  }

  private oldestPrefilling(): Entry | null {
    let oldest: Entry | null = null;
    for (const entry of this.active) {
      if (entry === null || entry.next >= 0) continue;
      if (oldest === null || entry.admitted < oldest.admitted) oldest = entry;
    }
    return oldest;
  }

  private prefillChunk(entry: Entry): void {
    const { job } = entry;
    if (job.maxTokens === 0 && !job.scorePrompt) return this.finish(entry, "max_tokens");
    const slot = this.engine.slots[entry.slot];
    const begin = entry.prefilled;
    const end = Math.min(job.prompt.length, begin + slot.prefillChunk);
    const chunk = job.prompt.subarray(begin, end);
    const { Vp } = this.engine.config;
    let last: Float32Array;
    if (job.scorePrompt) {
      const all = slot.prefill(chunk, { allLogits: true });
      job.onPromptLogits?.(begin, all, end - begin);
      last = all.subarray((end - begin - 1) * Vp, (end - begin) * Vp);
    } else {
      last = slot.prefill(chunk);
    }
    entry.prefilled = end;
    if (entry.finished || end < job.prompt.length) return;
    if (job.maxTokens === 0) return this.finish(entry, "max_tokens");
    this.emit(entry, last);
  }

  private decodeStep(entries: Entry[]): void {
    const logits = this.engine.decode(entries.map((e) => e.slot), entries.map((e) => e.next));
    this.decodeSteps++;
    this.decodeRows += entries.length;
    const { Vp } = this.engine.config;
    entries.forEach((entry, i) => this.emit(entry, logits.subarray(i * Vp, (i + 1) * Vp)));
  }

  /** Samples the entry's next token from `logits`, hands it to the job, and ends the job if it is done. */
  private emit(entry: Entry, logits: Float32Array): void {
    if (entry.finished) return; // its client went away during this iteration
    const { job } = entry;
    const { V, maxT } = this.engine.config;
    const token = job.sampler.sample(logits, V);
    entry.generated++;
    this.generatedTokens++;
    let wantsStop: boolean;
    try {
      wantsStop = job.onToken(token, logits);
    } catch (error) {
      return this.finish(entry, "error", error as Error);
    }
    if (entry.finished) return; // cancelled from inside the callback
    if (wantsStop) return this.finish(entry, "stop_string");
    if (token === job.stopToken) return this.finish(entry, "eot");
    if (entry.generated === job.maxTokens) return this.finish(entry, "max_tokens");
    if (job.prompt.length + entry.generated === maxT) return this.finish(entry, "context_full");
    entry.next = token;
  }
}
