// The playground page's script: streams a completion from POST /v1/completions (the same API any
// OpenAI client uses) into #output, then shows tokens/s in #stats. No libraries, no build step.
"use strict";
const $ = (id) => document.getElementById(id);
let controller = null;

fetch("/v1/models").then((r) => r.json()).then((list) => {
  const model = list.data[0];
  $("model").textContent = `model: ${model.id} · context ${model.context_length} tokens`;
}).catch(() => { $("model").textContent = "model: (unavailable)"; });

function number(id, integer) {
  const raw = $(id).value.trim();
  if (raw === "") return undefined;
  const value = Number(raw);
  if (!Number.isFinite(value) || (integer && !Number.isInteger(value))) throw new Error(`${id.replace("_", " ")}: "${raw}" is not ${integer ? "an integer" : "a number"}`);
  return value;
}

function showError(message) {
  $("stats").className = "error";
  $("stats").textContent = message;
}

async function generate() {
  const output = $("output");
  $("stats").className = "";
  $("stats").textContent = "";
  let body;
  try {
    body = {
      prompt: $("prompt").value,
      max_tokens: number("max_tokens", true),
      temperature: number("temperature", false),
      top_k: number("top_k", true),
      top_p: number("top_p", false),
      seed: number("seed", true),
      stream: true,
      stream_options: { include_usage: true },
    };
  } catch (error) {
    return showError(error.message);
  }
  output.textContent = "";
  const promptSpan = document.createElement("span");
  promptSpan.className = "prompt";
  promptSpan.textContent = body.prompt;
  const completion = document.createTextNode("");
  output.append(promptSpan, completion);
  controller = new AbortController();
  $("generate").disabled = true;
  $("stop").disabled = false;
  const started = performance.now();
  let firstAt = null, tokens = null, finish = null;
  try {
    const response = await fetch("/v1/completions", {
      method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body), signal: controller.signal,
    });
    if (!response.ok) {
      const error = await response.json().catch(() => null);
      throw new Error(error?.error?.message ?? `HTTP ${response.status}`);
    }
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const event = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        if (!event.startsWith("data: ")) continue;
        const data = event.slice(6);
        if (data === "[DONE]") continue;
        const chunk = JSON.parse(data);
        if (chunk.error) throw new Error(chunk.error.message);
        if (chunk.usage) tokens = chunk.usage.completion_tokens;
        const choice = chunk.choices[0];
        if (choice === undefined) continue;
        if (choice.text !== "") {
          firstAt ??= performance.now();
          completion.appendData(choice.text);
        }
        if (choice.finish_reason) finish = choice.finish_reason;
      }
    }
    const seconds = (performance.now() - started) / 1000;
    const rate = tokens !== null && seconds > 0 ? (tokens / seconds).toFixed(1) : "?";
    const ttft = firstAt === null ? "" : `, first text after ${((firstAt - started) / 1000).toFixed(2)} s`;
    $("stats").textContent = `${tokens ?? "?"} tokens in ${seconds.toFixed(2)} s: ${rate} tokens/s${ttft} (${finish === "length" ? "max tokens reached" : "stopped at end of text"})`;
  } catch (error) {
    if (error.name === "AbortError") $("stats").textContent = "stopped";
    else showError(error.message);
  } finally {
    controller = null;
    $("generate").disabled = false;
    $("stop").disabled = true;
  }
}

$("generate").addEventListener("click", generate);
$("stop").addEventListener("click", () => controller?.abort());
$("prompt").addEventListener("keydown", (e) => {
  if (e.key === "Enter" && (e.ctrlKey || e.metaKey) && controller === null) generate();
});
