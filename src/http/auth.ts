/**
 * Authentication: API keys for `/v1` (each key acts for one project; docs/architecture.md, "HTTP API") and
 * basic auth for Bull Board. Keys are compared by SHA-256 digest with `timingSafeEqual`, so the
 * time a check takes says nothing about how much of a key matched; keys are never logged.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { RequestHandler, Response } from 'express';
import type { ApiKeyGrant } from '../config/env.js';
import { AuthenticationError, ForbiddenError } from './http-errors.js';

const digest = (text: string) => createHash('sha256').update(text).digest();

/** The grant of the request's API key, set by {@link apiKeyAuth}. */
export function grantOf(res: Response): ApiKeyGrant {
  return res.locals.grant as ApiKeyGrant;
}

/**
 * Requires `Authorization: Bearer <key>` naming one of `keys`; sets the key's grant (project,
 * read-only) on `res.locals.grant`.
 * @throws AuthenticationError (401) without a header, with another scheme, or an unknown key.
 */
export function apiKeyAuth(keys: ReadonlyMap<string, ApiKeyGrant>): RequestHandler {
  const table = [...keys].map(([key, grant]) => ({ digest: digest(key), grant }));
  return (req, res, next) => {
    const header = req.get('authorization');
    const match = header === undefined ? null : /^Bearer\s+(\S+)\s*$/i.exec(header);
    if (!match) {
      res.set('WWW-Authenticate', 'Bearer');
      throw new AuthenticationError(
        'Authorization: expected "Bearer <API key>" (keys come from MEMQ_API_KEYS or MEMQ_API_KEYS_FILE)',
      );
    }
    const presented = digest(match[1]!);
    let found: ApiKeyGrant | undefined;
    for (const entry of table) {
      if (timingSafeEqual(entry.digest, presented)) found = entry.grant;
    }
    if (!found) {
      res.set('WWW-Authenticate', 'Bearer error="invalid_token"');
      throw new AuthenticationError('Authorization: the API key is not valid');
    }
    res.locals.grant = found;
    next();
  };
}

/**
 * Lets only read-write keys through.
 * @throws ForbiddenError (403) for a read-only (`:read`) key.
 */
export const requireWrite: RequestHandler = (_req, res, next) => {
  if (grantOf(res).readOnly) {
    throw new ForbiddenError('this API key is read-only (its MEMQ_API_KEYS entry ends in :read)');
  }
  next();
};

/**
 * HTTP basic auth (RFC 7617) for one user; answers 401 with a `WWW-Authenticate` challenge so a
 * browser asks for the credentials.
 */
export function basicAuth(user: string, password: string, realm: string): RequestHandler {
  const expected = digest(`${user}:${password}`);
  return (req, res, next) => {
    const header = req.get('authorization');
    const match = header === undefined ? null : /^Basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(header);
    const presented = match ? Buffer.from(match[1]!, 'base64').toString('utf8') : '';
    if (!timingSafeEqual(digest(presented), expected)) {
      res.set('WWW-Authenticate', `Basic realm="${realm}", charset="UTF-8"`);
      res.status(401).json({
        error: {
          code: 'UNAUTHENTICATED',
          message: `${realm}: expected the MEMQ_BOARD_USER / MEMQ_BOARD_PASSWORD credentials`,
          details: {},
        },
      });
      return;
    }
    next();
  };
}
