// Reads a request body as a JSON object, with a byte limit enforced while reading (a body
// without Content-Length, or lying about it, cannot exceed it either).
import { ApiError } from "./api_error.ts";

export async function readJsonObject(request: Request, limitBytes: number): Promise<Record<string, unknown>> {
  const tooLarge = () => new ApiError(413, `the request body is larger than the limit of ${limitBytes} bytes`, null, "request_too_large");
  const declared = request.headers.get("content-length");
  if (declared !== null && Number(declared) > limitBytes) throw tooLarge();
  const chunks: Uint8Array[] = [];
  let bytes = 0;
  if (request.body !== null) {
    const reader = request.body.getReader();
    for (;;) {
      let next: Awaited<ReturnType<typeof reader.read>>;
      try {
        next = await reader.read();
      } catch (error) {
        // The client closed the connection before sending the whole body.
        throw new ApiError(400, `the request body could not be read (${(error as Error).message || "the connection closed"})`, null, "invalid_body");
      }
      const { done, value } = next;
      if (done) break;
      bytes += value.byteLength;
      if (bytes > limitBytes) {
        await reader.cancel().catch(() => {});
        throw tooLarge();
      }
      chunks.push(value);
    }
  }
  if (bytes === 0) throw new ApiError(400, "the request body is empty: send a JSON object", null, "invalid_json");
  const all = new Uint8Array(bytes);
  let at = 0;
  for (const chunk of chunks) {
    all.set(chunk, at);
    at += chunk.byteLength;
  }
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(all);
  } catch {
    throw new ApiError(400, "the request body is not valid UTF-8", null, "invalid_json");
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new ApiError(400, `the request body is not valid JSON: ${(error as Error).message}`, null, "invalid_json");
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new ApiError(400, `the request body must be a JSON object, got ${Array.isArray(value) ? "an array" : value === null ? "null" : typeof value}`, null, "invalid_json");
  }
  return value as Record<string, unknown>;
}
