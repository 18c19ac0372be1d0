// The in-process harness: a long-lived child process that runs format checks on case folders the
// parent names (over Bun's IPC channel), so a reader that hangs or takes the process down is
// killed and counted without stopping the pass. One request at a time.
import { formatNamed } from "./formats/index.ts";
import { type CheckResult, judgeError } from "./outcome.ts";

export interface CheckRequest {
  id: number;
  format: string;
  dir: string;
}

export interface CheckReply {
  id: number;
  result: CheckResult;
}

process.on("message", async (request: CheckRequest) => {
  let result: CheckResult;
  try {
    const format = formatNamed(request.format);
    if (format === undefined) throw new Error(`unknown format ${request.format}`);
    result = await format.check(request.dir);
  } catch (error) {
    // An exception escaping a check (its later stages: forward pass, loader) is judged like a reader's.
    result = judgeError(error, request.dir);
  }
  process.send!({ id: request.id, result } satisfies CheckReply);
});
process.send!({ id: -1, result: { verdict: "clean", detail: "ready" } } satisfies CheckReply);
