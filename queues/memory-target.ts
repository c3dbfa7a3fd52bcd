import { PayloadError } from '../src/core/errors.js';
import { resolveMemoryKey } from '../src/core/key-template.js';
import type { MemoryRef } from '../src/core/memory-key.js';
import { findRedactable } from '../src/core/privacy.js';
import type { MemoryRegistry } from '../src/config/load-memories.js';

/**
 * Which memory instance a call addresses (the project comes from the client, not the call).
 * The key is resolved by `resolveMemoryKey` (Compozy's precedence): `key` (rendered if it
 * contains `{{`), else `keyTemplate`, else the resource's `default_key_template`, each rendered
 * against `context`.
 */
export interface MemoryTarget {
  /** Memory resource id (a file in `memories/`). */
  readonly resource: string;
  /** Instance key, e.g. `support:42` (1-256 of `[A-Za-z0-9_:\-@.]`), or a key template. */
  readonly key?: string;
  /** Go-template-style key, e.g. `support:{{ .conversation_id }}`. */
  readonly keyTemplate?: string;
  /** Variables for the template, e.g. `{ conversation_id: '42' }`. */
  readonly context?: unknown;
}

/**
 * The instance `target` names for `project`: the resource must be declared and the resolved key
 * must hold nothing the resource's privacy policy redacts (keys end up in Redis key names, job
 * data and logs, where nothing can be redacted). Synchronous; no I/O.
 * @throws MemoryNotFoundError for an undeclared resource.
 * @throws PayloadError for a key that does not resolve to a valid instance key, or that contains
 *   text the privacy policy redacts (`details.pattern`: the index in `redact_patterns`).
 */
export function resolveTarget(
  registry: MemoryRegistry,
  project: string,
  target: MemoryTarget,
): MemoryRef {
  const resource = registry.get(target.resource);
  const key = resolveMemoryKey({
    ...(target.key !== undefined ? { key: target.key } : {}),
    ...(target.keyTemplate !== undefined ? { keyTemplate: target.keyTemplate } : {}),
    ...(resource.defaultKeyTemplate !== undefined
      ? { defaultKeyTemplate: resource.defaultKeyTemplate }
      : {}),
    context: target.context,
  });
  const pattern = findRedactable(resource.privacyPolicy, key);
  if (pattern !== undefined) {
    throw new PayloadError(
      `key: contains text that memory ${JSON.stringify(target.resource)}'s privacy policy redacts (privacy_policy.redact_patterns[${pattern}]); keys end up in Redis key names, job data and logs, where nothing can be redacted: use an opaque id`,
      { details: { field: 'key', pattern } },
    );
  }
  return { project, resource: target.resource, key };
}
