// A service using memq in process: append a short support conversation, wait for it, read the
// window, ask for a flush plan (dry run), then delete the memory and close.
//
//   npm run build && node examples/service.mjs
//
// Environment (all optional; the names are memq's own variables, docs/configuration.md):
//   REDIS_URL            Redis to use (default redis://127.0.0.1:6379)
//   REDIS_CLUSTER_NODES  host:port,... of a Redis Cluster (credentials from REDIS_URL)
//   MEMQ_MEMORIES_DIR    memory resource files (default this repository's memories/)
//   MEMQ_PROJECT         project (tenant) to act for (default "default")
//   MEMQ_KEY_PREFIX      prefix of memory keys (default memq:)
//   MEMQ_QUEUE_PREFIX    BullMQ prefix with a hash tag (default {memq})
import { fileURLToPath } from 'node:url';
import { connect } from 'memq';

/** An environment variable, empty counting as unset (as memq reads its own). */
const env = (name) => process.env[name] || undefined;

const url = env('REDIS_URL') ?? 'redis://127.0.0.1:6379';
const nodes = env('REDIS_CLUSTER_NODES');
const memq = await connect({
  redis: nodes ? { url, clusterNodes: nodes.split(',') } : url,
  memories: env('MEMQ_MEMORIES_DIR') ?? fileURLToPath(new URL('../memories', import.meta.url)),
  project: env('MEMQ_PROJECT'),
  keyPrefix: env('MEMQ_KEY_PREFIX'),
  queuePrefix: env('MEMQ_QUEUE_PREFIX'),
  // Run the workers in this process, so nothing else needs to be running (as `memq start`).
  workers: true,
});

try {
  // customer-support (memories/customer-support.yaml) keys its instances by
  // `support:{{ .conversation_id }}` and redacts e-mail addresses and phone numbers.
  const target = { resource: 'customer-support', context: { conversation_id: 'service-example' } };

  const receipt = await memq.append(target, [
    { role: 'user', content: 'Hi, I am jane@example.com and my order #4411 is late' },
    { role: 'assistant', content: 'Sorry about that, let me check order #4411.' },
    { role: 'user', content: 'Thanks. You can also call me on +44 20 7946 0958.' },
  ]);
  console.log(
    `appended ${receipt.messageIds.length} messages to ${receipt.ref.key} (project ${receipt.ref.project}), ${receipt.redactions} redacted before enqueueing`,
  );

  // The append is a job: wait until a worker has committed it.
  const result = await memq.waitFor(receipt);
  console.log(`committed: ${result.added} added, ${result.duplicates} duplicates`);

  // Tokens are counted by a job of their own a moment later; wait until every count is in.
  const key = { resource: 'customer-support', key: receipt.ref.key };
  let window = await memq.read(key);
  for (let tries = 0; !window.exact && tries < 100; tries++) {
    await new Promise((resolve) => setTimeout(resolve, 100));
    window = await memq.read(key);
  }
  console.log(`window: ${window.total} messages, ${window.tokenCount} tokens`);
  for (const { message, tokens } of window.messages) {
    console.log(`  ${message.role}: ${message.content} (${tokens ?? 'not counted yet'} tokens)`);
  }

  // memq flushes by itself once the memory reaches 80 % of its 4,000 tokens; a dry run shows
  // what a flush would do now, and changes nothing.
  const { plan, applied } = await memq.waitFor(await memq.flush(key, { dryRun: true }));
  console.log(
    `flush plan (${plan.strategy}, dry run): would fold ${plan.foldedIds.length} into the summary and evict ${plan.evictedIds.length}; applied: ${applied}`,
  );

  const stats = await memq.stats(key);
  console.log(`stats: ${stats.messageCount} messages, consistent: ${stats.consistent}`);

  // Delete the instance: every key of it goes.
  await memq.waitFor(await memq.delete(key));
  console.log(`deleted ${receipt.ref.key}`);
} finally {
  await memq.close();
}
