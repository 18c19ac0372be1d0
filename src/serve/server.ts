// The HTTP server (Bun.serve): OpenAI-compatible routes, the playground page, and a clean stop.
//   GET  /                      the playground page (plain HTML, page.html) and GET /playground.js
//   GET  /health                {"status": "ok", slots, queued…}
//   GET  /v1/models             the loaded checkpoint as one model; GET /v1/models/{id}
//   POST /v1/completions        prompt → text (stream: text/event-stream)
//   POST /v1/chat/completions   messages → reply (chat_template.ts)
// Unknown path 404, wrong method 405 (with Allow), body over the limit 413, busy 503 + Retry-After,
// all in OpenAI's error shape. No CORS headers: other web origins cannot drive the server from a
// browser (the page is same-origin). Any Authorization header is accepted and ignored.
import { readFileSync } from "node:fs";
import { Rng } from "../base/rng.ts";
import { encode } from "../data/tokenizer.ts";
import { BatchEngine } from "../infer/batch.ts";
import { TokenTextStream } from "../infer/text_stream.ts";
import type { GPT2Weights } from "../model/weights.ts";
import { ApiError, asApiError, errorResponse } from "./api_error.ts";
import { readJsonObject } from "./body.ts";
import { type CompletionContext, startCompletion } from "./completion.ts";
import { type GenerationRequest, parseChatRequest, parseCompletionRequest } from "./request.ts";
import { Scheduler } from "./scheduler.ts";

export interface ServerOptions {
  weights: GPT2Weights;
  /** the model's name in /v1/models and responses */
  modelId: string;
  host: string;
  /** 0: any free port */
  port: number;
  slots: number;
  /** requests that may wait for a slot */
  queue: number;
  maxBodyBytes: number;
  log: (line: string) => void;
}

export interface RunningServer {
  url: URL;
  scheduler: Scheduler;
  /** Ends every open stream with a final event, answers waiting requests 503, releases the port. */
  stop(): Promise<void>;
}

const PAGE = readFileSync(new URL("./page.html", import.meta.url), "utf8");
const SCRIPT = readFileSync(new URL("./playground.js", import.meta.url), "utf8");
/** The page loads nothing from elsewhere; the policy makes the browser enforce it. */
const PAGE_HEADERS = { "content-security-policy": "default-src 'self'; style-src 'self' 'unsafe-inline'", "x-content-type-options": "nosniff" };

const IDLE_TIMEOUT_S = 60;

interface Route {
  methods: string[];
  handle(request: Request, params: string[], server: Bun.Server<undefined>): Response | Promise<Response>;
}

export function startServer(options: ServerOptions): RunningServer {
  const { weights, modelId, log } = options;
  const config = weights.config;
  const engine = new BatchEngine(weights, options.slots);
  encode("load the tokenizer now, not during the first request");
  const scheduler = new Scheduler(engine, options.queue, log);
  const created = Math.floor(Date.now() / 1000);
  const seedWords = crypto.getRandomValues(new Uint32Array(2));
  const context: CompletionContext = { scheduler, config, modelId, seeds: new Rng(seedWords[0] * 2 ** 21 + (seedWords[1] >>> 11)), log };
  const modelObject = () => ({ id: modelId, object: "model", created, owned_by: "llm.ts", context_length: config.maxT, vocab_size: config.V });
  const decodeText = (ids: Int32Array) => {
    const stream = new TokenTextStream();
    let text = "";
    for (const id of ids) text += stream.push(id);
    return text + stream.flush();
  };

  const json = async (request: Request) => readJsonObject(request, options.maxBodyBytes);
  /** A valid completion request may wait in the queue and then generate for longer than the idle timeout. */
  const generation = (request: Request, server: Bun.Server<undefined>, parsed: GenerationRequest) => {
    server.timeout(request, 0);
    return startCompletion(context, parsed, request.signal);
  };
  const routes: Array<[RegExp, Route]> = [
    [/^\/$/, { methods: ["GET", "HEAD"], handle: () => new Response(PAGE, { headers: { "content-type": "text/html; charset=utf-8", ...PAGE_HEADERS } }) }],
    [/^\/playground\.js$/, { methods: ["GET", "HEAD"], handle: () => new Response(SCRIPT, { headers: { "content-type": "text/javascript; charset=utf-8", ...PAGE_HEADERS } }) }],
    [/^\/favicon\.ico$/, { methods: ["GET", "HEAD"], handle: () => new Response(null, { status: 204 }) }],
    [/^\/health$/, { methods: ["GET", "HEAD"], handle: () => Response.json({ status: "ok", model: modelId, ...scheduler.stats() }) }],
    [/^\/v1\/models$/, { methods: ["GET"], handle: () => Response.json({ object: "list", data: [modelObject()] }) }],
    [/^\/v1\/models\/(.+)$/, {
      methods: ["GET"],
      handle: (_request, [id]) => {
        if (decodeURIComponent(id) !== modelId) throw new ApiError(404, `the model '${decodeURIComponent(id)}' does not exist; this server has '${modelId}'`, "model", "model_not_found");
        return Response.json(modelObject());
      },
    }],
    [/^\/v1\/completions$/, { methods: ["POST"], handle: async (request, _, server) => generation(request, server, parseCompletionRequest(await json(request), config, decodeText)) }],
    [/^\/v1\/chat\/completions$/, { methods: ["POST"], handle: async (request, _, server) => generation(request, server, parseChatRequest(await json(request), config)) }],
  ];

  const route = async (request: Request, server: Bun.Server<undefined>): Promise<Response> => {
    const url = new URL(request.url);
    for (const [pattern, r] of routes) {
      const match = pattern.exec(url.pathname);
      if (match === null) continue;
      if (!r.methods.includes(request.method)) {
        throw new ApiError(405, `${request.method} is not allowed on ${url.pathname}; use ${r.methods.join(" or ")}`, null, "method_not_allowed", { allow: r.methods.join(", ") });
      }
      return await r.handle(request, match.slice(1), server);
    }
    throw new ApiError(404, `no route ${request.method} ${url.pathname} (the API is under /v1: /v1/completions, /v1/chat/completions, /v1/models; and /health)`, null, "unknown_url");
  };

  let server: ReturnType<typeof Bun.serve>;
  try {
    server = Bun.serve({
      hostname: options.host,
      port: options.port,
      // The body limit is enforced by readJsonObject (413 in OpenAI's shape); Bun's own limit only
      // bounds what is read before that check runs.
      maxRequestBodySize: options.maxBodyBytes + 65536,
      // Idle connections (keep-alive, a stalled upload) close after a minute; completion requests
      // lift the limit for themselves once their body is read and valid (see generation()).
      idleTimeout: IDLE_TIMEOUT_S,
      async fetch(request, srv) {
        try {
          return await route(request, srv);
        } catch (error) {
          const apiError = asApiError(error);
          if (apiError.status >= 500 && apiError.code === "internal_error") log(`error on ${request.method} ${new URL(request.url).pathname}: ${(error as Error).stack ?? error}`);
          return errorResponse(apiError);
        }
      },
      error(error) {
        log(`error: ${error.stack ?? error}`);
        return errorResponse(asApiError(error));
      },
    });
  } catch (error) {
    void scheduler.shutdown();
    throw error;
  }

  let stopping: Promise<void> | null = null;
  return {
    url: server.url,
    scheduler,
    stop() {
      stopping ??= (async () => {
        // Stop accepting first, then end the jobs: streams get their final event, waiting
        // requests their 503; give the responses a moment to flush before closing sockets.
        const graceful = server.stop(false);
        await scheduler.shutdown();
        await Promise.race([graceful, Bun.sleep(2000)]);
        await server.stop(true);
      })();
      return stopping;
    },
  };
}
