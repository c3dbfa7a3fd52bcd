import { describe, expect, it } from 'vitest';
import { isConnectionFailure } from '../../../src/redis/connection-failures.js';

describe('isConnectionFailure', () => {
  const named = (name: string, message: string) => Object.assign(new Error(message), { name });
  const coded = (code: string) =>
    Object.assign(new Error(`connect ${code} 127.0.0.1:6379`), { code });

  it.each([
    ['ioredis closed connection', new Error('Connection is closed.')],
    [
      'ioredis not connected with its offline queue off',
      new Error("Stream isn't writeable and enableOfflineQueue options is false"),
    ],
    ['a broken pipe', coded('EPIPE')],
    ['a connect timeout', coded('ETIMEDOUT')],
    ['a replica without its master', new Error('MASTERDOWN Link with MASTER is down')],
    [
      'ioredis retry limit',
      named('MaxRetriesPerRequestError', 'Reached the max retries per request limit (which is 1).'),
    ],
    ['refused', coded('ECONNREFUSED')],
    ['a host that does not resolve', coded('ENOTFOUND')],
    ['a name server not answering', coded('EAI_AGAIN')],
    ['an unreachable host', coded('EHOSTUNREACH')],
    ['an unreachable network', coded('ENETUNREACH')],
    [
      'ioredis with no sentinel answering',
      new Error(
        'All sentinels are unreachable. Retrying from scratch after 10ms. Last error: connect ECONNREFUSED 127.0.0.1:26379',
      ),
    ],
    [
      'ioredis with no sentinel answering and retry off',
      new Error('All sentinels are unreachable and retry is disabled.'),
    ],
    ['reset', coded('ECONNRESET')],
    ['Redis loading its AOF', new Error('LOADING Redis is loading the dataset in memory')],
    ['cluster down', new Error('CLUSTERDOWN The cluster is down')],
    ['cluster resharding', new Error('TRYAGAIN Multiple keys request during rehashing of slot')],
  ])('is true for %s', (_what, error) => {
    expect(isConnectionFailure(error)).toBe(true);
  });

  it.each([
    [
      'a wrong-type reply',
      new Error('WRONGTYPE Operation against a key holding the wrong kind of value'),
    ],
    ['a script error', new Error('ERR Error running script')],
    ['a message that merely mentions LOADING later', new Error('ERR value LOADING')],
    ['a non-error', 'Connection is closed.'],
    ['a message that merely mentions a closed connection', new Error('ERR Connection is closed.')],
    [
      'a message that merely mentions the sentinels',
      new Error('ERR All sentinels are unreachable'),
    ],
    ['an unrelated error code', coded('ENOENT')],
  ])('is false for %s', (_what, error) => {
    expect(isConnectionFailure(error)).toBe(false);
  });
});
