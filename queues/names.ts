/**
 * Queue names (docs/architecture.md, "Jobs"). BullMQ keys are `<prefix>:<queue>:...`; the default prefix
 * `{memq}` is a hash tag, so every queue lives in one Redis Cluster slot as BullMQ requires.
 */
export const QUEUES = {
  append: 'memory-append',
  tokenCount: 'memory-token-count',
  flush: 'memory-flush',
  cleanup: 'memory-cleanup',
} as const;

/** One of the {@link QUEUES} names. */
export type QueueName = (typeof QUEUES)[keyof typeof QUEUES];

/** Job names inside the queues. */
export const JOBS = {
  append: 'append',
  tokenCount: 'token-count',
  flush: 'flush',
  clear: 'clear',
  delete: 'delete',
  write: 'write',
  maintenance: 'maintenance',
  canary: 'canary',
} as const;
