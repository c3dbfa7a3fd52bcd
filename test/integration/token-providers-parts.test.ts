import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createMetrics, type MemqMetrics } from '../../src/metrics/metrics.js';
import { createTokenCounter, type CountableMessage } from '../../src/tokens/counter.js';
import { createRemoteCounter, type RemoteCounter } from '../../src/tokens/remote-providers.js';
import { dataUrl, png } from '../helpers/images.js';

/**
 * A loopback server answering Anthropic's and Google's counting paths with the number of
 * characters of the texts it was sent, and keeping every request body, so a test sees what memq
 * sends and can tell a provider's count from the local tokenizer's.
 */
async function recordingProvider() {
  const bodies: Array<{ url: string; body: Record<string, unknown> }> = [];
  const server: Server = createServer((req, res) => {
    void (async () => {
      const chunks: Buffer[] = [];
      for await (const chunk of req) chunks.push(chunk as Buffer);
      const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown>;
      bodies.push({ url: req.url ?? '', body });
      if (req.url === '/v1/messages/count_tokens') {
        const [message] = body.messages as Array<{ content: string | Array<{ text: string }> }>;
        const content = message!.content;
        const chars =
          typeof content === 'string'
            ? content.length
            : content.reduce((n, block) => n + block.text.length, 0);
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ input_tokens: chars }));
        return;
      }
      const [content] = body.contents as Array<{ parts: Array<{ text: string }> }>;
      const chars = content!.parts.reduce((n, part) => n + part.text.length, 0);
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ totalTokens: chars }));
    })();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    bodies,
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

describe('remote counting of messages with parts, images and tool calls', () => {
  let provider: Awaited<ReturnType<typeof recordingProvider>>;
  let metrics: MemqMetrics;
  let counters: RemoteCounter[];
  beforeEach(async () => {
    provider = await recordingProvider();
    metrics = createMetrics();
    counters = [];
  });
  afterEach(async () => {
    for (const c of counters) c.close();
    await provider.close();
  });
  const remote = async (which: 'anthropic' | 'google') => {
    const counter = createRemoteCounter({
      provider: which,
      model: which === 'anthropic' ? 'claude-sonnet-4-5' : 'gemini-2.5-flash',
      apiKey: 'sk-test',
      baseUrl: provider.url,
      fallback: await createTokenCounter('o200k_base'),
      metrics,
      log: pino({ level: 'silent' }),
    });
    counters.push(counter);
    return counter;
  };

  it('sends text parts as text blocks (Anthropic) and parts (Google), empty ones left out', async () => {
    const message: CountableMessage = {
      role: 'user',
      content: [
        { type: 'text', text: 'Where is ' },
        { type: 'text', text: '' },
        { type: 'text', text: 'my parcel?' },
      ],
    };
    const anthropic = await (await remote('anthropic')).countMessages([message]);
    const google = await (await remote('google')).countMessages([message]);
    expect(anthropic).toEqual([{ tokens: 19, source: 'anthropic' }]);
    expect(google).toEqual([{ tokens: 19, source: 'google' }]);
    expect(provider.bodies.map((b) => b.body)).toEqual([
      {
        model: 'claude-sonnet-4-5',
        messages: [
          {
            role: 'user',
            content: [
              { type: 'text', text: 'Where is ' },
              { type: 'text', text: 'my parcel?' },
            ],
          },
        ],
      },
      { contents: [{ role: 'user', parts: [{ text: 'Where is ' }, { text: 'my parcel?' }] }] },
    ]);
  });

  it('counts images, tool calls and tool results locally without a call, marked approximate', async () => {
    const local = await createTokenCounter('o200k_base');
    const messages: CountableMessage[] = [
      {
        role: 'user',
        content: [
          { type: 'text', text: 'what is this?' },
          { type: 'image_url', image_url: { url: dataUrl(png(512, 512)), detail: 'high' } },
        ],
      },
      {
        role: 'assistant',
        content: null,
        tool_calls: [
          { id: 'c1', type: 'function', function: { name: 'track', arguments: '{"id":1}' } },
        ],
      },
      { role: 'tool', content: 'delivered', tool_call_id: 'c1' },
    ];
    for (const which of ['anthropic', 'google'] as const) {
      const results = await (await remote(which)).countMessages(messages);
      const base = `o200k_base (approximation for ${which === 'anthropic' ? 'claude-sonnet-4-5' : 'gemini-2.5-flash'})`;
      expect(results).toEqual([
        {
          tokens: local.countMessage(messages[0]!),
          source: 'o200k_base',
          approximatedBy: `${base}; estimated: images`,
        },
        {
          tokens: local.countMessage(messages[1]!),
          source: 'o200k_base',
          approximatedBy: `${base}; estimated: tool calls`,
        },
        {
          tokens: local.countMessage(messages[2]!),
          source: 'o200k_base',
          approximatedBy: `${base}; estimated: tool_call_id`,
        },
      ]);
    }
    expect(provider.bodies).toEqual([]); // nothing was sent
    // Not a provider failure: no fallback is counted.
    expect((await metrics.tokenProviderFallbacks.get()).values.every((v) => v.value === 0)).toBe(
      true,
    );
  });
});
