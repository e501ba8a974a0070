import type { RedisOptions } from 'ioredis';

/** The Redis server a client talks to, as OpenTelemetry's `server.address` and `server.port`. */
export interface ServerAddress {
  readonly address?: string;
  readonly port?: number;
}

/**
 * Where the connection goes, from the resolved `redis` option: a URL's host and port, or ioredis's
 * `host`/`port` (its defaults when unset) or socket `path`. Nothing for a Cluster or Sentinel setup:
 * there the server changes with the topology, and a startup node or a sentinel would mislead.
 */
export function redisServerAddress(options: { readonly redis: string | RedisOptions; readonly cluster?: unknown }): ServerAddress {
  if (options.cluster !== undefined) return {};
  const redis = options.redis;
  if (typeof redis === 'string') {
    try {
      const url = new URL(redis);
      return { address: url.hostname.replace(/^\[(.*)\]$/, '$1') || 'localhost', port: url.port === '' ? 6379 : Number(url.port) };
    } catch {
      return {};
    }
  }
  if (redis.sentinels !== undefined) return {};
  if (typeof redis.path === 'string') return { address: redis.path };
  return { address: redis.host ?? 'localhost', port: typeof redis.port === 'number' ? redis.port : 6379 };
}
