import { describe, expect, it } from 'vitest';
import type { AppError } from '../../../src/core/errors.js';
import {
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
} from '../../../src/core/errors.js';
import {
  AuthenticationError,
  ForbiddenError,
  NotFoundError,
  PayloadTooLargeError,
  RateLimitedError,
  STATUS_BY_CODE,
  UnsupportedMediaTypeError,
  toErrorResponse,
} from '../../../src/http/http-errors.js';
import { AuditPolicyError } from '../../../src/replay/audit-redactor.js';

describe('error codes', () => {
  it('the HTTP status map names exactly the codes of ERROR_CODES, each with a 4xx or 5xx status', () => {
    expect(Object.keys(STATUS_BY_CODE).sort()).toEqual([...ERROR_CODES].sort());
    for (const status of Object.values(STATUS_BY_CODE)) {
      expect(status).toBeGreaterThanOrEqual(400);
      expect(status).toBeLessThan(600);
    }
  });

  it.each<[string, AppError, number]>([
    ['ConfigError', new ConfigError('x'), 500],
    ['PayloadError', new PayloadError('x'), 400],
    ['MemoryNotFoundError', new MemoryNotFoundError('x'), 404],
    ['ConflictError', new ConflictError('x'), 409],
    ['LockBusyError', new LockBusyError('x'), 409],
    ['LockLostError', new LockLostError('x'), 409],
    ['BackpressureError', new BackpressureError('x', 1000), 429],
    ['RedisUnavailableError', new RedisUnavailableError('x'), 503],
    ['PolicyError', new PolicyError('x'), 422],
    ['JobFailedError', new JobFailedError('x'), 500],
    ['JobTimeoutError', new JobTimeoutError('x'), 504],
    ['AuthenticationError', new AuthenticationError('x'), 401],
    ['ForbiddenError', new ForbiddenError('x'), 403],
    ['NotFoundError', new NotFoundError('x'), 404],
    ['PayloadTooLargeError', new PayloadTooLargeError('x'), 413],
    ['UnsupportedMediaTypeError', new UnsupportedMediaTypeError('x'), 415],
    ['RateLimitedError', new RateLimitedError('x', 1000), 429],
    ['AuditPolicyError', new AuditPolicyError('x'), 400],
  ])('%s answers HTTP %i with its own code', (_name, error, status) => {
    expect(ERROR_CODES).toContain(error.code);
    const response = toErrorResponse(error);
    expect(response.status).toBe(status);
    expect(response.body.error.code).toBe(error.code);
  });

  it('a timed-out wait is WAIT_TIMEOUT (504) and retryable; a failed job is JOB_FAILED (500), not', () => {
    const timeout = new JobTimeoutError('waited', { details: { job_id: '1' } });
    expect(timeout).toMatchObject({
      code: 'WAIT_TIMEOUT',
      retryable: true,
      details: { job_id: '1' },
    });
    expect(new JobFailedError('failed')).toMatchObject({ code: 'JOB_FAILED', retryable: false });
  });

  it('an error that is not memq own is 503 when Redis is unreachable and 500 otherwise', () => {
    const refused = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:6379'), {
      code: 'ECONNREFUSED',
    });
    expect(toErrorResponse(refused)).toMatchObject({
      status: 503,
      retryAfterSeconds: 1,
      body: { error: { code: 'REDIS_UNAVAILABLE' } },
    });
    expect(toErrorResponse(new Error('Connection is closed.')).status).toBe(503);
    expect(toErrorResponse(new TypeError('x is undefined'))).toEqual({
      status: 500,
      body: { error: { code: 'INTERNAL', message: 'internal error (logged)', details: {} } },
    });
  });
});
