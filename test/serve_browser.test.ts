// The playground page in a real browser: Debian's chromium, headless, driven by playwright-core,
// against a running `bun run serve`. The page must stream the continuation into #output as it
// arrives (several intermediate states are observed), end with tokens/s in #stats, show exactly
// the text the API returns for the same greedy request, load nothing from elsewhere, and free the
// server's slot when Stop is pressed mid-stream.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type BrowserContext, chromium, type Page } from "playwright-core";
import { health, type ServeProcess, startServe, writeServeTestModel } from "./helpers/serve.ts";

const CHROMIUM = "/usr/bin/chromium";
const HAVE_CHROMIUM = existsSync(CHROMIUM);
if (!HAVE_CHROMIUM) console.warn(`serve_browser.test.ts skipped: no browser at ${CHROMIUM} (install it: apt-get install chromium)`);

let dir: string;
let server: ServeProcess;
let browser: BrowserContext;
let page: Page;
const requested: string[] = [];
const pageErrors: string[] = [];

beforeAll(async () => {
  if (!HAVE_CHROMIUM) return;
  dir = mkdtempSync(`${tmpdir()}/llmts-serve-browser-`);
  const { path } = writeServeTestModel(dir);
  server = await startServe(["--ckpt", path, "--slots", "2"]);
  browser = await chromium.launchPersistentContext(join(dir, "profile"), {
    executablePath: CHROMIUM,
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"],
  });
  page = browser.pages()[0] ?? (await browser.newPage());
  page.on("request", (r) => requested.push(r.url()));
  page.on("pageerror", (e) => pageErrors.push(e.message));
  page.on("console", (m) => {
    if (m.type() === "error") pageErrors.push(m.text());
  });
}, 60_000);

afterAll(async () => {
  await browser?.close();
  await server?.stop();
  if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
});

/** The little of the DOM these tests touch (the project compiles without the DOM library). */
interface BrowserElement {
  textContent: string | null;
  className: string;
}
interface BrowserGlobals {
  document: { getElementById(id: string): BrowserElement };
  MutationObserver: new (callback: () => void) => { observe(target: BrowserElement, options: object): void };
  states: string[];
}

async function setControls(values: Record<string, string>): Promise<void> {
  for (const [id, value] of Object.entries(values)) await page.fill(`#${id}`, value);
}

describe.skipIf(!HAVE_CHROMIUM)("playground page in chromium", () => {
  test("streams a greedy continuation into #output, shows tokens/s, and matches the API", async () => {
    await page.goto(server.url);
    await page.waitForFunction(() => ((globalThis as unknown as BrowserGlobals).document.getElementById("model").textContent ?? "").includes("tiny.bin"));
    const prompt = "The playground streams";
    await page.fill("#prompt", prompt);
    await setControls({ max_tokens: "300", temperature: "0", top_k: "0", top_p: "1", seed: "" });
    // Record every state #output passes through.
    await page.evaluate(() => {
      const w = globalThis as unknown as BrowserGlobals;
      w.states = [];
      const output = w.document.getElementById("output");
      new w.MutationObserver(() => w.states.push(output.textContent ?? "")).observe(output, { childList: true, characterData: true, subtree: true });
    });
    await page.click("#generate");
    await page.waitForFunction(() => ((globalThis as unknown as BrowserGlobals).document.getElementById("stats").textContent ?? "").includes("tokens/s"), null, { timeout: 30_000 });
    const stats = (await page.textContent("#stats"))!;
    expect(stats).toMatch(/^\d+ tokens in [\d.]+ s: [\d.]+ tokens\/s/);
    const shown = (await page.textContent("#output"))!;
    const api = await fetch(`${server.url}v1/completions`, { method: "POST", body: JSON.stringify({ prompt, max_tokens: 300, temperature: 0, top_k: 0, top_p: 1 }) });
    const want = ((await api.json()) as { choices: Array<{ text: string }>; usage: { completion_tokens: number } });
    expect(shown).toBe(prompt + want.choices[0].text);
    expect(stats).toStartWith(`${want.usage.completion_tokens} tokens`);
    const states = await page.evaluate(() => (globalThis as unknown as BrowserGlobals).states);
    const partial = new Set(states.filter((s) => s.length > prompt.length && s !== shown));
    expect(partial.size).toBeGreaterThanOrEqual(2); // it arrived piece by piece
    // Nothing was fetched from anywhere but this server.
    expect(requested.filter((u) => !u.startsWith(server.url))).toEqual([]);
    expect(pageErrors).toEqual([]);
  }, 60_000);

  test("Stop aborts the stream and the server frees the slot at once", async () => {
    await setControls({ max_tokens: "1000", temperature: "1", top_k: "40", top_p: "0.95", seed: "3" });
    await page.click("#generate");
    await page.waitForFunction(() => ((globalThis as unknown as BrowserGlobals).document.getElementById("output").textContent ?? "").length > 40);
    await page.click("#stop");
    await page.waitForFunction(() => ((globalThis as unknown as BrowserGlobals).document.getElementById("stats").textContent ?? "") === "stopped");
    let status = await health(server.url);
    for (let i = 0; i < 100 && status.busy > 0; i++) {
      await Bun.sleep(10);
      status = await health(server.url);
    }
    expect(status.busy).toBe(0);
    expect(await page.isEnabled("#generate")).toBe(true);
  }, 60_000);

  test("a bad value shows the server's error message", async () => {
    await setControls({ max_tokens: "5000", temperature: "0.8", top_k: "40", top_p: "0.95", seed: "" });
    await page.click("#generate");
    await page.waitForFunction(() => (globalThis as unknown as BrowserGlobals).document.getElementById("stats").className === "error");
    expect(await page.textContent("#stats")).toContain("exceeds the model's context of 1024 tokens");
  }, 60_000);
});
