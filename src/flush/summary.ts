import type { Content, Message, ToolCall } from '../core/message.js';
import { applyPrivacyToText, type RedactionPolicy } from '../core/privacy.js';
import type { MemoryRef } from '../core/memory-key.js';

/** Longest excerpt kept of one folded message, characters (before the token budget applies). */
export const EXCERPT_CHARS = 200;

/**
 * Longest tool-call arguments kept in an excerpt line, characters: enough for the gist of a
 * typical call (`{"city": "Paris", "unit": "celsius"}`), the budget being the excerpt's.
 */
export const EXCERPT_ARGUMENT_CHARS = 80;

/** Placeholder of an image (an image part, or a `data:image/...` URL in text) in summaries. */
export const IMAGE_PLACEHOLDER = '[image]';

/** Placeholder of a non-image `data:` URL in text, in summaries. */
export const DATA_PLACEHOLDER = '[data]';

/**
 * A `data:` URL (RFC 2397: `data:[<mediatype>][;<parameter>]*,<data>`): linear time, each
 * repetition starting at a distinct `;`.
 */
const DATA_URL = /data:([\w.+-]+\/[\w.+-]+)?(?:;[\w.+=-]+)*,[\w+/=%.~-]*/gi;

/**
 * `text` with every `data:` URL replaced by {@link IMAGE_PLACEHOLDER} (`data:image/...`) or
 * {@link DATA_PLACEHOLDER} (any other), so no inline image or file reaches a summary.
 */
export function withoutDataUrls(text: string): string {
  return text.replace(DATA_URL, (_url, type: string | undefined) =>
    type?.toLowerCase().startsWith('image/') ? IMAGE_PLACEHOLDER : DATA_PLACEHOLDER,
  );
}

/**
 * A message's content as summary text: a string as it is, the parts in order joined with a
 * space (a text part's text, an image part as {@link IMAGE_PLACEHOLDER}: never its URL), `''`
 * for null; `data:` URLs anywhere replaced ({@link withoutDataUrls}).
 */
export function readableContent(content: Content): string {
  if (content === null) return '';
  const text =
    typeof content === 'string'
      ? content
      : content.map((p) => (p.type === 'text' ? p.text : IMAGE_PLACEHOLDER)).join(' ');
  return withoutDataUrls(text);
}

/** `text` cut to `max` characters, the last 3 being `...` when cut. */
const clip = (text: string, max: number) =>
  text.length > max ? `${text.slice(0, Math.max(0, max - 3))}...` : text;

/**
 * A tool call as summary text: `name(arguments)`, the arguments with whitespace collapsed,
 * `data:` URLs replaced ({@link withoutDataUrls}) and clipped to `maxArgumentChars` characters
 * (`...` at the end when clipped).
 */
export function describeToolCall(call: ToolCall, maxArgumentChars: number): string {
  const args = withoutDataUrls(call.function.arguments.replace(/\s+/g, ' ').trim());
  return `${call.function.name}(${clip(args, maxArgumentChars)})`;
}

/** Tool-call id -> function name, for every call of `messages` (to name the tools of results). */
export function toolNamesOf(messages: readonly Message[]): Map<string, string> {
  const names = new Map<string, string>();
  for (const m of messages) for (const c of m.tool_calls ?? []) names.set(c.id, c.function.name);
  return names;
}

/**
 * Who spoke, for a summary line: `role`, or `role (name)` with a participant name; a tool result
 * without a name is `tool (function)` when its call is in `toolNames` ({@link toolNamesOf}).
 */
export function speakerOf(message: Message, toolNames: ReadonlyMap<string, string>): string {
  const name =
    message.name ??
    (message.tool_call_id !== undefined ? toolNames.get(message.tool_call_id) : undefined);
  return name ? `${message.role} (${name})` : message.role;
}

/**
 * One summary line per folded message: `- speaker: first sentence` ({@link speakerOf};
 * {@link readableContent}, whitespace collapsed, at most {@link EXCERPT_CHARS} characters), then
 * for an assistant message with tool calls `called name(arguments), ...` (arguments clipped to
 * {@link EXCERPT_ARGUMENT_CHARS}, the list to {@link EXCERPT_CHARS}); `(empty)` when there is
 * neither text nor a call. Never carries an image's URL or data.
 * @param toolNames Tool-call id -> function name ({@link toolNamesOf} of the folded messages),
 *   to name the tool of a result; default none.
 */
export function excerptOf(
  message: Message,
  toolNames: ReadonlyMap<string, string> = new Map(),
): string {
  const text = readableContent(message.content).replace(/\s+/g, ' ').trim();
  const sentence = /^.*?[.!?](?=\s|$)/.exec(text)?.[0] ?? text;
  const pieces = sentence === '' ? [] : [clip(sentence, EXCERPT_CHARS)];
  const calls = message.tool_calls ?? [];
  if (calls.length > 0) {
    const list = calls.map((c) => describeToolCall(c, EXCERPT_ARGUMENT_CHARS)).join(', ');
    pieces.push(`called ${clip(list, EXCERPT_CHARS)}`);
  }
  return `- ${speakerOf(message, toolNames)}: ${pieces.join(' ') || '(empty)'}`;
}

/** Inputs of {@link summarizeExtractive}. */
export interface ExtractiveSummaryInput {
  /** The current summary's text; absent for the first fold. */
  readonly previous?: string;
  /** The messages being folded, oldest first (already redacted: they come from the log). */
  readonly folded: readonly Message[];
  /** Upper bound of the result, in tokens as counted by `countTokens`. */
  readonly maxTokens: number;
  /** Tokens of a candidate summary text (memq counts it as one system message). */
  readonly countTokens: (text: string) => number;
  /** Aborts a remote summarizer's call (the flush job lost its lock); absent = never. */
  readonly signal?: AbortSignal;
}

/**
 * The default, rule-based and deterministic summarizer (no network): the previous summary's lines
 * followed by one line per folded message ({@link excerptOf}). When that exceeds `maxTokens`, the
 * oldest lines go first (the newest context matters most), and a single line that alone exceeds
 * the budget is cut by characters. Never longer than `maxTokens` by `countTokens`; returns ''
 * when even one character does not fit.
 */
export function summarizeExtractive(input: ExtractiveSummaryInput): string {
  const names = toolNamesOf(input.folded);
  const lines = [
    ...(input.previous ? input.previous.split('\n').filter((l) => l.length > 0) : []),
    ...input.folded.map((m) => excerptOf(m, names)),
  ];
  const fits = (text: string) => input.countTokens(text) <= input.maxTokens;
  // Drop oldest lines while too long: binary search on how many of the newest lines fit.
  let lo = 0;
  let hi = lines.length;
  while (lo < hi) {
    const keep = Math.ceil((lo + hi) / 2);
    if (fits(lines.slice(lines.length - keep).join('\n'))) lo = keep;
    else hi = keep - 1;
  }
  if (lo > 0) return lines.slice(lines.length - lo).join('\n');
  const newest = lines.at(-1) ?? '';
  let chars = 0;
  let top = newest.length;
  while (chars < top) {
    const mid = Math.ceil((chars + top) / 2);
    if (fits(newest.slice(0, mid))) chars = mid;
    else top = mid - 1;
  }
  return newest.slice(0, chars);
}

/** What a {@link Summarizer} is asked to do. */
export interface SummaryRequest {
  /** The current summary's text; absent for the first fold. */
  readonly previous?: string;
  /** The messages being folded, oldest first (stored, so already redacted). */
  readonly folded: readonly Message[];
  /** Upper bound of the result, tokens by `countTokens`. */
  readonly maxTokens: number;
  /** Tokens of a candidate summary text (memq counts it as one system message). */
  readonly countTokens: (text: string) => number;
  /** Aborts a remote summarizer's call (the flush job lost its lock); absent = never. */
  readonly signal?: AbortSignal;
}

/** Writes rolling summaries. */
export interface Summarizer {
  /**
   * The new summary (previous summary + folded messages), at most `maxTokens` by
   * `countTokens`, and which summarizer wrote it (`rule_based`, or `llm`). Never rejects for a
   * summarizer failure: implementations fall back to the rule-based summary.
   */
  summarize(request: SummaryRequest): Promise<{ content: string; source: string }>;
}

/** The default {@link Summarizer}: {@link summarizeExtractive}, source `rule_based`. */
export const RULE_BASED_SUMMARIZER: Summarizer = {
  summarize: (request) =>
    Promise.resolve({ content: summarizeExtractive(request), source: 'rule_based' }),
};

/**
 * The longest prefix of `text` within `maxTokens` by `countTokens`, cut at a line end when one
 * fits (binary search on characters otherwise); '' when nothing fits. For summaries an LLM wrote
 * longer than asked.
 */
export function fitToBudget(
  text: string,
  maxTokens: number,
  countTokens: (text: string) => number,
): string {
  if (countTokens(text) <= maxTokens) return text;
  const lines = text.split('\n');
  let lo = 0;
  let hi = lines.length;
  while (lo < hi) {
    const keep = Math.ceil((lo + hi) / 2);
    if (countTokens(lines.slice(0, keep).join('\n')) <= maxTokens) lo = keep;
    else hi = keep - 1;
  }
  if (lo > 0) return lines.slice(0, lo).join('\n');
  let chars = 0;
  let top = lines[0]!.length;
  while (chars < top) {
    const mid = Math.ceil((chars + top) / 2);
    if (countTokens(lines[0]!.slice(0, mid)) <= maxTokens) chars = mid;
    else top = mid - 1;
  }
  return lines[0]!.slice(0, chars);
}

/**
 * Rounds of {@link redactSummary}'s redact-then-cut loop before it gives up: a cut can create a
 * new match only at its end (a number cut to a phone number's length), and one more round
 * redacts that, so 2 suffice in practice; 4 leaves room.
 */
export const SUMMARY_REDACTION_ROUNDS = 4;

/** Outcome of {@link redactSummary}. */
export interface RedactedSummary {
  /**
   * The summary to store: no match of the policy; `text` itself when nothing matched, else at
   * most `maxTokens`; '' when no redacted text fits.
   */
  readonly content: string;
  /** Matches replaced (all rounds). */
  readonly redactions: number;
}

/**
 * A summary text as it may be stored: the resource's privacy policy applied to it (any
 * summarizer, an LLM above all, may echo or invent personal data), then cut to `maxTokens` by
 * `countTokens` if the replacements made it longer ({@link fitToBudget}), redacting again what a
 * cut can expose. Every match is replaced as `privacy_policy.action` says, except that `drop`
 * replaces it with `default_redaction_string` (see `applyPrivacyToText`): dropping the summary
 * would lose the messages folded into it. Returns '' when no text within the budget is free of
 * matches after {@link SUMMARY_REDACTION_ROUNDS} rounds (the flush then refuses to fold).
 * `ref` is the instance the summary belongs to; a `privacy_scope: session` policy needs it for its
 * pseudonyms (without it the call throws).
 * @throws PolicyError when the policy cannot be applied (a pattern does not compile, action
 *   `hash` without a key, or a session scope without `ref`): fail closed, nothing is stored.
 */
export function redactSummary(
  policy: RedactionPolicy | undefined,
  text: string,
  maxTokens: number,
  countTokens: (text: string) => number,
  ref?: MemoryRef,
): RedactedSummary {
  let { text: content, redactions } = applyPrivacyToText(policy, text, ref);
  if (redactions === 0) return { content, redactions };
  for (let round = 0; round < SUMMARY_REDACTION_ROUNDS; round++) {
    if (countTokens(content) <= maxTokens) return { content, redactions };
    const again = applyPrivacyToText(policy, fitToBudget(content, maxTokens, countTokens), ref);
    content = again.text;
    redactions += again.redactions;
  }
  return { content: countTokens(content) <= maxTokens ? content : '', redactions };
}

/** A message as a chat request takes it (the `format=messages` view of a window). */
export interface ChatMessage {
  /** Who spoke. */
  readonly role: Message['role'];
  /** The content as stored: a string, a list of parts, or null (assistant with tool calls). */
  readonly content: Content;
  /** Participant name, when the message has one. */
  readonly name?: string;
  /** An assistant message's tool calls, as stored. */
  readonly tool_calls?: readonly ToolCall[];
  /** For `tool` messages: the call answered. */
  readonly tool_call_id?: string;
}

/**
 * A window as chat messages (`format=messages`): the rolling summary, when there is one, as one
 * leading system message (`Summary of earlier conversation:` + its text), then the messages in
 * id order with only the fields a chat request takes.
 */
export function asChatMessages(
  summary: { readonly content: string } | undefined,
  messages: readonly Message[],
): ChatMessage[] {
  const lead: ChatMessage[] =
    summary && summary.content !== ''
      ? [{ role: 'system', content: `${SUMMARY_HEADING}\n${summary.content}` }]
      : [];
  return [
    ...lead,
    ...messages.map((m) => ({
      role: m.role,
      content: m.content,
      ...(m.name !== undefined ? { name: m.name } : {}),
      ...(m.tool_calls !== undefined ? { tool_calls: m.tool_calls } : {}),
      ...(m.tool_call_id !== undefined ? { tool_call_id: m.tool_call_id } : {}),
    })),
  ];
}

/** First line of the system message {@link asChatMessages} renders a summary as. */
export const SUMMARY_HEADING = 'Summary of earlier conversation:';
