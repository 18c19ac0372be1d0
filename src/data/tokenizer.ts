// GPT-2 byte-pair encoding through tiktoken (its wasm build is the reference implementation of
// OpenAI's encodings). `<|endoftext|>` is recognised anywhere in the text and maps to 50256.
import { get_encoding, type Tiktoken } from "tiktoken";
import { EOT_TOKEN, GPT2_VOCAB } from "../model/config.ts";

export { EOT_TOKEN };

let encoding: Tiktoken | null = null;
function gpt2(): Tiktoken {
  encoding ??= get_encoding("gpt2");
  return encoding;
}

/** Text → token ids. `<|endoftext|>` in the text becomes the EOT token. */
export function encode(text: string): Int32Array {
  return Int32Array.from(gpt2().encode(text, "all"));
}

/** Token ids → raw bytes (a token can end in the middle of a UTF-8 character). */
export function decodeBytes(tokens: ArrayLike<number>): Uint8Array {
  for (let i = 0; i < tokens.length; i++) {
    const t = tokens[i];
    if (!Number.isInteger(t) || t < 0 || t >= GPT2_VOCAB) throw new Error(`token id ${t} at position ${i} is outside the GPT-2 vocabulary [0, ${GPT2_VOCAB})`);
  }
  return gpt2().decode(Uint32Array.from(tokens));
}

/** Token ids → text; incomplete UTF-8 sequences become U+FFFD. */
export function decode(tokens: ArrayLike<number>): string {
  return new TextDecoder().decode(decodeBytes(tokens));
}
