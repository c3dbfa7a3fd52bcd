import type { Queue } from 'bullmq';
import { describe, expect, it } from 'vitest';
import { createMemoryClient } from '../../../queues/memory-client.js';
import type { MemoryQueues } from '../../../queues/memory-queues.js';
import { createMemoryRegistry } from '../../../src/config/load-memories.js';
import type { RedisConnection } from '../../../src/redis/connection.js';
import type { MemoryStore } from '../../../src/store/memory-store.js';
import { testResource } from '../../helpers/memories.js';

/**
 * Queues that record what is added and whether they were closed; no Redis. Only the members the
 * client touches for a delete and a close are implemented.
 */
function recordingQueues() {
  const added: Array<{ queue: string; name: string; data: unknown }> = [];
  let closed = 0;
  const queue = (name: string) =>
    ({
      add: (jobName: string, data: unknown) => {
        added.push({ queue: name, name: jobName, data });
        return Promise.resolve({ id: String(added.length) });
      },
    }) as unknown as Queue;
  const byQueue = {
    'memory-append': queue('memory-append'),
    'memory-token-count': queue('memory-token-count'),
    'memory-flush': queue('memory-flush'),
    'memory-cleanup': queue('memory-cleanup'),
  };
  const queues = {
    append: byQueue['memory-append'],
    tokenCount: byQueue['memory-token-count'],
    flush: byQueue['memory-flush'],
    cleanup: byQueue['memory-cleanup'],
    byName: (name: keyof typeof byQueue) => byQueue[name],
    close: () => {
      closed += 1;
      return Promise.resolve();
    },
  } as unknown as MemoryQueues;
  return { queues, added, closed: () => closed };
}

describe('createMemoryClient with injected queues', () => {
  it('enqueues on the injected queues and leaves them open on close', async () => {
    const { queues, added, closed } = recordingQueues();
    const client = createMemoryClient({
      // The backlog ledger registers its scripts on the connection; nothing here runs them.
      connection: { status: 'ready', defineCommand: () => undefined } as unknown as RedisConnection,
      queuePrefix: '{memq-unit}',
      registry: createMemoryRegistry([testResource({ id: 'chat-buffer' })]),
      project: 'p1',
      store: {} as MemoryStore,
      queues,
    });
    const receipt = await client.delete({ resource: 'chat-buffer', key: 'conv:1' });
    expect(receipt).toEqual({
      queue: 'memory-cleanup',
      jobId: '1',
      ref: { project: 'p1', resource: 'chat-buffer', key: 'conv:1' },
    });
    expect(added).toEqual([
      {
        queue: 'memory-cleanup',
        name: 'delete',
        data: { ref: { project: 'p1', resource: 'chat-buffer', key: 'conv:1' } },
      },
    ]);
    await client.close();
    await client.forProject('p2').close();
    expect(closed()).toBe(0);
  });
});
