// The bad-request corpus: malformed JSON, wrong types, huge values, bad token ids, unicode edge
// cases in prompts and stop strings, wrong routes and methods, oversized bodies, early
// disconnects at every stage, garbage bytes, and 200 concurrent connections — against one real
// server process. Every case checks the answer (status, OpenAI error shape, the field named), then
// that the server still serves (/health and a real completion); at the end the process must still
// be running, must have logged no internal error, and must hold no slot or queue place.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { health, type ServeProcess, startServe, writeServeTestModel } from "./helpers/serve.ts";

let dir: string;
let server: ServeProcess;
let port = 0;

beforeAll(async () => {
  dir = mkdtempSync(`${tmpdir()}/llmts-serve-bad-`);
  const { path } = writeServeTestModel(dir);
  server = await startServe(["--ckpt", path, "--slots", "8", "--queue", "32"]);
  port = Number(new URL(server.url).port);
});

afterAll(async () => {
  await server?.stop();
  rmSync(dir, { recursive: true, force: true });
});

const post = (path: string, body: string | Uint8Array, init: RequestInit = {}) => fetch(`${server.url}${path.replace(/^\//, "")}`, { method: "POST", body, ...init });
const completion = (body: unknown) => post("v1/completions", JSON.stringify(body));
const chat = (body: unknown) => post("v1/chat/completions", JSON.stringify(body));

interface Expected {
  status: number;
  param?: string | null;
  code?: string;
  contains?: string;
}

/** The answer is an OpenAI error: exactly {message, type, param, code}, a useful message. */
async function expectError(response: Response, want: Expected): Promise<void> {
  const text = await response.text();
  expect(`${response.status} ${text.slice(0, 300)}`).toStartWith(`${want.status} `);
  const body = JSON.parse(text) as { error: Record<string, unknown> };
  expect(Object.keys(body)).toEqual(["error"]);
  expect(Object.keys(body.error).sort()).toEqual(["code", "message", "param", "type"]);
  expect(typeof body.error.message).toBe("string");
  expect((body.error.message as string).length).toBeGreaterThan(10);
  expect(body.error.type).toBe(want.status >= 500 ? "server_error" : "invalid_request_error");
  if (want.param !== undefined) expect(body.error.param).toBe(want.param);
  if (want.code !== undefined) expect(body.error.code).toBe(want.code);
  if (want.contains !== undefined) expect(body.error.message as string).toContain(want.contains);
}

async function expectOk(response: Response): Promise<void> {
  const text = await response.text();
  expect(`${response.status} ${text.slice(0, 300)}`).toStartWith("200 ");
  expect(JSON.parse(text).choices).toHaveLength(1);
}

/** Raw bytes over TCP; closes after `closeAfterMs` (or when the server does); returns what came back. */
function rawSocket(bytes: string | Uint8Array, closeAfterMs: number): Promise<string> {
  return new Promise((resolve) => {
    const socket = connect(port, "127.0.0.1");
    let got = "";
    const done = () => {
      socket.destroy();
      resolve(got);
    };
    socket.on("connect", () => {
      if (bytes.length > 0) socket.write(bytes);
      setTimeout(done, closeAfterMs);
    });
    socket.on("data", (d) => (got += d.toString("latin1")));
    socket.on("error", done);
    socket.on("close", done);
  });
}

const request = (body: string, extra = "") => `POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n${extra}Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;

const ids = (n: number) => Array.from({ length: n }, (_, i) => (i * 7919) % 50000);
const deep = (n: number) => `{"prompt": ${"[".repeat(n)}1${"]".repeat(n)}}`;

const CASES: Array<[string, () => Promise<void>]> = [
  // ---- malformed bodies ----
  ["malformed JSON (truncated)", async () => expectError(await post("v1/completions", '{"prompt": "a",'), { status: 400, code: "invalid_json" })],
  ["malformed JSON (single quotes)", async () => expectError(await post("v1/completions", "{'prompt': 'a'}"), { status: 400, code: "invalid_json" })],
  ["empty body", async () => expectError(await post("v1/completions", ""), { status: 400, code: "invalid_json", contains: "empty" })],
  ["body is null", async () => expectError(await post("v1/completions", "null"), { status: 400, contains: "null" })],
  ["body is an array", async () => expectError(await post("v1/completions", "[1,2]"), { status: 400, contains: "an array" })],
  ["body is a string", async () => expectError(await post("v1/chat/completions", '"hi"'), { status: 400, code: "invalid_json" })],
  ["body is not UTF-8", async () => expectError(await post("v1/completions", new Uint8Array([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x7d])), { status: 400, contains: "UTF-8" })],
  ["body starts with a UTF-8 byte-order mark (skipped, as UTF-8 decoders do)", async () => expectOk(await post("v1/completions", '\ufeff{"prompt": "a", "max_tokens": 1}'))],
  ["JSON nested 100,000 deep", async () => expectError(await post("v1/completions", deep(100_000)), { status: 400 })],
  ["JSON nested 500 deep in the prompt", async () => expectError(await post("v1/completions", deep(500)), { status: 400, param: "prompt[0]" })],
  ["body over 1 MiB with Content-Length", async () => expectError(await completion({ prompt: "x".repeat(1_100_000) }), { status: 413, code: "request_too_large" })],
  ["body over 1 MiB, chunked (no Content-Length)", async () => {
    const chunk = new TextEncoder().encode(" ".repeat(64 * 1024));
    let sent = 0;
    const body = new ReadableStream<Uint8Array>({ pull(c) { if (sent++ < 20) c.enqueue(chunk); else c.close(); } });
    await expectError(await fetch(`${server.url}v1/completions`, { method: "POST", body, duplex: "half" } as RequestInit), { status: 413 });
  }],
  // ---- wrong types and values ----
  ["prompt missing", async () => expectError(await completion({ max_tokens: 3 }), { status: 400, param: "prompt", code: "missing_field" })],
  ["prompt is a number", async () => expectError(await completion({ prompt: 42 }), { status: 400, param: "prompt", code: "invalid_type" })],
  ["prompt is an object", async () => expectError(await completion({ prompt: { text: "a" } }), { status: 400, param: "prompt" })],
  ["two prompts (n choices)", async () => expectError(await completion({ prompt: ["a", "b"] }), { status: 400, param: "prompt", code: "unsupported_value" })],
  ["max_tokens is a string", async () => expectError(await completion({ prompt: "a", max_tokens: "16" }), { status: 400, param: "max_tokens", code: "invalid_type" })],
  ["max_tokens negative", async () => expectError(await completion({ prompt: "a", max_tokens: -1 }), { status: 400, param: "max_tokens" })],
  ["max_tokens fractional", async () => expectError(await completion({ prompt: "a", max_tokens: 1.5 }), { status: 400, param: "max_tokens" })],
  ["max_tokens 1e308", async () => expectError(await completion({ prompt: "a", max_tokens: 1e308 }), { status: 400, param: "max_tokens" })],
  ["max_tokens 1e400 (Infinity)", async () => expectError(await post("v1/completions", '{"prompt": "a", "max_tokens": 1e400}'), { status: 400, param: "max_tokens" })],
  ["temperature negative", async () => expectError(await completion({ prompt: "a", temperature: -0.5 }), { status: 400, param: "temperature" })],
  ["temperature above 2", async () => expectError(await completion({ prompt: "a", temperature: 3 }), { status: 400, param: "temperature" })],
  ["temperature is a boolean", async () => expectError(await completion({ prompt: "a", temperature: true }), { status: 400, param: "temperature", code: "invalid_type" })],
  ["temperature subnormal (no finite inverse)", async () => expectError(await completion({ prompt: "a", temperature: 5e-324 }), { status: 400, param: "temperature" })],
  ["top_p 0", async () => expectError(await completion({ prompt: "a", top_p: 0 }), { status: 400, param: "top_p" })],
  ["top_p 1.5", async () => expectError(await completion({ prompt: "a", top_p: 1.5 }), { status: 400, param: "top_p" })],
  ["top_k negative", async () => expectError(await completion({ prompt: "a", top_k: -1 }), { status: 400, param: "top_k" })],
  ["top_k 1e15 (huge: every token)", async () => expectOk(await completion({ prompt: "a", top_k: 1e15, max_tokens: 3, seed: 1 }))],
  ["seed beyond 2^53", async () => expectError(await completion({ prompt: "a", seed: 2 ** 60 }), { status: 400, param: "seed" })],
  ["seed is a string", async () => expectError(await completion({ prompt: "a", seed: "abc" }), { status: 400, param: "seed", code: "invalid_type" })],
  ["n = 2", async () => expectError(await completion({ prompt: "a", n: 2 }), { status: 400, param: "n", code: "unsupported_value" })],
  ["stream is a string", async () => expectError(await completion({ prompt: "a", stream: "yes" }), { status: 400, param: "stream" })],
  ["stream_options without stream", async () => expectError(await completion({ prompt: "a", stream_options: { include_usage: true } }), { status: 400, param: "stream_options" })],
  ["logprobs 6 (limit 5)", async () => expectError(await completion({ prompt: "a", logprobs: 6 }), { status: 400, param: "logprobs" })],
  ["logprobs true on /v1/completions", async () => expectError(await completion({ prompt: "a", logprobs: true }), { status: 400, param: "logprobs", code: "invalid_type" })],
  ["unknown field", async () => expectError(await completion({ prompt: "a", foo: 1 }), { status: 400, param: "foo", code: "unknown_field" })],
  ["messages sent to /v1/completions", async () => expectError(await completion({ messages: [] }), { status: 400, param: "messages", contains: "/v1/chat/completions" })],
  ["frequency_penalty 0.5 (unsupported)", async () => expectError(await completion({ prompt: "a", frequency_penalty: 0.5 }), { status: 400, param: "frequency_penalty", code: "unsupported_value" })],
  ["neutral values of unsupported fields are accepted", async () => expectOk(await completion({ prompt: "a", max_tokens: 2, n: 1, frequency_penalty: 0, presence_penalty: 0, logit_bias: {}, user: "u", best_of: 1 }))],
  // ---- token ids and the context ----
  ["token id = V", async () => expectError(await completion({ prompt: [1, 50257] }), { status: 400, param: "prompt", code: "invalid_token", contains: "token 1" })],
  ["token id negative", async () => expectError(await completion({ prompt: [-1] }), { status: 400, code: "invalid_token" })],
  ["token id fractional", async () => expectError(await completion({ prompt: [1.5] }), { status: 400, code: "invalid_token" })],
  ["token id as a string", async () => expectError(await completion({ prompt: ["1", 2] }), { status: 400 })],
  ["token id 1e300", async () => expectError(await completion({ prompt: [1e300] }), { status: 400, code: "invalid_token" })],
  ["empty token list", async () => expectError(await completion({ prompt: [] }), { status: 400, param: "prompt" })],
  ["prompt of 1024 ids = the whole context", async () => expectError(await completion({ prompt: ids(1024) }), { status: 400, param: "prompt", code: "context_length_exceeded" })],
  ["prompt of 1023 ids + 1 token: the last position", async () => expectOk(await completion({ prompt: ids(1023), max_tokens: 1 }))],
  ["prompt of 900 KB text", async () => expectError(await completion({ prompt: "word ".repeat(180_000) }), { status: 400, code: "context_length_exceeded" })],
  // ---- unicode ----
  ["prompt with an unpaired surrogate", async () => expectError(await post("v1/completions", '{"prompt": "ab\\ud800cd"}'), { status: 400, param: "prompt", code: "invalid_unicode", contains: "index 2" })],
  ["prompt with emoji, CJK, combining marks, ZWJ, RTL", async () => expectOk(await completion({ prompt: "👩‍👩‍👧 語言 é ñ שלום مرحبا 🏳️‍🌈", max_tokens: 8 }))],
  ["prompt with NUL and control characters", async () => expectOk(await completion({ prompt: "a\u0000b\u0001\u007f\u2028", max_tokens: 4 }))],
  ["prompt with <|endoftext|> inside", async () => expectOk(await completion({ prompt: "end<|endoftext|>start", max_tokens: 4 }))],
  ["stop with an unpaired surrogate", async () => expectError(await post("v1/completions", '{"prompt": "a", "stop": ["ok", "\\udc00"]}'), { status: 400, param: "stop[1]", code: "invalid_unicode" })],
  ["stop is the empty string", async () => expectError(await completion({ prompt: "a", stop: "" }), { status: 400, param: "stop" })],
  ["five stop strings (limit 4)", async () => expectError(await completion({ prompt: "a", stop: ["1", "2", "3", "4", "5"] }), { status: 400, param: "stop" })],
  ["stop string of 501 characters", async () => expectError(await completion({ prompt: "a", stop: ["x".repeat(501)] }), { status: 400, param: "stop[0]" })],
  ["stop is a number", async () => expectError(await completion({ prompt: "a", stop: 5 }), { status: 400, param: "stop", code: "invalid_type" })],
  ["stop strings with emoji, NUL and a lone combining mark", async () => expectOk(await completion({ prompt: "a", stop: ["😀", "\u0000", "\u0301", "語"], max_tokens: 8, stream: false }))],
  ["streamed with emoji stop strings", async () => {
    const response = await completion({ prompt: "🙂", stop: ["🙃", "\n\n"], max_tokens: 16, stream: true });
    expect(response.status).toBe(200);
    expect((await response.text()).trimEnd().endsWith("data: [DONE]")).toBe(true);
  }],
  // ---- chat ----
  ["chat without messages", async () => expectError(await chat({ model: "x" }), { status: 400, param: "messages", code: "missing_field" })],
  ["chat with no messages", async () => expectError(await chat({ messages: [] }), { status: 400, param: "messages" })],
  ["chat role unknown", async () => expectError(await chat({ messages: [{ role: "robot", content: "x" }] }), { status: 400, param: "messages[0].role" })],
  ["chat content is an image", async () => expectError(await chat({ messages: [{ role: "user", content: [{ type: "image_url", image_url: { url: "x" } }] }] }), { status: 400, param: "messages[0].content[0]" })],
  ["chat content is a number", async () => expectError(await chat({ messages: [{ role: "user", content: 3 }] }), { status: 400, param: "messages[0].content" })],
  ["chat message with tool calls", async () => expectError(await chat({ messages: [{ role: "assistant", content: "x", tool_calls: [{ id: "1" }] }] }), { status: 400, param: "messages[0].tool_calls" })],
  ["chat with a prompt field", async () => expectError(await chat({ prompt: "x", messages: [{ role: "user", content: "x" }] }), { status: 400, param: "prompt", contains: "messages" })],
  ["chat top_logprobs without logprobs", async () => expectError(await chat({ messages: [{ role: "user", content: "x" }], top_logprobs: 2 }), { status: 400, param: "top_logprobs" })],
  ["chat with unpaired surrogate in content", async () => expectError(await post("v1/chat/completions", '{"messages": [{"role": "user", "content": "\\ud83d"}]}'), { status: 400, param: "messages[0].content", code: "invalid_unicode" })],
  // ---- routes and methods ----
  ["GET /v1/completions", async () => {
    const r = await fetch(`${server.url}v1/completions`);
    expect(r.headers.get("allow")).toBe("POST");
    await expectError(r, { status: 405, code: "method_not_allowed" });
  }],
  ["POST /health", async () => expectError(await post("health", "{}"), { status: 405 })],
  ["DELETE /v1/models", async () => expectError(await fetch(`${server.url}v1/models`, { method: "DELETE" }), { status: 405 })],
  ["OPTIONS /v1/chat/completions", async () => expectError(await fetch(`${server.url}v1/chat/completions`, { method: "OPTIONS" }), { status: 405 })],
  ["unknown route", async () => expectError(await fetch(`${server.url}v2/engines`), { status: 404, code: "unknown_url" })],
  ["path traversal", async () => expectError(await rawFetch("GET /../../etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n"), { status: 404 })],
  ["unknown model", async () => expectError(await fetch(`${server.url}v1/models/gpt-4%00`), { status: 404, param: "model" })],
  ["URL of 16 KB", async () => {
    const r = await fetch(`${server.url}v1/${"a".repeat(16_000)}`);
    expect(r.status).toBeLessThan(500);
  }],
  ["header of 64 KB", async () => {
    const r = await fetch(`${server.url}health`, { headers: { "x-big": "b".repeat(64_000) } }).catch(() => null);
    expect(r === null || r.status < 500).toBe(true);
  }],
  // ---- early disconnects and garbage ----
  ["connect and close at once", async () => void (await rawSocket("", 0))],
  ["half a request line, then close", async () => void (await rawSocket("POST /v1/compl", 20))],
  ["headers promise 1000 bytes, 10 arrive, then close", async () => void (await rawSocket(`POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{"prompt":`, 50))],
  ["a non-streaming request abandoned before its answer", async () => void (await rawSocket(request(JSON.stringify({ prompt: "bye", max_tokens: 900 })), 5))],
  ["a stream abandoned after its first bytes", async () => {
    const got = await rawSocket(request(JSON.stringify({ prompt: "bye", max_tokens: 900, stream: true })), 100);
    expect(got).toStartWith("HTTP/1.1 200");
  }],
  ["a stream abandoned by AbortController mid-way", async () => {
    const abort = new AbortController();
    const r = await post("v1/completions", JSON.stringify({ prompt: "x", max_tokens: 900, stream: true }), { signal: abort.signal });
    await r.body!.getReader().read();
    abort.abort();
  }],
  ["garbage bytes instead of HTTP", async () => {
    const got = await rawSocket(new Uint8Array([0, 255, 13, 10, 13, 10, 1, 2, 3, 200, 13, 10, 13, 10]), 100);
    expect(got === "" || got.startsWith("HTTP/1.1 4")).toBe(true);
  }],
  ["two requests pipelined on one connection", async () => {
    const body = JSON.stringify({ prompt: "a", max_tokens: 1 });
    const got = await rawSocket(request(body) + request(body), 1000);
    expect(got.match(/HTTP\/1\.1 200/g)?.length).toBe(2);
  }],
  // ---- concurrency ----
  ["200 concurrent requests: each answered 200 or 503 + Retry-After", async () => {
    const responses = await Promise.all(Array.from({ length: 200 }, (_, i) => completion({ prompt: `Request ${i}`, max_tokens: 8, seed: i, stream: i % 2 === 0 })));
    let ok = 0;
    for (const r of responses) {
      if (r.status === 503) {
        expect(r.headers.get("retry-after")).toBe("1");
        await expectError(r, { status: 503, code: "server_busy" });
        continue;
      }
      expect(r.status).toBe(200);
      const text = await r.text();
      if (r.headers.get("content-type")!.startsWith("text/event-stream")) expect(text.trimEnd().endsWith("data: [DONE]")).toBe(true);
      else expect(JSON.parse(text).choices[0].finish_reason).toBeDefined();
      ok++;
    }
    expect(ok).toBeGreaterThanOrEqual(40); // 8 slots + 32 queue places at least
  }],
  ["200 concurrent connections, half of them dropped at random moments", async () => {
    const work = Array.from({ length: 200 }, async (_, i) => {
      if (i % 2 === 0) return void (await rawSocket(request(JSON.stringify({ prompt: `drop ${i}`, max_tokens: 50, stream: i % 4 === 0 })), i % 17));
      const r = await completion({ prompt: `keep ${i}`, max_tokens: 4 });
      expect([200, 503]).toContain(r.status);
      await r.text();
    });
    await Promise.all(work);
  }],
];

/** fetch() normalises paths; this sends the request line as written. */
async function rawFetch(raw: string): Promise<Response> {
  const got = await rawSocket(raw, 300);
  const [head, ...rest] = got.split("\r\n\r\n");
  const status = Number(head.split(" ")[1]);
  let body = rest.join("\r\n\r\n");
  if (/transfer-encoding: chunked/i.test(head)) body = body.replace(/^[0-9a-f]+\r\n/i, "").replace(/\r\n0\r\n\r\n$/, "");
  return new Response(body, { status });
}

describe(`bad-request corpus (${CASES.length} cases)`, () => {
  test("the corpus has at least 40 cases", () => expect(CASES.length).toBeGreaterThanOrEqual(40));

  for (const [name, run] of CASES) {
    test(name, async () => {
      await run();
      // Still serving: /health answers and a real completion runs.
      expect((await health(server.url)).status).toBe("ok");
      await expectOk(await completion({ prompt: "still there?", max_tokens: 2, temperature: 0 }));
    });
  }

  test("after the corpus: the process runs, logged no internal error, and every slot and queue place is free", async () => {
    expect(server.proc.exitCode).toBeNull();
    expect(server.stderr()).not.toContain("error on");
    expect(server.stderr()).not.toContain("scheduler:");
    let status = await health(server.url);
    for (let i = 0; i < 300 && (status.busy > 0 || status.queued > 0); i++) {
      await Bun.sleep(10);
      status = await health(server.url);
    }
    expect(status).toMatchObject({ busy: 0, queued: 0 });
  });
});
