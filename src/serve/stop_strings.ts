// Stop strings over streamed text: generation ends at the first occurrence of any stop string in
// the generated text (even one spanning several tokens), and neither it nor anything after it is
// returned. While streaming, text that could be the start of a stop string is held back until the
// next piece shows whether it is, so a client never receives part of a stop string.
//
// The text pieces come whole characters at a time (TokenTextStream) and the stop strings are
// well-formed Unicode (request.ts refuses unpaired surrogates), so every cut falls between
// characters: a match or a held-back suffix starts where a stop string's first character does.

export class StopMatcher {
  private held = "";
  private stopped = false;

  constructor(private readonly stops: readonly string[]) {}

  /** Adds generated text; returns the text that is safe to send and whether a stop string was hit. */
  push(text: string): { text: string; stopped: boolean } {
    if (this.stopped) return { text: "", stopped: true };
    const pending = this.held + text;
    // The held text contains no whole stop string (it would have matched), so searching all of
    // `pending` finds the first occurrence in the generated text.
    let first = -1;
    for (const stop of this.stops) {
      const at = pending.indexOf(stop);
      if (at >= 0 && (first < 0 || at < first)) first = at;
    }
    if (first >= 0) {
      this.stopped = true;
      this.held = "";
      return { text: pending.slice(0, first), stopped: true };
    }
    const keep = this.partialMatchLength(pending);
    this.held = pending.slice(pending.length - keep);
    return { text: pending.slice(0, pending.length - keep), stopped: false };
  }

  /** At the end of generation (no stop string hit): whatever was held back. */
  flush(): string {
    const rest = this.held;
    this.held = "";
    return rest;
  }

  /** Length of the longest suffix of `text` that is a proper prefix of some stop string. */
  private partialMatchLength(text: string): number {
    let best = 0;
    for (const stop of this.stops) {
      for (let n = Math.min(stop.length - 1, text.length); n > best; n--) {
        if (text.endsWith(stop.slice(0, n))) {
          best = n;
          break;
        }
      }
    }
    return best;
  }
}
