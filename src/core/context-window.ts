import { ConfigError } from './errors.js';

/**
 * Context windows (input + output tokens) by model, from OpenAI's model pages
 * (platform.openai.com/docs/models, read 2026-11). Longest matching prefix wins, so dated
 * snapshots (`gpt-4o-2024-08-06`) resolve to their family.
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
];

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
      `token_provider.model: max_context_ratio needs a model with a known context window (${MODEL_CONTEXT_WINDOWS.map(([p]) => p).join(', ')}), got ${JSON.stringify(model)}`,
    );
  }
  return match[1];
}
