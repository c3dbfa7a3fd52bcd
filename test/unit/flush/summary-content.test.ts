import { describe, expect, it } from 'vitest';
import type { Message } from '../../../src/core/message.js';
import {
  excerptOf,
  EXCERPT_ARGUMENT_CHARS,
  summarizeExtractive,
} from '../../../src/flush/summary.js';
import { PROMPT_ARGUMENT_CHARS, summaryPrompt } from '../../../src/providers/llm-summarizer.js';

let seq = 0;
const message = (
  role: Message['role'],
  content: Message['content'],
  extra: Partial<Message> = {},
) =>
  ({
    id: String(++seq).padStart(26, '0'),
    role,
    content,
    created_at: new Date(0).toISOString(),
    ...extra,
  }) satisfies Message;

const PIXEL =
  'data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==';

/** A turn with every kind of content: parts with an image, a tool call, its result. */
const turn = () => {
  const ask = message('user', [
    { type: 'text', text: 'What is on this picture?' },
    { type: 'image_url', image_url: { url: PIXEL } },
    { type: 'text', text: 'And the weather in Paris.' },
  ]);
  const longArgs = JSON.stringify({ city: 'Paris', note: 'x'.repeat(2_000) });
  const calling = message('assistant', null, {
    tool_calls: [
      { id: 'call_w', type: 'function', function: { name: 'get_weather', arguments: longArgs } },
      {
        id: 'call_i',
        type: 'function',
        function: { name: 'describe_image', arguments: `{"url": "${PIXEL}"}` },
      },
    ],
  });
  const weather = message('tool', '{"temp_c": 18, "sky": "cloudy"}', { tool_call_id: 'call_w' });
  const image = message('tool', 'A red pixel. Nothing else.', { tool_call_id: 'call_i' });
  const seen = message('user', [{ type: 'image_url', image_url: { url: 'https://x.test/a.png' } }]);
  return { ask, calling, weather, image, seen, longArgs };
};

describe('summaries of content parts, tool calls and tool results', () => {
  it('writes one readable excerpt per message, an image as a placeholder', () => {
    const t = turn();
    const names = new Map([
      ['call_w', 'get_weather'],
      ['call_i', 'describe_image'],
    ]);
    expect(excerptOf(t.ask)).toBe('- user: What is on this picture?');
    expect(excerptOf(t.seen)).toBe('- user: [image]');
    const calling = excerptOf(t.calling, names);
    expect(calling).toMatch(
      /^- assistant: called get_weather\(\{"city":"Paris","note":"x+\.\.\.\), describe_image\(\{"url": "\[image\]"\}\)$/,
    );
    // The arguments are clipped.
    expect(calling.length).toBeLessThan(EXCERPT_ARGUMENT_CHARS + 100);
    expect(excerptOf(t.weather, names)).toBe(
      '- tool (get_weather): {"temp_c": 18, "sky": "cloudy"}',
    );
    expect(excerptOf(t.image)).toBe('- tool: A red pixel.');
    const summary = summarizeExtractive({
      folded: [t.ask, t.calling, t.weather, t.image, t.seen],
      maxTokens: 10_000,
      countTokens: (text) => text.length,
    });
    expect(summary.split('\n')).toHaveLength(5);
    expect(summary).toContain('- tool (describe_image): A red pixel.');
    expect(summary).not.toMatch(/data:|base64|https:/);
    expect(summary).not.toContain('[object Object]');
  });

  it('sends the LLM the text, placeholders and clipped tool calls, never an image URL', () => {
    const t = turn();
    const prompt = summaryPrompt({
      folded: [t.ask, t.calling, t.weather, t.image, t.seen],
      maxTokens: 100,
      countTokens: (text) => text.length,
    });
    const lines = prompt.split('\n');
    expect(lines).toContain('user: What is on this picture? [image] And the weather in Paris.');
    expect(lines).toContain('tool (get_weather): {"temp_c": 18, "sky": "cloudy"}');
    expect(lines).toContain('tool (describe_image): A red pixel. Nothing else.');
    expect(lines).toContain('user: [image]');
    const calling = lines.find((l) => l.startsWith('assistant: called get_weather('))!;
    expect(calling).toContain('describe_image({"url": "[image]"})');
    expect(calling.length).toBeLessThan(PROMPT_ARGUMENT_CHARS + 100);
    expect(calling).not.toContain(t.longArgs);
    expect(prompt).not.toMatch(/data:|base64|https:|null|\[object Object\]/);
  });
});
