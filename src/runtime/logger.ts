import { pino, type Logger } from 'pino';

/**
 * The process logger: pino JSON lines on stderr (stdout stays free for command output such as
 * the replay report). Records carry job ids and memory ids, never message content.
 * @param level pino level (`info` by default).
 */
export function createLogger(level = 'info'): Logger {
  return pino({ level, base: { service: 'memq' } }, pino.destination(2));
}

export type { Logger };
