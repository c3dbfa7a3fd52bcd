import { Registry, collectDefaultMetrics } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { createMetrics, type TokenCacheStats } from '../../../src/metrics/metrics.js';

/** Name and type of every metric on `registry`. */
async function catalogue(registry: Registry): Promise<Array<{ name: string; type: string }>> {
  return (await registry.getMetricsAsJSON()).map(({ name, type }) => ({ name, type: `${type}` }));
}

/** The value of the unlabelled sample of `name` in a scrape of `registry`'s text format. */
async function scraped(registry: Registry, name: string): Promise<number | undefined> {
  const line = (await registry.metrics()).split('\n').find((l) => l.startsWith(`${name} `));
  return line === undefined ? undefined : Number(line.slice(name.length + 1));
}

describe('the metric catalogue follows the Prometheus naming conventions', () => {
  it('names every memq metric memq_*, every counter *_total, and has no ratio gauge', async () => {
    const metrics = await catalogue(createMetrics().registry);
    expect(metrics.length).toBeGreaterThan(20);
    for (const { name, type } of metrics) {
      expect(name, name).toMatch(/^memq_[a-z][a-z0-9_]*[a-z0-9]$/);
      if (type === 'counter') expect(name, name).toMatch(/_total$/);
      else expect(name, `${name} (${type})`).not.toMatch(/_total$/);
      // A histogram ends with its unit: seconds, bytes, or the plural of what it counts.
      if (type === 'histogram') expect(name, name).toMatch(/_(seconds|bytes|entries|messages)$/);
      // A ratio is PromQL over counters, never a gauge of its own.
      if (type === 'gauge')
        expect(name, name).not.toMatch(/(^|_)(ratio|rate|percent|utili[sz]ation)(_|$)/);
    }
    const names = metrics.map((m) => m.name);
    expect(names).toEqual(
      expect.arrayContaining(['memq_token_cache_hits_total', 'memq_token_cache_misses_total']),
    );
    expect(names).not.toContain('memq_token_cache_hit_ratio');
  });

  it("collects Node's process metrics under their standard names, without the memq_ prefix", async () => {
    const registry = createMetrics({ processMetrics: true }).registry;
    const names = (await catalogue(registry)).map((m) => m.name);
    expect(names).toEqual(
      expect.arrayContaining([
        'process_cpu_seconds_total',
        'process_resident_memory_bytes',
        'process_start_time_seconds',
        'nodejs_eventloop_lag_seconds',
        'nodejs_heap_size_used_bytes',
        'nodejs_version_info',
      ]),
    );
    expect(names.filter((n) => /^memq_(process|nodejs)_/.test(n))).toEqual([]);
    // No memq metric collides with a default one.
    expect(new Set(names).size).toBe(names.length);
  });

  it('leaves process metrics to a registry that collects them already', async () => {
    const registry = new Registry();
    collectDefaultMetrics({ register: registry });
    const before = (await catalogue(registry)).length;
    const metrics = createMetrics({ registry, processMetrics: true });
    const after = await catalogue(metrics.registry);
    expect(after.length - before).toBe((await catalogue(createMetrics().registry)).length);
  });
});

describe('token-count cache counters', () => {
  it('are counters that follow the cache’s cumulative counts at each scrape', async () => {
    const metrics = createMetrics();
    let stats: TokenCacheStats = { hits: 0, misses: 0, entries: 0, bytes: 0 };
    metrics.setTokenCacheSource(() => stats);
    expect((await catalogue(metrics.registry)).filter((m) => /token_cache/.test(m.name))).toEqual([
      { name: 'memq_token_cache_hits_total', type: 'counter' },
      { name: 'memq_token_cache_misses_total', type: 'counter' },
      { name: 'memq_token_cache_entries', type: 'gauge' },
      { name: 'memq_token_cache_bytes', type: 'gauge' },
    ]);
    stats = { hits: 3, misses: 5, entries: 5, bytes: 400 };
    expect(await scraped(metrics.registry, 'memq_token_cache_hits_total')).toBe(3);
    expect(await scraped(metrics.registry, 'memq_token_cache_misses_total')).toBe(5);
    // A second scrape with nothing new reads the same totals (not twice the counts).
    expect(await scraped(metrics.registry, 'memq_token_cache_hits_total')).toBe(3);
    stats = { hits: 10, misses: 6, entries: 6, bytes: 480 };
    expect(await scraped(metrics.registry, 'memq_token_cache_hits_total')).toBe(10);
    expect(await scraped(metrics.registry, 'memq_token_cache_misses_total')).toBe(6);
    expect(await scraped(metrics.registry, 'memq_token_cache_entries')).toBe(6);
    expect(await scraped(metrics.registry, 'memq_token_cache_bytes')).toBe(480);
  });

  it('keep rising when a new cache replaces the source', async () => {
    const metrics = createMetrics();
    metrics.setTokenCacheSource(() => ({ hits: 4, misses: 2, entries: 2, bytes: 100 }));
    expect(await scraped(metrics.registry, 'memq_token_cache_hits_total')).toBe(4);
    metrics.setTokenCacheSource(() => ({ hits: 1, misses: 1, entries: 1, bytes: 50 }));
    expect(await scraped(metrics.registry, 'memq_token_cache_hits_total')).toBe(5);
    expect(await scraped(metrics.registry, 'memq_token_cache_misses_total')).toBe(3);
  });
});
