// The HTTP API from code: MemqHttpClient (memq/http) against a running `memq start`. It needs
// nothing but fetch: no Redis connection, no memory files in this process.
//
//   npm run build && node examples/http-client.mjs
//
// Environment (all optional):
//   MEMQ_URL      where memq listens (default http://localhost:3000)
//   MEMQ_API_KEY  an API key (default: the key memq created in .memq/api-key of this directory)
import { readFileSync } from 'node:fs';
import { MemqHttpClient, MemqHttpError } from 'memq/http';

const memq = new MemqHttpClient({
  baseUrl: process.env.MEMQ_URL || 'http://localhost:3000',
  apiKey: process.env.MEMQ_API_KEY || readFileSync('.memq/api-key', 'utf8').trim(),
  // Retry 429 (rate limit, backpressure) and 503 (Redis unreachable) after Retry-After; appends
  // get client-side ids first, so a retried append is stored once.
  retry: { attempts: 3 },
});
const [resource, key] = ['customer-support', 'http-example'];

const appended = await memq.append(
  resource,
  key,
  [
    { role: 'user', content: 'Hi, I am jane@example.com and my order #4411 is late' },
    { role: 'assistant', content: 'Sorry about that, let me check order #4411.' },
  ],
  { wait: true },
);
console.log(
  `appended: ${appended.result?.added} added, ${appended.redactions} redacted (job ${appended.job?.id})`,
);

const page = await memq.read(resource, key);
console.log(
  `read: ${page.total} messages, ${page.context_window.used_tokens} tokens in the window`,
);
for (const { message } of page.messages) console.log(`  ${message.role}: ${message.content}`);

const flush = await memq.flush(resource, key, { dryRun: true });
console.log(`flush dry run: applied ${flush.result?.applied}`);

await memq.delete(resource, key, { wait: true });
console.log(`deleted ${key}`);

// Every non-2xx answer is a MemqHttpError with memq's status, code and message.
try {
  await memq.read('no-such-resource', key);
} catch (error) {
  if (!(error instanceof MemqHttpError)) throw error;
  console.log(`unknown resource: ${error.status} ${error.code}`);
}
