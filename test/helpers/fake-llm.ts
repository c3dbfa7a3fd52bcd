import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

/** The bearer token {@link fakeLlm} expects (tests check it never reaches logs or metrics). */
export const FAKE_LLM_KEY = 'sk-summarizer-NEVER-LOGGED';
const KEY = FAKE_LLM_KEY;

/** A local OpenAI-compatible `/v1/chat/completions` that answers after `delayMs`, or fails. */
export async function fakeLlm() {
  const state = { mode: 'ok' as 'ok' | '500', delayMs: 200, calls: 0, unauthorized: 0 };
  const server: Server = createServer((req, res) => {
    void (async () => {
      const chunks: Buffer[] = [];
      for await (const chunk of req) chunks.push(chunk as Buffer);
      state.calls += 1;
      if (req.headers.authorization !== `Bearer ${KEY}`) state.unauthorized += 1;
      const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as {
        messages: Array<{ content: string }>;
      };
      await new Promise((r) => setTimeout(r, state.delayMs));
      if (state.mode === '500') {
        res.writeHead(500).end('{"error":"boom"}');
        return;
      }
      const lines = body.messages[1]!.content.split('\n').filter((l) =>
        /^(user|assistant):/.test(l),
      );
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(
        JSON.stringify({
          choices: [
            {
              message: {
                role: 'assistant',
                content: `LLM summary of ${lines.length} new messages.`,
              },
            },
          ],
        }),
      );
    })();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    state,
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/**
 * A `hybrid_summary` memory (threshold 0.8, summary 60 tokens, oldest 0.3, target 0.5, TTL 1 h)
 * whose summaries come from the LLM at `endpoint` with {@link FAKE_LLM_KEY} in
 * `TEST_SUMMARIZER_KEY`; per-call timeout 2 s.
 */
export const summarizedMemoryYaml = (
  endpoint: string,
  id: string,
  maxTokens: number,
) => `resource: memory
id: ${id}
type: token_based
max_tokens: ${maxTokens}
flushing:
  type: hybrid_summary
  summarize_threshold: 0.8
  summary_tokens: 60
  summarize_oldest_percent: 0.3
  target_ratio: 0.5
  summarizer:
    endpoint: ${endpoint}
    model: test-model
    api_key_env: TEST_SUMMARIZER_KEY
    timeout_ms: 2000
persistence:
  type: redis
  ttl: 1h
`;
