import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMemoryRegistry, parseMemoryResource } from '../../src/config/load-memories.js';
import { createTokenCounter, encodingForModel } from '../../src/tokens/counter.js';
import { FAKE_LLM_KEY, summarizedMemoryYaml } from '../helpers/fake-llm.js';
import { eventually, startPipeline, type TestPipeline } from '../helpers/pipeline.js';
import { createRedisNamespace, type RedisNamespace } from '../helpers/redis-namespace.js';

const EMAIL = 'jane@example.com';
const PHONE = '415 555 2671';

/**
 * An OpenAI-compatible `/v1/chat/completions` whose summary names a customer's e-mail address
 * and phone number that no message holds: a model echoing or inventing personal data. (The shared
 * fake in test/helpers/fake-llm.ts always answers `LLM summary of N new messages.`.)
 */
async function piiLlm() {
  const server: Server = createServer((req, res) => {
    void (async () => {
      for await (const _ of req) void _;
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(
        JSON.stringify({
          choices: [
            {
              message: {
                role: 'assistant',
                content: `The customer (${EMAIL}, phone ${PHONE}) asked about late orders.`,
              },
            },
          ],
        }),
      );
    })();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** {@link summarizedMemoryYaml} with e-mail and phone detectors under `action`. */
const yaml = (endpoint: string, action: 'redact' | 'drop') => `${summarizedMemoryYaml(
  endpoint,
  `summarized-${action}`,
  400,
)}privacy_policy:
  detectors: [email, phone]
  action: ${action}
`;

describe('LLM summaries pass the privacy policy before they are stored', () => {
  let llm: Awaited<ReturnType<typeof piiLlm>>;
  let ns: RedisNamespace;
  let pipeline: TestPipeline;

  beforeAll(async () => {
    llm = await piiLlm();
    ns = createRedisNamespace();
    const resources = (['redact', 'drop'] as const).map((action) => {
      const parsed = parseMemoryResource(yaml(llm.url, action), `${action}.yaml`);
      expect(parsed.problems).toEqual([]);
      return parsed.resource!;
    });
    pipeline = await startPipeline(ns, createMemoryRegistry(resources), 'test', {
      env: { TEST_SUMMARIZER_KEY: FAKE_LLM_KEY },
    });
  });
  afterAll(async () => {
    await pipeline.close();
    await ns.cleanup();
    await llm.close();
  });

  for (const action of ['redact', 'drop'] as const) {
    it(`stores the summary with the model's e-mail and phone redacted (action ${action})`, async () => {
      const target = { resource: `summarized-${action}`, key: 'conversation-1' };
      const receipt = await pipeline.client.append(
        target,
        Array.from({ length: 40 }, (_, i) => ({
          role: i % 2 ? ('assistant' as const) : ('user' as const),
          content: `Message ${i} says something worth keeping. More text.`,
        })),
      );
      expect(receipt.redactions).toBe(0); // the personal data comes from the model only
      await pipeline.client.waitFor(receipt.jobId!);
      await eventually(
        async () => (await pipeline.client.read(target)).summary !== undefined,
        'the LLM summary',
      );
      const { summary } = await pipeline.client.read(target);
      // `drop` cannot drop a summary (its folded messages would be lost): matches are redacted.
      expect(summary!.content).toBe(
        'The customer ([REDACTED], phone [REDACTED]) asked about late orders.',
      );
      const counter = await createTokenCounter(encodingForModel('gpt-4o'));
      expect(summary!.tokens).toBe(
        counter.countMessage({ role: 'system', content: summary!.content }),
      );
      const text = await ns.allText();
      expect(text).not.toContain(EMAIL);
      expect(text).not.toContain(PHONE);
    });
  }
});
