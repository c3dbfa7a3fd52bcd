/**
 * Redis memory per 1,000 stored messages (docs/storage.md).
 *
 *   npx tsx bench/storage-memory.ts
 *
 * Starts a private redis-server on a free loopback port, stores 1,000 real e-mail messages
 * (SpamAssassin easy-ham, redacted by the customer-support policy) with exact token counts,
 * in 1 instance and again in 100 instances of 10, and reports used_memory deltas and the sum of
 * MEMORY USAGE over the instance keys.
 */
import { contentText } from '../src/core/message.js';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { monotonicFactory } from 'ulid';
import { loadMemoryResources } from '../src/config/load-memories.js';
import type { Message } from '../src/core/message.js';
import { applyPrivacy } from '../src/core/privacy.js';
import { createTokenCounter, encodingForModel } from '../src/tokens/counter.js';
import { buildConversations } from '../src/replay/corpus.js';
import { freePort, resolveDefaultRedis } from '../src/runtime/embedded-redis.js';
import { createMemoryStore } from '../src/store/memory-store.js';

const registry = await loadMemoryResources('memories');
const resource = registry.get('customer-support');
const counter = await createTokenCounter(encodingForModel(resource.tokenProvider.model));
const { conversations } = await buildConversations({ limit: 1000 });
const nextId = monotonicFactory();
const corpus: Message[] = applyPrivacy(
  resource.privacyPolicy,
  conversations.flatMap((c) => c.messages),
).kept.map((m) => ({
  ...m,
  id: nextId(),
  created_at: m.metadata.date ?? new Date().toISOString(),
}));
const contentBytes = corpus.reduce((sum, m) => sum + Buffer.byteLength(contentText(m.content)), 0);
const jsonBytes = corpus.reduce((sum, m) => sum + Buffer.byteLength(JSON.stringify(m)), 0);

const dataDir = mkdtempSync(join(tmpdir(), 'memq-bench-'));
const { url, embedded } = await resolveDefaultRedis(() => {}, {
  dataDir,
  defaultPort: await freePort(),
});
const redis = new Redis(url, { protocol: 2 });
try {
  const usedMemory = async () => Number(/used_memory:(\d+)/.exec(await redis.info('memory'))![1]);
  const measure = async (label: string, instances: number) => {
    await redis.flushdb(); // private throwaway server
    const store = createMemoryStore({ redis, keyPrefix: 'memq:' });
    const before = await usedMemory();
    const per = corpus.length / instances;
    for (let i = 0; i < instances; i++) {
      const ref = { project: 'bench', resource: 'customer-support', key: `thread:${i}` };
      const batch = corpus.slice(i * per, (i + 1) * per);
      for (let j = 0; j < batch.length; j += 50)
        await store.append(ref, batch.slice(j, j + 50), 86400);
      await store.commitTokens(
        ref,
        batch.map((m) => ({ id: m.id, tokens: counter.countMessage(m) })),
        86400,
      );
    }
    const after = await usedMemory();
    let keyBytes = 0;
    for (const key of await redis.keys('memq:*'))
      keyBytes += Number(await redis.memory('USAGE', key, 'SAMPLES', 0));
    console.log(
      `${label.padEnd(28)} used_memory +${((after - before) / 1024).toFixed(0)} KiB, MEMORY USAGE of memq keys ${(keyBytes / 1024).toFixed(0)} KiB (${(keyBytes / corpus.length).toFixed(0)} B/message)`,
    );
  };
  console.log(
    `1,000 messages: ${(contentBytes / 1024).toFixed(0)} KiB of content, ${(jsonBytes / 1024).toFixed(0)} KiB as stored JSON; Redis ${/redis_version:(\S+)/.exec(await redis.info('server'))![1]}`,
  );
  await measure('1 instance x 1,000', 1);
  await measure('100 instances x 10', 100);
} finally {
  redis.disconnect();
  await embedded?.stop();
  rmSync(dataDir, { recursive: true, force: true });
}
