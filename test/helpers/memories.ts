import {
  createMemoryRegistry,
  loadMemoryResources,
  type MemoryRegistry,
} from '../../src/config/load-memories.js';
import type { MemoryResource } from '../../src/core/memory-resource.js';

/** The shipped `memories/` directory as a registry. */
export function shippedMemories(): Promise<MemoryRegistry> {
  return loadMemoryResources('memories');
}

/** A registry of the shipped resources plus `extra` variants (e.g. a different TTL). */
export async function memoriesWith(...extra: MemoryResource[]): Promise<MemoryRegistry> {
  const shipped = await shippedMemories();
  return createMemoryRegistry([...shipped.list(), ...extra]);
}

/**
 * A resolved resource for planner tests: token_based, 1,000 max tokens, `simple_fifo` at 0.8,
 * oldest 0.3, target 0.5, TTL 60 s, gpt-4o. `flushing` overrides merge into those defaults; other
 * overrides replace fields.
 */
export function testResource(
  overrides: Partial<Omit<MemoryResource, 'flushing'>> & {
    flushing?: Partial<MemoryResource['flushing']>;
  } = {},
): MemoryResource {
  const { flushing, ...rest } = overrides;
  return {
    id: 'test',
    type: 'token_based',
    maxTokens: 1000,
    persistence: { type: 'redis', ttlSeconds: 60 },
    privacyScope: 'global',
    locking: { clearTtlMs: 10_000, flushTtlMs: 300_000 },
    tokenProvider: { provider: 'openai', model: 'gpt-4o' },
    sourceFile: 'test',
    ...rest,
    flushing: {
      type: 'simple_fifo',
      summarizeThreshold: 0.8,
      summarizeOldestPercent: 0.3,
      targetRatio: 0.5,
      ...flushing,
    },
  };
}
