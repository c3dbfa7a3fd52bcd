/**
 * Flush deduplication ids: requested flushes deduplicated on `<mid>:requested`
 * and automatic ones on `<mid>`; keys may contain `:`, so a requested flush of key `x` and an
 * automatic flush of key `x:requested` shared one id and the second enqueue silently became the
 * first (another memory's) job.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createMemoryQueues, type MemoryQueues } from '../../queues/memory-queues.js';
import type { FlushJob } from '../../queues/job-contracts.js';
import { createRedisNamespace, type RedisNamespace } from '../helpers/redis-namespace.js';

const ref = (key: string) => ({ project: 'acme', resource: 'customer-support', key });

describe('flush deduplication ids', () => {
  let ns: RedisNamespace;
  let queues: MemoryQueues;

  beforeAll(() => {
    ns = createRedisNamespace();
    // No workers: every flush job stays waiting where the test can read it.
    queues = createMemoryQueues(ns.redis, ns.queuePrefix);
  });
  beforeEach(async () => {
    await queues.flush.obliterate({ force: true });
  });
  afterAll(async () => {
    await queues?.close();
    await ns?.cleanup();
  });

  /** The keys of the memories the waiting flush jobs will flush, sorted. */
  const waitingKeys = async () =>
    (await queues.flush.getJobs(['waiting'])).map((job) => (job.data as FlushJob).ref.key).sort();

  it('a requested flush of key x and an automatic flush of key x:requested are two jobs', async () => {
    const requested = await queues.enqueueFlush(ref('x'));
    const automatic = await queues.enqueueFlush(ref('x:requested'), { trigger: true });
    expect(automatic).not.toBe(requested);
    expect(await waitingKeys()).toEqual(['x', 'x:requested']);
  });

  it('and the reverse order: the automatic flush first', async () => {
    const automatic = await queues.enqueueFlush(ref('y:requested'), { trigger: true });
    const requested = await queues.enqueueFlush(ref('y'));
    expect(requested).not.toBe(automatic);
    expect(await waitingKeys()).toEqual(['y', 'y:requested']);
  });

  it('still deduplicates each kind per memory, separately', async () => {
    const requested = await queues.enqueueFlush(ref('z'));
    expect(await queues.enqueueFlush(ref('z'))).toBe(requested);
    const automatic = await queues.enqueueFlush(ref('z'), { trigger: true });
    expect(await queues.enqueueFlush(ref('z'), { trigger: true })).toBe(automatic);
    expect(automatic).not.toBe(requested);
    expect(await waitingKeys()).toEqual(['z', 'z']);
  });
});
