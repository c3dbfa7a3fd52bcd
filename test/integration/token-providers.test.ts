import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createMemoryRegistry, parseMemoryResource } from '../../src/config/load-memories.js';
import { ConfigError } from '../../src/core/errors.js';
import { createTokenCounter } from '../../src/tokens/counter.js';
import { createMetrics, type MemqMetrics } from '../../src/metrics/metrics.js';
import {
  ANTHROPIC_VERSION,
  createRemoteCounter,
  type RemoteCounter,
} from '../../src/tokens/remote-providers.js';
import { providerApiKey } from '../../src/providers/api-keys.js';
import { eventually, startPipeline, type TestPipeline } from '../helpers/pipeline.js';
import { createRedisNamespace, type RedisNamespace } from '../helpers/redis-namespace.js';

const KEY = 'sk-test-DO-NOT-LOG-0123456789';

/** How the fake provider answers the next calls. */
type Mode = 'ok' | 'slow' | '429' | '500' | 'garbage';

/**
 * A local HTTP server speaking Anthropic's `/v1/messages/count_tokens` and Google's
 * `/v1beta/models/{model}:countTokens`. Its "count" is the text length in characters, so a test
 * can tell a provider count from the local tokenizer's.
 */
async function fakeProvider() {
  const state = { mode: 'ok' as Mode, calls: 0, rejected: [] as string[] };
  const readBody = async (req: IncomingMessage) => {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    return JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown>;
  };
  const server: Server = createServer((req, res) => {
    void (async () => {
      state.calls += 1;
      const body = await readBody(req);
      const reply = (status: number, payload: unknown) => {
        res.writeHead(status, { 'content-type': 'application/json' });
        res.end(JSON.stringify(payload));
      };
      let text: string | undefined;
      if (req.url === '/v1/messages/count_tokens') {
        if (
          req.headers['x-api-key'] !== KEY ||
          req.headers['anthropic-version'] !== ANTHROPIC_VERSION
        ) {
          state.rejected.push('anthropic headers');
          return reply(401, { error: 'unauthorized' });
        }
        const messages = body.messages as Array<{ role: string; content: string }>;
        text = messages[0]?.content;
      } else if (req.url === '/v1beta/models/gemini-2.5-flash:countTokens') {
        if (req.headers['x-goog-api-key'] !== KEY) {
          state.rejected.push('google headers');
          return reply(403, { error: 'forbidden' });
        }
        const contents = body.contents as Array<{ parts: Array<{ text: string }> }>;
        text = contents[0]?.parts[0]?.text;
      } else {
        state.rejected.push(`path ${req.url}`);
        return reply(404, { error: 'not found' });
      }
      const tokens = (text ?? '').length;
      if (state.mode === '429') return reply(429, { error: 'rate limited' });
      if (state.mode === '500') return reply(500, { error: 'boom' });
      if (state.mode === 'garbage') return reply(200, { something: 'else' });
      if (state.mode === 'slow') await new Promise((r) => setTimeout(r, 400));
      reply(200, req.url.startsWith('/v1/') ? { input_tokens: tokens } : { totalTokens: tokens });
    })();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    state,
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** A pino logger writing into `lines`. */
function capturingLog(lines: string[]) {
  return pino(
    { level: 'debug' },
    new Writable({
      write(chunk: Buffer, _enc, done) {
        lines.push(chunk.toString('utf8'));
        done();
      },
    }),
  );
}

describe('provider token counting against a local server', () => {
  let provider: Awaited<ReturnType<typeof fakeProvider>>;
  let metrics: MemqMetrics;
  let logs: string[];
  let counters: RemoteCounter[];
  beforeEach(async () => {
    provider = await fakeProvider();
    metrics = createMetrics();
    logs = [];
    counters = [];
  });
  afterEach(async () => {
    for (const c of counters) c.close();
    await provider.close();
  });

  const remote = async (
    which: 'anthropic' | 'google',
    extra: {
      timeoutMs?: number;
      volumeThreshold?: number;
      resetTimeoutMs?: number;
      parallelCalls?: number;
    } = {},
  ) => {
    const counter = createRemoteCounter({
      provider: which,
      model: which === 'anthropic' ? 'claude-sonnet-4-5' : 'gemini-2.5-flash',
      apiKey: KEY,
      baseUrl: provider.url,
      fallback: await createTokenCounter('o200k_base'),
      metrics,
      log: capturingLog(logs),
      timeoutMs: 200,
      volumeThreshold: 100,
      ...extra,
    });
    counters.push(counter);
    return counter;
  };
  const fallbacks = async (reason: string) =>
    (await metrics.tokenProviderFallbacks.get()).values.find((v) => v.labels.reason === reason)
      ?.value ?? 0;

  const messages = [
    { role: 'user' as const, content: 'Hello there, how are you today?' },
    { role: 'assistant' as const, content: 'Fine, thanks.' },
  ];

  it.each(['anthropic', 'google'] as const)(
    'uses the %s API count when it answers',
    async (which) => {
      const counter = await remote(which);
      const results = await counter.countMessages(messages);
      expect(results).toEqual(messages.map((m) => ({ tokens: m.content.length, source: which })));
      expect(provider.state.rejected).toEqual([]);
      expect(provider.state.calls).toBe(2);
    },
  );

  it.each([
    ['429', 'rate_limited'],
    ['500', 'server_error'],
    ['slow', 'timeout'],
    ['garbage', 'bad_response'],
  ] as const)('falls back to the local tokenizer on %s replies (%s)', async (mode, reason) => {
    provider.state.mode = mode;
    const counter = await remote('anthropic');
    const local = await createTokenCounter('o200k_base');
    const results = await counter.countMessages(messages);
    expect(results).toEqual(
      messages.map((m) => ({
        tokens: local.countMessage(m),
        source: 'o200k_base',
        approximatedBy: 'o200k_base (approximation for claude-sonnet-4-5)',
      })),
    );
    expect(await fallbacks(reason)).toBe(2);
  });

  it('stops a provider call when the job gives up, without counting locally', async () => {
    provider.state.mode = 'slow'; // 400 ms per reply
    const counter = await remote('google', { timeoutMs: 5_000 });
    const controller = new AbortController();
    const reason = new Error('lock lost');
    setTimeout(() => controller.abort(reason), 50);
    const started = Date.now();
    await expect(counter.countMessages(messages, controller.signal)).rejects.toBe(reason);
    expect(Date.now() - started).toBeLessThan(350);
    expect((await metrics.tokenProviderFallbacks.get()).values).toEqual([]);
  });

  it('opens the breaker after repeated failures, stops calling, and closes again', async () => {
    provider.state.mode = '500';
    const counter = await remote('google', {
      volumeThreshold: 2,
      resetTimeoutMs: 300,
      parallelCalls: 1,
    });
    const many = Array.from({ length: 6 }, (_, i) => ({ role: 'user' as const, content: `m${i}` }));
    await counter.countMessages(many);
    const callsWhenOpen = provider.state.calls;
    expect(callsWhenOpen).toBeLessThan(6);
    expect(await fallbacks('breaker_open')).toBeGreaterThan(0);
    const gauge = await metrics.breakerState.get();
    expect(gauge.values.find((v) => v.labels.breaker === counter.name)?.value).toBe(1);

    await counter.countMessages(many);
    expect(provider.state.calls).toBe(callsWhenOpen);

    provider.state.mode = 'ok';
    await new Promise((r) => setTimeout(r, 350));
    const [trial] = await counter.countMessages([{ role: 'user', content: 'back again' }]);
    expect(trial).toEqual({ tokens: 'back again'.length, source: 'google' });
    const closed = await metrics.breakerState.get();
    expect(closed.values.find((v) => v.labels.breaker === counter.name)?.value).toBe(0);
    expect(logs.join('')).toContain('"state":"open"');
    expect(logs.join('')).not.toContain(KEY);
  });

  it('reads API keys only from the named environment variable, naming it when unset', () => {
    expect(providerApiKey('r', 'anthropic', 'MY_KEY', { MY_KEY: 'k' })).toBe('k');
    expect(() => providerApiKey('r', 'anthropic', 'MY_KEY', {})).toThrow(ConfigError);
    expect(() => providerApiKey('r', 'anthropic', 'MY_KEY', {})).toThrow(
      'memory "r": token_provider.api_key_env: environment variable MY_KEY is not set (provider anthropic needs its API key)',
    );
    expect(() => providerApiKey('r', 'google', undefined, {})).toThrow(
      /api_key_env: required for provider google/,
    );
  });
});

describe('token-count jobs with a provider on real Redis', () => {
  let provider: Awaited<ReturnType<typeof fakeProvider>>;
  let ns: RedisNamespace;
  let pipeline: TestPipeline | undefined;
  beforeEach(async () => {
    provider = await fakeProvider();
    ns = createRedisNamespace();
  });
  afterEach(async () => {
    await pipeline?.close();
    await ns.cleanup();
    await provider.close();
  });

  const registryFor = (url: string) => {
    const parsed = parseMemoryResource(
      `resource: memory
id: claude-memory
type: token_based
max_context_ratio: 0.1
persistence:
  type: redis
  ttl: 1h
token_provider:
  provider: anthropic
  model: claude-sonnet-4-5
  api_key_env: TEST_ANTHROPIC_KEY
  endpoint: ${url}
`,
      'claude-memory.yaml',
    );
    expect(parsed.problems).toEqual([]);
    return createMemoryRegistry([parsed.resource!]);
  };

  it('commits the provider counts, and local counts when the provider fails, never failing a job', async () => {
    const registry = registryFor(provider.url);
    pipeline = await startPipeline(ns, registry, 'test', { env: { TEST_ANTHROPIC_KEY: KEY } });
    const target = { resource: 'claude-memory', key: 'c:1' };
    const first = await pipeline.client.append(target, [
      { role: 'user', content: 'counted by the provider' },
    ]);
    await pipeline.client.waitFor(first.jobId!);
    await eventually(async () => (await pipeline!.client.read(target)).exact, 'exact counts');
    expect(await pipeline.client.read(target)).toMatchObject({
      tokenCount: 'counted by the provider'.length,
      countedBy: { exact: 1, approximate: 0, estimated: 0 },
    });

    provider.state.mode = '500';
    const second = await pipeline.client.append(target, [
      { role: 'assistant', content: 'counted locally' },
    ]);
    await pipeline.client.waitFor(second.jobId!);
    await eventually(
      async () => (await pipeline!.client.read(target)).estimatedTokens === 0,
      'both messages counted',
    );
    const local = await createTokenCounter('o200k_base');
    const fallback = local.countMessage({ role: 'assistant', content: 'counted locally' });
    const approximation = 'o200k_base (approximation for claude-sonnet-4-5)';
    const window = await pipeline.client.read(target);
    // The fallback's count is an approximation of Claude's tokens, and the read says so.
    expect(window).toMatchObject({
      tokenCount: 'counted by the provider'.length + fallback,
      exact: false,
      countedBy: { exact: 1, approximate: 1, estimated: 0 },
      approximateTokens: fallback,
      approximatedBy: [approximation],
    });
    expect(window.messages.map((m) => m.approximatedBy)).toEqual([undefined, approximation]);
    // The counts are committed; the job records its outcome just after.
    const completedJobs = async () =>
      Number(
        /memq_jobs_total\{queue="memory-token-count",outcome="completed"\} (\d+)/.exec(
          await pipeline!.metrics.registry.metrics(),
        )?.[1] ?? 0,
      );
    await eventually(async () => (await completedJobs()) >= 2, 'both token-count jobs completed');
    const text = await pipeline.metrics.registry.metrics();
    expect(text).toMatch(
      /memq_token_provider_fallbacks_total\{provider="anthropic",reason="server_error"\} 1/,
    );
    expect(text).not.toMatch(/outcome="(failed|retry)"/);
  });

  it('refuses to start workers when the API key variable is unset', async () => {
    const registry = registryFor(provider.url);
    await expect(startPipeline(ns, registry, 'test', { env: {} })).rejects.toThrow(
      'memory "claude-memory": token_provider.api_key_env: environment variable TEST_ANTHROPIC_KEY is not set',
    );
  });
});
