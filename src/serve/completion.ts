// One completion request from validated fields to its HTTP response: the scheduler job (sampler,
// stop token, callbacks), tokens → whole characters (TokenTextStream) → stop strings held back
// (StopMatcher) → the response, either one JSON body or a text/event-stream of chunks ending in
// `data: [DONE]`. A client that goes away cancels its job, which frees its slot before the next step.
import type { Rng } from "../base/rng.ts";
import { Sampler } from "../infer/sampling.ts";
import { TokenTextStream } from "../infer/text_stream.ts";
import { EOT_TOKEN, type GPT2Config } from "../model/config.ts";
import { ApiError, type ApiErrorBody } from "./api_error.ts";
import { tokenLogprob } from "./logprobs.ts";
import type { GenerationRequest } from "./request.ts";
import { type FinishReason, type Job, QueueFullError, type Scheduler } from "./scheduler.ts";
import { chatLogprobs, completionLogprobs, completionResponse, type LoggedToken, type OpenAiFinishReason, type ResponseMeta, streamChunk, usage, usageChunk } from "./shapes.ts";
import { StopMatcher } from "./stop_strings.ts";

export interface CompletionContext {
  scheduler: Scheduler;
  config: GPT2Config;
  modelId: string;
  /** seeds for requests that give none */
  seeds: Rng;
  /** one line per finished request */
  log: (line: string) => void;
}

const OPENAI_FINISH: Partial<Record<FinishReason, OpenAiFinishReason>> = {
  eot: "stop", stop_string: "stop", max_tokens: "length", context_full: "length",
};

const SSE_HEADERS = { "content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache", "x-accel-buffering": "no" };

/** What a finished generation produced. */
interface Outcome {
  reason: FinishReason;
  error?: Error;
}

/** Text, stop strings and logprobs of one generation, fed token by token. */
class Transcript {
  private readonly textStream = new TokenTextStream();
  private readonly matcher: StopMatcher;
  /** the completion's text produced so far (stop-string checked), sent or to be sent */
  text = "";
  /** characters the tokens so far decoded to (held-back ones included): the next token's text offset */
  private produced = 0;
  readonly logged: LoggedToken[] = [];
  completionTokens = 0;

  constructor(private readonly request: GenerationRequest, private readonly config: GPT2Config, private readonly textBase: number) {
    this.matcher = new StopMatcher(request.stop);
  }

  /** The logprobs of the prompt tokens (echo): logits row r follows prompt token first + r. */
  promptLogits(first: number, logits: Float32Array, rows: number): LoggedToken[] {
    const { prompt, logprobs } = this.request;
    const { V, Vp } = this.config;
    const out: LoggedToken[] = [];
    for (let r = 0; r < rows; r++) {
      const next = first + r + 1;
      if (next < prompt.length) out.push({ token: prompt[next], logprob: tokenLogprob(logits.subarray(r * Vp, (r + 1) * Vp), V, prompt[next], logprobs ?? 0), offset: -1 });
    }
    return out;
  }

  /** A new token: returns the text that became safe to send, the token's logprobs entry, and whether a stop string ended it. */
  push(token: number, logits: Float32Array): { text: string; logged: LoggedToken | null; stopped: boolean } {
    this.completionTokens++;
    const { logprobs } = this.request;
    const logged = logprobs === null ? null : { token, logprob: tokenLogprob(logits, this.config.V, token, logprobs), offset: this.textBase + this.produced };
    const piece = token === EOT_TOKEN ? "" : this.textStream.push(token);
    this.produced += piece.length;
    const { text, stopped } = this.matcher.push(piece);
    this.text += text;
    return { text, logged, stopped };
  }

  /** At a natural end (EOT, length): the held-back bytes and characters. Returns the text to send and whether that text hit a stop string. */
  finish(): { text: string; stopped: boolean } {
    const tail = this.matcher.push(this.textStream.flush());
    const text = tail.stopped ? tail.text : tail.text + this.matcher.flush();
    this.text += text;
    return { text, stopped: tail.stopped };
  }
}

function newId(prefix: string): string {
  return `${prefix}-${crypto.randomUUID().replaceAll("-", "").slice(0, 24)}`;
}

/** Text offsets of the prompt tokens, when the prompt is echoed with logprobs. */
function promptOffsets(prompt: Int32Array): number[] {
  const stream = new TokenTextStream();
  const offsets: number[] = [];
  let at = 0;
  for (const token of prompt) {
    offsets.push(at);
    at += token === EOT_TOKEN ? "<|endoftext|>".length : stream.push(token).length;
  }
  return offsets;
}

function shutdownError(): ApiError {
  return new ApiError(503, "the server is shutting down; this completion was cut short", null, "server_shutdown");
}

export function startCompletion(ctx: CompletionContext, request: GenerationRequest, signal: AbortSignal): Response | Promise<Response> {
  const started = performance.now();
  const meta: ResponseMeta = { id: newId(request.endpoint === "chat" ? "chatcmpl" : "cmpl"), created: Math.floor(Date.now() / 1000), model: request.model ?? ctx.modelId, endpoint: request.endpoint };
  const echoText = request.echo && request.promptText !== null ? request.promptText : "";
  const transcript = new Transcript(request, ctx.config, echoText.length);
  const scorePrompt = request.echo && request.logprobs !== null;
  const promptLogged: LoggedToken[] = scorePrompt ? [{ token: request.prompt[0], logprob: null, offset: 0 }] : [];
  const seed = request.seed ?? ctx.seeds.nextU32();
  let promptTextOffsets: number[] | null = null;
  /** streaming: sends the echoed prompt with its logprobs once the prompt is scored */
  let onPromptScored: (() => void) | null = null;
  let firstTokenMs = -1;

  const logLine = (reason: FinishReason, status: string) => {
    const ms = performance.now() - started;
    const n = transcript.completionTokens;
    const decodeMs = ms - firstTokenMs;
    const speed = n > 1 && firstTokenMs >= 0 ? `, ${((n - 1) / (decodeMs / 1000)).toFixed(1)} tokens/s after the first at ${firstTokenMs.toFixed(0)} ms` : "";
    ctx.log(`${request.endpoint === "chat" ? "/v1/chat/completions" : "/v1/completions"} ${status}${request.stream ? " stream" : ""}: ${request.prompt.length} prompt + ${n} tokens in ${ms.toFixed(0)} ms${speed}; ${reason}`);
  };

  const logprobsOf = (entries: LoggedToken[]) => {
    if (request.logprobs === null) return null;
    return request.endpoint === "chat" ? chatLogprobs(entries) : completionLogprobs(entries);
  };

  const makeJob = (send: ((text: string, logged: LoggedToken[]) => void) | null, done: (outcome: Outcome) => void): Job => ({
    prompt: request.prompt,
    maxTokens: request.maxTokens,
    sampler: new Sampler(request.sampling, seed),
    stopToken: ctx.config.V > EOT_TOKEN ? EOT_TOKEN : null,
    scorePrompt,
    onPromptLogits: (first, logits, rows) => {
      const offsets = (promptTextOffsets ??= promptOffsets(request.prompt));
      for (const entry of transcript.promptLogits(first, logits, rows)) {
        entry.offset = offsets[promptLogged.length];
        promptLogged.push(entry);
      }
      if (promptLogged.length === request.prompt.length) onPromptScored?.();
    },
    onToken: (token, logits) => {
      if (firstTokenMs < 0) firstTokenMs = performance.now() - started;
      const { text, logged, stopped } = transcript.push(token, logits);
      send?.(text, logged === null ? [] : [logged]);
      if (logged !== null && send === null) transcript.logged.push(logged);
      return stopped;
    },
    onFinish: (reason, error) => done({ reason, error }),
  });

  /** Ends the transcript on a natural finish: its last text and the OpenAI finish reason. */
  const conclude = (outcome: Outcome): { text: string; finish: OpenAiFinishReason } | null => {
    const finish = OPENAI_FINISH[outcome.reason];
    if (finish === undefined) return null;
    if (outcome.reason === "stop_string") return { text: "", finish };
    const tail = transcript.finish();
    return { text: tail.text, finish: tail.stopped ? "stop" : finish };
  };

  const submit = (job: Job): (() => void) => {
    try {
      return ctx.scheduler.submit(job);
    } catch (error) {
      if (error instanceof QueueFullError && error.shuttingDown) throw shutdownError();
      if (error instanceof QueueFullError) throw new ApiError(503, `the server is busy: ${error.message}; retry later`, null, "server_busy", { "retry-after": "1" });
      throw error;
    }
  };

  if (!request.stream) {
    return new Promise<Response>((resolve, reject) => {
      let cancel: () => void = () => {};
      const job = makeJob(null, (outcome) => {
        signal.removeEventListener("abort", onAbort);
        const end = conclude(outcome);
        logLine(outcome.reason, end === null ? (outcome.reason === "cancelled" ? "client gone" : "failed") : "200");
        if (end === null) {
          if (outcome.reason === "shutdown") return resolve(Response.json(shutdownError().body(), { status: 503 }));
          const error = outcome.reason === "error" ? new ApiError(500, `generation failed: ${outcome.error?.message}`, null, "internal_error") : new ApiError(499, "the client closed the request", null, "cancelled");
          return resolve(Response.json(error.body(), { status: error.status }));
        }
        const logged = [...promptLogged, ...transcript.logged];
        resolve(Response.json(completionResponse(meta, echoText + transcript.text, logprobsOf(logged), end.finish, usage(request.prompt.length, transcript.completionTokens))));
      });
      const onAbort = () => cancel();
      try {
        cancel = submit(job);
      } catch (error) {
        return reject(error);
      }
      signal.addEventListener("abort", onAbort);
    });
  }

  // Streaming: one `data:` event per chunk. The stream starts with the chat role (chat) or the
  // echoed prompt (completions), then a chunk per token that produced text (or logprobs).
  const encoder = new TextEncoder();
  let controller!: ReadableStreamDefaultController<Uint8Array>;
  let open = true;
  let cancel: () => void = () => {};
  const write = (event: unknown) => {
    if (!open) return;
    try {
      controller.enqueue(encoder.encode(`data: ${typeof event === "string" ? event : JSON.stringify(event)}\n\n`));
    } catch {
      open = false; // the client went away between steps
      cancel();
    }
  };
  const close = () => {
    if (!open) return;
    open = false;
    try {
      controller.close();
    } catch {
      // already closed by the client
    }
  };
  const job = makeJob(
    (text, logged) => {
      const lp = logged.length > 0 ? logprobsOf(logged) : null;
      if (text !== "" || lp !== null) write(streamChunk(meta, text, lp, null));
    },
    (outcome) => {
      signal.removeEventListener("abort", onAbort);
      const end = conclude(outcome);
      logLine(outcome.reason, end === null ? (outcome.reason === "cancelled" ? "client gone" : "failed") : "200");
      if (end === null) {
        if (outcome.reason !== "cancelled") {
          const error: ApiErrorBody = outcome.reason === "shutdown" ? shutdownError().body() : new ApiError(500, `generation failed: ${outcome.error?.message}`, null, "internal_error").body();
          write(error);
        }
        return close();
      }
      if (end.text !== "") write(streamChunk(meta, end.text, null, null));
      write(streamChunk(meta, meta.endpoint === "chat" ? null : "", null, end.finish));
      if (request.includeUsage) write(usageChunk(meta, usage(request.prompt.length, transcript.completionTokens)));
      write("[DONE]");
      close();
    },
  );
  const onAbort = () => cancel();
  const body = new ReadableStream<Uint8Array>({
    start(c) {
      controller = c;
    },
    cancel() {
      open = false;
      cancel();
    },
  });
  cancel = submit(job); // throws ApiError 503 before any byte is sent
  signal.addEventListener("abort", onAbort);
  if (request.endpoint === "chat") write(streamChunk(meta, "", null, null, true));
  else if (scorePrompt) onPromptScored = () => write(streamChunk(meta, echoText, logprobsOf(promptLogged), null));
  else if (echoText !== "") write(streamChunk(meta, echoText, null, null));
  return new Response(body, { headers: SSE_HEADERS });
}
