// Token ids → text, as tokens arrive. A GPT-2 token is a byte string that can end in the middle of
// a UTF-8 character (emoji and CJK characters often span two or three tokens), so bytes of an
// incomplete character are held back until the character completes.
import { decodeBytes } from "../data/tokenizer.ts";
import { GPT2_VOCAB } from "../model/config.ts";

/** The bytes of one token; ids beyond the GPT-2 tokenizer (models with a larger V) print as <|id|>. */
export function tokenBytes(token: number): Uint8Array {
  if (token < GPT2_VOCAB) return decodeBytes([token]);
  return new TextEncoder().encode(`<|${token}|>`);
}

export class TokenTextStream {
  private readonly decoder = new TextDecoder("utf-8"); // stream mode keeps a partial character

  /** The complete characters available after `token` (possibly ""). */
  push(token: number): string {
    return this.decoder.decode(tokenBytes(token), { stream: true });
  }

  /** Whatever is held back at the end (an incomplete character becomes U+FFFD). */
  flush(): string {
    return this.decoder.decode();
  }
}
