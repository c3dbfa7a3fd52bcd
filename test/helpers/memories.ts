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
