import { UnrecoverableError, type Job } from 'bullmq';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { createCleanupProcessor, type CleanupProcessorDeps } from '../../../processors/cleanup.js';
import { CLEANUP_JOB_SCHEMAS, isCleanupJobName } from '../../../queues/job-contracts.js';
import { JOBS } from '../../../queues/names.js';
import { createMetrics } from '../../../src/metrics/metrics.js';

/** An object whose every property access fails the test: proof that nothing was touched. */
const untouchable = <T>(what: string): T =>
  new Proxy(
    {},
    {
      get: (_target, property) => {
        throw new Error(`${what}.${String(property)} was touched`);
      },
    },
  ) as T;

/** A cleanup processor whose store, registry, locks and follow-ups all fail when touched. */
function processor(options: { maintenance?: CleanupProcessorDeps['maintenance'] } = {}) {
  const metrics = createMetrics();
  const touched: string[] = [];
  const run = createCleanupProcessor({
    store: untouchable('store'),
    registry: untouchable('registry'),
    locks: untouchable('locks'),
    enqueueTokenCount: () => {
      touched.push('enqueueTokenCount');
      return Promise.resolve();
    },
    scrubJobs: () => {
      touched.push('scrubJobs');
      return Promise.resolve(0);
    },
    log: pino({ level: 'silent' }),
    metrics,
    ...options,
  });
  return { run, metrics, touched };
}

const job = (name: string, data: unknown) =>
  ({ id: '7', name, data, attemptsStarted: 1, attemptsMade: 0, timestamp: 0, opts: {} }) as Job;

const invalidCount = async (metrics: ReturnType<typeof createMetrics>) =>
  (await metrics.jobs.get()).values.find(
    (v) => v.labels.queue === 'memory-cleanup' && v.labels.outcome === 'invalid',
  )?.value ?? 0;

describe('CLEANUP_JOB_SCHEMAS', () => {
  it('has a schema for every memory-cleanup job name and nothing else', () => {
    expect(Object.keys(CLEANUP_JOB_SCHEMAS).sort()).toEqual(
      [JOBS.canary, JOBS.clear, JOBS.delete, JOBS.maintenance, JOBS.write].sort(),
    );
    expect(isCleanupJobName('clear')).toBe(true);
    expect(isCleanupJobName('append')).toBe(false);
    expect(isCleanupJobName('toString')).toBe(false);
  });

  it('parses delete, clear and maintenance payloads by job name', () => {
    const ref = { project: 'p', resource: 'r', key: 'k:1' };
    expect(CLEANUP_JOB_SCHEMAS.delete.parse({ ref })).toEqual({ ref });
    expect(CLEANUP_JOB_SCHEMAS.clear.safeParse({ ref, extra: 1 }).success).toBe(false);
    expect(CLEANUP_JOB_SCHEMAS.maintenance.parse({})).toEqual({});
    expect(CLEANUP_JOB_SCHEMAS.maintenance.safeParse({ shards: [16] }).success).toBe(false);
  });
});

describe('memory-cleanup dispatch', () => {
  it.each(['append', 'toString', 'bogus'])(
    'fails a job named %s without retries, touching nothing',
    async (name) => {
      const { run, metrics, touched } = processor();
      const error = await run(job(name, { ref: { project: 'p', resource: 'r', key: 'k' } })).catch(
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(UnrecoverableError);
      expect((error as Error).message).toBe(
        `memory-cleanup job 7: unknown job name ${JSON.stringify(name)}; expected one of canary, clear, delete, write`,
      );
      expect(touched).toEqual([]);
      expect(await invalidCount(metrics)).toBe(1);
    },
  );

  it('fails a maintenance job when no sweep is configured, touching nothing', async () => {
    const { run, touched } = processor();
    await expect(run(job(JOBS.maintenance, {}))).rejects.toBeInstanceOf(UnrecoverableError);
    expect(touched).toEqual([]);
  });

  it('hands a maintenance job to the sweep when one is configured', async () => {
    const { run } = processor({ maintenance: (j) => Promise.resolve({ swept: j.id }) });
    await expect(run(job(JOBS.maintenance, {}))).resolves.toEqual({ swept: '7' });
  });

  it('fails a delete whose payload does not match its schema, touching nothing', async () => {
    const { run, metrics, touched } = processor();
    const error = await run(job(JOBS.delete, { ref: { project: 'p', resource: 'r' } })).catch(
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(UnrecoverableError);
    expect((error as Error).message).toContain('invalid payload: ref.key');
    expect(touched).toEqual([]);
    expect(await invalidCount(metrics)).toBe(1);
  });
});
