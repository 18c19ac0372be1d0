// GPT-2 has no chat template (it was never trained on conversations), so chat requests are
// rendered as a plain transcript the model can continue:
//
//     system: You are terse.
//     user: Hello
//     assistant:
//
// one `role: content` line per message (content as given, newlines included), then `assistant:`.
// The reply is whatever follows. A model continuing the transcript tends to write the next
// speaker's turn too, so a reply also stops (the marker not included) at a new line that starts
// another turn: CHAT_STOP_STRINGS, in addition to the request's own `stop`.

export interface ChatMessage {
  role: string;
  content: string;
}

export const CHAT_STOP_STRINGS: readonly string[] = ["\nuser:", "\nassistant:", "\nsystem:"];

export function renderChat(messages: readonly ChatMessage[]): string {
  return `${messages.map((m) => `${m.role}: ${m.content}`).join("\n")}\nassistant:`;
}
