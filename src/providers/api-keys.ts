/**
 * Provider API keys: read once, at start-up, from the variables the memory files name
 * (`token_provider.api_key_env`, `flushing.summarizer.api_key_env`), before any connection is
 * opened (docs/architecture.md, "Lifecycle"). Nothing else in memq reads them.
 */
import type { MemoryRegistry } from '../config/load-memories.js';
import { ConfigError } from '../core/errors.js';
import { isRemoteTokenProvider } from '../tokens/counter.js';

/** The API keys a worker process's resources need, by resource id. Values are secrets: never log them. */
export interface ProviderApiKeys {
  /** Resource id -> key of its counting API, for every resource with provider `anthropic` or `google`. */
  readonly tokenProviders: ReadonlyMap<string, string>;
  /** Resource id -> bearer token of its `flushing.summarizer`, for every summarizer that names `api_key_env`. */
  readonly summarizers: ReadonlyMap<string, string>;
}

/** No keys: for a process whose resources need none (a producer, or local counting only). */
export const NO_PROVIDER_API_KEYS: ProviderApiKeys = Object.freeze({
  tokenProviders: new Map<string, string>(),
  summarizers: new Map<string, string>(),
});

/**
 * The value of the environment variable `apiKeyEnv` names, for resource `resourceId`.
 * @param provider What needs the key, named in errors (`anthropic`, `google`, `summarizer`).
 * @param env Where variables are read, e.g. `process.env` (passed by the CLI).
 * @param field The YAML field named in errors; default `token_provider.api_key_env`.
 * @throws ConfigError naming the resource, the field and the variable (never a value) when the
 *   variable is unset or empty, or when the resource names no variable.
 */
export function providerApiKey(
  resourceId: string,
  provider: string,
  apiKeyEnv: string | undefined,
  env: Readonly<Record<string, string | undefined>>,
  field = 'token_provider.api_key_env',
): string {
  if (apiKeyEnv === undefined) {
    throw new ConfigError(
      `memory ${JSON.stringify(resourceId)}: ${field}: required for provider ${provider} (the name of the environment variable holding its API key)`,
    );
  }
  const value = env[apiKeyEnv];
  if (value === undefined || value === '') {
    throw new ConfigError(
      `memory ${JSON.stringify(resourceId)}: ${field}: environment variable ${apiKeyEnv} is not set (provider ${provider} needs its API key)`,
    );
  }
  return value;
}

/**
 * Reads every API key the declared resources need: the counting API key of each resource with a
 * remote token provider (`anthropic`, `google`; required), and the summarizer key of each
 * `flushing.summarizer` that names `api_key_env` (a summarizer without one sends no
 * Authorization header). Resources are checked in registry order; the first problem throws, so
 * a worker never starts half-configured.
 * @param env Where variables are read, e.g. `process.env` (passed by the CLI) or a plain object.
 * @throws ConfigError from {@link providerApiKey}.
 */
export function resolveProviderApiKeys(
  registry: MemoryRegistry,
  env: Readonly<Record<string, string | undefined>>,
): ProviderApiKeys {
  const tokenProviders = new Map<string, string>();
  const summarizers = new Map<string, string>();
  for (const resource of registry.list()) {
    const { provider, apiKeyEnv } = resource.tokenProvider;
    if (isRemoteTokenProvider(provider)) {
      tokenProviders.set(resource.id, providerApiKey(resource.id, provider, apiKeyEnv, env));
    }
    const summarizer = resource.flushing.summarizer;
    if (summarizer?.apiKeyEnv !== undefined) {
      summarizers.set(
        resource.id,
        providerApiKey(
          resource.id,
          'summarizer',
          summarizer.apiKeyEnv,
          env,
          'flushing.summarizer.api_key_env',
        ),
      );
    }
  }
  return { tokenProviders, summarizers };
}
