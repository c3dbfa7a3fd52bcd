import { ConfigError } from './errors.js';

/**
 * Context windows (input + output tokens) by model. Sources, read 2026-11: OpenAI's model pages
 * (platform.openai.com/docs/models) for gpt-* and o*; Anthropic's models overview
 * (docs.anthropic.com, "Models overview": 200K for every current Claude model; the 1M window of
 * some Sonnet models is a beta header, not the default); Google's Gemini models page
 * (ai.google.dev/gemini-api/docs/models: 1,048,576 input tokens for Gemini 1.5 Flash and later,
 * 2,097,152 for Gemini 1.5 Pro). Longest matching prefix wins, so dated snapshots
 * (`gpt-4o-2024-08-06`, `claude-sonnet-4-5-20250929`) resolve to their family.
 */
export const MODEL_CONTEXT_WINDOWS: ReadonlyArray<readonly [prefix: string, tokens: number]> = [
  ['gpt-5', 400_000],
  ['gpt-4.1', 1_047_576],
  ['gpt-4.5', 128_000],
  ['gpt-4o', 128_000],
  ['chatgpt-4o', 128_000],
  ['gpt-4-turbo', 128_000],
  ['gpt-4-32k', 32_768],
  ['gpt-4', 8_192],
  ['gpt-3.5-turbo', 16_385],
  ['o1-mini', 128_000],
  ['o1', 200_000],
  ['o3', 200_000],
  ['o4-mini', 200_000],
  ['claude-', 200_000],
  ['gemini-1.5-pro', 2_097_152],
  ['gemini-', 1_048_576],
];

/** What a model needs for `max_context_ratio`, as an error message says it. */
export const CONTEXT_WINDOW_ALLOWED = `expected a model with a known context window for max_context_ratio (a name starting with ${MODEL_CONTEXT_WINDOWS.map(([p]) => p).join(', ')})`;

/**
 * The context window of `model`, in tokens.
 * @throws ConfigError for a model the table does not know.
 */
export function contextWindowOf(model: string): number {
  const match = MODEL_CONTEXT_WINDOWS.filter(([prefix]) => model.startsWith(prefix)).sort(
    (a, b) => b[0].length - a[0].length,
  )[0];
  if (!match) {
    throw new ConfigError(
      `token_provider.model: ${CONTEXT_WINDOW_ALLOWED}, got ${JSON.stringify(model)}`,
    );
  }
  return match[1];
}
