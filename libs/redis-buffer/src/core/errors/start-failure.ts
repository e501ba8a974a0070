import { DuplicateInstanceError } from './duplicate-instance.error.js';
import { InvalidOptionsError } from './invalid-options.error.js';
import { RedisPermissionError } from './redis-permission.error.js';
import { RedisTlsError } from './redis-tls.error.js';

/**
 * Whether `error` ends a start-up for good: what was reached cannot serve this configuration
 * (a cluster node given as one server, a TLS failure, a refused permission, a duplicate instance
 * id), so retrying would only repeat it. The connection attempts stop; a later `connect()` or
 * `listen()` starts afresh.
 */
export function endsStartUp(error: unknown): boolean {
  return error instanceof InvalidOptionsError || error instanceof RedisTlsError || error instanceof RedisPermissionError || error instanceof DuplicateInstanceError;
}
