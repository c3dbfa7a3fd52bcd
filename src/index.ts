/**
 * `memq`, the package's main entry: memq in-process (docs/architecture.md, "Surfaces and
 * processes"). The export list is deliberate -- what a service needs to call memq and handle
 * its answers, nothing of the wiring:
 *
 * - {@link connect} and its option types; the client it returns ({@link MemoryClient} plus
 *   `close()`) with the types of its arguments and answers (targets, messages, receipts, pages,
 *   stats, context reads, instance lists, session data, job views).
 * - The memory-resource loaders behind `connect`'s `memories` option: {@link loadMemoryResources}
 *   (a `memories/` directory -> a registry, to load once and pass to several `connect` calls),
 *   {@link parseMemoryResource} (one resource file's YAML text -> the resource or every problem,
 *   no I/O) and {@link createMemoryRegistry} (resources -> a registry, binding `hash` keys from
 *   `env`); the resource and registry types.
 * - The error classes a call can throw, to tell failures apart with `instanceof` or `code`
 *   (docs/architecture.md, "Errors").
 *
 * The HTTP client is a separate entry, `memq/http` (src/client/http.ts), so a service that only
 * talks to a memq server loads neither Redis nor zod.
 */

export {
  connect,
  type ConnectBackpressure,
  type ConnectOptions,
  type ConnectRedis,
  type Memq,
} from './runtime/connect.js';

// The client and the shapes of its calls.
export type {
  AppendReceipt,
  ContextOptions,
  ContextRead,
  DataPutResult,
  EnqueueOptions,
  JobInfo,
  JobReceipt,
  MemoryClient,
  MemoryTarget,
} from '../queues/memory-client.js';
export type { AppendJobResult } from '../queues/job-contracts.js';
export type { QueueName } from '../queues/names.js';
export type { MemoryRef } from './core/memory-key.js';
export type {
  Content,
  ContentPart,
  Message,
  MessageInput,
  MessagePrivacy,
  Role,
  Summary,
  ToolCall,
} from './core/message.js';
export type { ChatMessage } from './flush/summary.js';
export type {
  CountedBy,
  InstanceList,
  InstanceSummary,
  MemoryStats,
  MemoryWindow,
  StoredMessage,
} from './store/memory-store.js';

// Memory resources.
export {
  createMemoryRegistry,
  loadMemoryResources,
  parseMemoryResource,
  type ConfigProblem,
  type MemoryFileResult,
  type MemoryRegistry,
} from './config/load-memories.js';
export type { FlushStrategy, MemoryResource } from './core/memory-resource.js';

// Errors.
export {
  AppError,
  BackpressureError,
  ConfigError,
  ConflictError,
  ERROR_CODES,
  JobFailedError,
  JobTimeoutError,
  LockBusyError,
  LockLostError,
  MemoryNotFoundError,
  PayloadError,
  PolicyError,
  RedisUnavailableError,
  type AppErrorOptions,
  type ErrorCode,
} from './core/errors.js';
