import { ClusterBus } from './cluster-bus.js';
import type { ResolvedBufferOptions } from '../options.js';
import { IoredisBus, type RedisBus } from './redis-bus.js';

/**
 * The bus the options ask for: `ClusterBus` (sharded pub/sub) for `cluster`, else `IoredisBus` on
 * one server, or on the master a set of sentinels names. `connectionName` shows in `CLIENT LIST`.
 */
export function createBus(options: ResolvedBufferOptions, connectionName: string): RedisBus {
  const { connectTimeout } = options;
  if (options.cluster !== undefined) {
    return new ClusterBus({ nodes: options.cluster.nodes, clusterOptions: options.cluster.options, connectTimeout, connectionName });
  }
  return new IoredisBus({ redis: options.redis, connectTimeout, connectionName });
}
